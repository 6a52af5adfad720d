#!/usr/bin/env python3
"""Cluster-mode figures for BENCHMARKS.md: replication factor 3 against the
single node, measured in the same run.

Alternates, round by round, `rill bench` with an embedded lone broker and
with an embedded three-broker cluster (`--embedded-brokers 3
--replication-factor 3`), acks=all, for 1 and 4 producers; then runs the
cluster at half of its median rate and reports the ack and request p99
there. Prints one JSON object (every run) and a Markdown table of medians.

Usage: scripts/cluster-figures.py [ROUNDS] [SECONDS]   (defaults 3, 10)
Needs a release build: cargo build --release --bin rill
"""

import json
import statistics
import subprocess
import sys

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
SECONDS = sys.argv[2] if len(sys.argv) > 2 else "10"
RILL = "target/release/rill"


def bench(extra):
    cmd = [RILL, "bench", "produce", "--acks", "all", "--json", "--quiet",
           "--duration", SECONDS] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    report = json.loads(out)
    p = report["produce"]
    pct = lambda lat, name: next(
        (x["micros"] / 1000 for x in lat["percentiles"] if x["name"] == name), None)
    return {
        "cmd": " ".join(cmd),
        "mb_per_s": p["total"]["bytes"] / p["total"]["seconds"] / 1e6,
        "records_per_s": p["total"]["records_per_sec"],
        "ack_p99_ms": pct(p["latency"], "p99"),
        "request_p99_ms": pct(p["request_latency"], "p99"),
        "retries": p["retries"],
    }


def main():
    runs = {}
    for _ in range(ROUNDS):
        for producers in (1, 4):
            for kind, extra in (("single", []),
                                ("rf3", ["--embedded-brokers", "3",
                                         "--replication-factor", "3"])):
                r = bench(extra + ["--producers", str(producers)])
                runs.setdefault(f"{kind}-p{producers}", []).append(r)
                print(f"{kind} producers={producers}: {r['mb_per_s']:.0f} MB/s "
                      f"ack p99 {r['ack_p99_ms']} ms", file=sys.stderr)
    half = statistics.median(r["records_per_s"] for r in runs["rf3-p1"]) / 2
    for _ in range(ROUNDS):
        r = bench(["--embedded-brokers", "3", "--replication-factor", "3",
                   "--producers", "1", "--rate", f"{half:.0f}"])
        runs.setdefault("rf3-p1-half-rate", []).append(r)
        print(f"rf3 at {half:.0f} records/s: ack p99 {r['ack_p99_ms']} ms, "
              f"request p99 {r['request_p99_ms']} ms", file=sys.stderr)
    print(json.dumps(runs, indent=1))
    print("\n| figure | runs (MB/s) | median | ack p99 median (ms) |", file=sys.stderr)
    print("|---|---|---|---|", file=sys.stderr)
    for key, rs in runs.items():
        mbs = [round(r["mb_per_s"]) for r in rs]
        p99 = statistics.median(r["ack_p99_ms"] for r in rs)
        print(f"| {key} | {', '.join(map(str, mbs))} | {statistics.median(mbs)} | {p99:.1f} |",
              file=sys.stderr)


if __name__ == "__main__":
    main()
