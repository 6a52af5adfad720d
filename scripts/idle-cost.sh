#!/usr/bin/env bash
# Idle cost of N replicated partitions (RF 3) on three release brokers on
# this machine: creates the topic, waits until every partition has a
# leader, lets it settle 10 s, then reads each broker's CPU time over 30 s,
# its resident memory and its open files from /proc.
#
# Usage: scripts/idle-cost.sh [N]   (default 1000)
# Needs: cargo build --release --bin rill --bin rill-broker
# Uses loopback ports 9092-9094 (clients), 19100-19102 (peers) and
# 9644-9646 (metrics), and a fresh directory under /tmp.
set -euo pipefail
N=${1:-1000}
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
DIR=$(mktemp -d /tmp/rill-idle.XXXXXX)
cd "$DIR"
P="1@127.0.0.1:19100,2@127.0.0.1:19101,3@127.0.0.1:19102"
B=127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
for i in 1 2 3; do
  "$BIN/rill-broker" --node-id $i --peers $P --listen 127.0.0.1:909$((i + 1)) \
    --metrics-addr 127.0.0.1:964$((i + 3)) --data-dir d$i > b$i.log 2>&1 &
  pids+=($!)
done
# Every broker registered with the controller.
until [ "$("$BIN/rill" --broker $B cluster status 2>/dev/null | grep -c '127.0.0.1:909')" -ge 3 ]; do
  sleep 0.2
done
start=$(date +%s.%N)
"$BIN/rill" --broker $B topic create idle -p "$N" -r 3 > /dev/null
led=0
for _ in $(seq 1 120); do
  led=$("$BIN/rill" --broker $B topic describe idle 2>/dev/null | awk 'NR > 2 && $2 ~ /^[0-9]+$/ && $2 > 0' | wc -l)
  [ "$led" -ge "$N" ] && break
  sleep 0.5
done
echo "partitions led: $led of $N, $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s after the create was sent"
sleep 10
hz=$(getconf CLK_TCK)
t0=()
for pid in "${pids[@]}"; do t0+=("$(awk '{print $14 + $15}' /proc/$pid/stat)"); done
sleep 30
for i in 0 1 2; do
  pid=${pids[$i]}
  t1=$(awk '{print $14 + $15}' /proc/$pid/stat)
  rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  fds=$(ls /proc/$pid/fd | wc -l)
  echo "broker $((i + 1)): cpu $(python3 -c "print(round(($t1 - ${t0[$i]}) / $hz / 30 * 100, 1))")% of a core, rss $((rss / 1024)) MiB, open files $fds"
done
