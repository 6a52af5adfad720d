#!/usr/bin/env python3
"""The BENCHMARKS.md end-to-end figures: starts a release `rill-broker` on
loopback, runs each `rill bench` scenario three times against it, prints
the medians and writes every run's JSON to the file named by the first
argument (default bench-figures.json); further arguments go to
`rill-broker` (e.g. --io-direct). Build first: cargo build --release.
"""
import json, signal, statistics as st, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"
LISTEN, METRICS = "127.0.0.1:19492", "127.0.0.1:19493"
RUNS = 3

def bench(args):
    out = subprocess.run([BIN / "rill", "bench", "--broker", LISTEN, "--json", "--quiet"] + args,
                         capture_output=True, text=True)
    if out.returncode != 0:
        print("FAILED", args, out.stderr[-500:], flush=True)
        return None
    return json.loads(out.stdout)

def mbs(d, phase):
    return d[phase]["total"]["mib_per_sec"] * 1.048576

def pct(d, phase, name):
    return next(p["micros"] for p in d[phase]["latency"]["percentiles"] if p["name"] == name) / 1000

def main():
    results = {}
    def run(name, args):
        results[name] = [d for d in (bench(args) for _ in range(RUNS)) if d]
        return results[name]
    def thr(name, phase, args):
        vals = [mbs(d, phase) for d in run(name, args)]
        print(f"{name}: MB/s {[round(v) for v in vals]} median {st.median(vals):.0f}", flush=True)
    def lat(name, phase, args):
        rs = run(name, args)
        for k in ("p50", "p99", "p99.9"):
            vals = [pct(d, phase, k) for d in rs]
            print(f"{name} {phase} {k} ms {[round(v, 2) for v in vals]} median {st.median(vals):.2f}", flush=True)

    with tempfile.TemporaryDirectory() as data:
        broker = subprocess.Popen([BIN / "rill-broker", "--data-dir", data, "--listen", LISTEN,
                                   "--metrics-addr", METRICS] + sys.argv[2:],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.5)
            thr("p1_leader", "produce", ["produce", "--producers", "1", "--acks", "leader", "--duration", "10"])
            thr("p1_all", "produce", ["produce", "--producers", "1", "--acks", "all", "--duration", "10"])
            thr("p4_leader", "produce", ["produce", "--producers", "4", "--acks", "leader", "--duration", "10"])
            thr("c1", "consume", ["consume", "--consumers", "1", "--messages", "3000000"])
            half = int(st.median(d["produce"]["total"]["records_per_sec"] for d in results["p1_leader"]) / 2)
            half_all = int(st.median(d["produce"]["total"]["records_per_sec"] for d in results["p1_all"]) / 2)
            print("half rates", half, half_all, flush=True)
            lat("fixed_leader", "produce", ["produce", "--acks", "leader", "--rate", str(half), "--duration", "10"])
            lat("fixed_all", "produce", ["produce", "--acks", "all", "--rate", str(half_all), "--duration", "10"])
            lat("fixed_e2e", "consume", ["produce-consume", "--acks", "leader", "--rate", str(half), "--duration", "10"])
        finally:
            broker.send_signal(signal.SIGTERM)
            broker.wait()
    Path(sys.argv[1] if len(sys.argv) > 1 else "bench-figures.json").write_text(json.dumps(results))

if __name__ == "__main__":
    main()
