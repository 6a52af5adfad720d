#!/usr/bin/env bash
# Soak: `rill bench produce-consume` at about 80% of the measured maximum for
# a long run (default 600 s) against a separately started release broker.
# Reports throughput and p99 over time (CSV + SVG from --output-dir) and the
# broker's memory at start and end. Not part of CI; results go into
# RELIABILITY.md.
#
# Usage: scripts/soak.sh [duration_secs] [out_dir]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-600}
OUT=${2:-target/soak}
PORT=${RILL_SOAK_PORT:-19392}
METRICS_PORT=$((PORT + 1))
mkdir -p "$OUT"
DATA=$(mktemp -d /tmp/rill-soak.XXXXXX)

cargo build --release -q -p rill-broker -p rill-tools
target/release/rill-broker --data-dir "$DATA" --listen 127.0.0.1:$PORT \
  --metrics-addr 127.0.0.1:$METRICS_PORT --retention-check-interval-ms 5000 \
  >"$OUT/broker.out" 2>"$OUT/broker.err" &
BROKER=$!
trap 'kill $BROKER 2>/dev/null || true; wait $BROKER 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 50); do grep -q listening "$OUT/broker.out" 2>/dev/null && break; sleep 0.1; done

rss() { awk '/^(VmRSS|VmHWM)/ {printf "%s %s kB  ", $1, $2}' /proc/$BROKER/status; echo; }
RILL="target/release/rill --broker 127.0.0.1:$PORT"
# Bounded disk: 1 GiB per partition, 128 MiB segments.
$RILL topic create soak -p 4 --retention-bytes 1073741824 --segment-bytes 134217728 >/dev/null

echo "== measuring the maximum (15 s)"
$RILL bench produce-consume --topic soak --duration 15 --json >"$OUT/max.json"
MAX=$(python3 -c "import json,sys; d=json.load(open('$OUT/max.json')); print(int(d['produce']['total']['records_per_sec']))")
RATE=$((MAX * 8 / 10))
echo "max ${MAX} records/s; soaking at ${RATE} records/s for ${DURATION} s"
echo "broker memory at start: $(rss)" | tee "$OUT/memory.txt"
$RILL bench produce-consume --topic soak --rate "$RATE" --duration "$DURATION" \
  --output-dir "$OUT" --quiet | tee "$OUT/summary.txt"
echo "broker memory at end:   $(rss)" | tee -a "$OUT/memory.txt"
echo "time series: $OUT/timeseries.csv, chart: $OUT/chart.svg"
