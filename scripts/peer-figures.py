#!/usr/bin/env python3
"""The idempotent producer's BENCHMARKS.md figures, Rill beside Iggy.

Each run starts a fresh release `rill-broker` (or `iggy-server`) on a fresh
data directory, runs one bench against it, stops it and removes the data;
the kinds of a scenario alternate run by run. 1000-byte values, 1000 per
batch (Rill: 1 MiB batches), one producer, one partition (Iggy: one shard).

    python3 scripts/peer-figures.py OUT.json [RUNS] [SCENARIO...]

Scenarios: durable (acks=all / --enforce-fsync, 2 GB), fixed (300 MB/s,
3 GB, acks=leader and acks=all), idempotence (acks=leader, 6 GB, idempotence
on and off). Iggy runs when IGGY_BIN names the directory holding
`iggy-server` and `iggy-bench` (built from apache/iggy, never committed);
it is started as PEERS.md says. RILL_BIN names another Rill build's
release directory (an older commit, for a before/after). Build Rill first:
cargo build --release.
"""
import json, os, re, shutil, signal, statistics as st, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("RILL_BIN", ROOT / "target" / "release"))
IGGY = os.environ.get("IGGY_BIN")
LISTEN, METRICS = "127.0.0.1:19492", "127.0.0.1:19493"
MB = 1_000_000


def wait_port(host, port, timeout=30):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{host}:{port} never opened")


def rill_run(broker_flags, bench_args):
    data = tempfile.mkdtemp(prefix="rill-fig-", dir="/work")
    broker = subprocess.Popen([BIN / "rill-broker", "--data-dir", data, "--listen", LISTEN,
                               "--metrics-addr", METRICS] + broker_flags,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port("127.0.0.1", 19492)
        out = subprocess.run([BIN / "rill", "bench", "--broker", LISTEN, "--json", "--quiet",
                              "--partitions", "1", "--message-size", "1000"] + bench_args,
                             capture_output=True, text=True)
        if out.returncode != 0:
            print("FAILED", bench_args, out.stderr[-400:], flush=True)
            return None
        return json.loads(out.stdout)
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait()
        shutil.rmtree(data, ignore_errors=True)


def iggy_run(bench_args):
    data = tempfile.mkdtemp(prefix="iggy-fig-", dir="/work")
    env = dict(os.environ, IGGY_ROOT_USERNAME="iggy", IGGY_ROOT_PASSWORD="iggy",
               IGGY_SYSTEM_SHARDING_CPU_ALLOCATION="1", IGGY_SYSTEM_PATH=data)
    server = subprocess.Popen([Path(IGGY) / "iggy-server"], env=env, cwd=data,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port("127.0.0.1", 8090)
        time.sleep(1)
        out = subprocess.run([Path(IGGY) / "iggy-bench"] + bench_args, capture_output=True, text=True)
        m = re.search(r"Producers Results: Total throughput: ([\d.]+) MB/s.*?p50 latency: ([\d.]+) ms, "
                      r"p90 latency: ([\d.]+) ms, p95 latency: ([\d.]+) ms, p99 latency: ([\d.]+) ms, "
                      r"p999 latency: ([\d.]+) ms, p9999 latency: ([\d.]+) ms", out.stdout + out.stderr)
        if not m:
            print("IGGY FAILED", bench_args, (out.stdout + out.stderr)[-400:], flush=True)
            return None
        v = [float(x) for x in m.groups()]
        return {"mb_per_sec": v[0], "p50_ms": v[1], "p99_ms": v[4], "p99.9_ms": v[5], "p99.99_ms": v[6]}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(data, ignore_errors=True)


def rill_mbs(d):
    return d["produce"]["total"]["mib_per_sec"] * 1.048576


def pct(summary, name):
    return next(p["micros"] for p in summary["percentiles"] if p["name"] == name) / 1000


def rill_summary(d):
    p = d["produce"]
    out = {"mb_per_sec": rill_mbs(d)}
    for key in ("latency", "queued", "in_flight", "request_latency"):
        if p.get(key):
            for q in ("p50", "p99", "p99.9", "p99.99"):
                out[f"{key}_{q}_ms"] = pct(p[key], q)
    if p.get("per_second_p99"):
        out["per_second_p99_median_ms"] = p["per_second_p99"]["median_micros"] / 1000
        out["per_second_p99_max_ms"] = p["per_second_p99"]["max_micros"] / 1000
    out["retries"] = p.get("retries")
    return out


def main():
    out_path = Path(sys.argv[1] if len(sys.argv) > 1 else "peer-figures.json")
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    scenarios = sys.argv[3:] or ["durable", "fixed", "idempotence"]
    kinds = {}
    if "durable" in scenarios:
        kinds["durable"] = [
            ("rill", lambda: rill_run([], ["--acks", "all", "--messages", "2000000"])),
            ("rill_direct", lambda: rill_run(["--io-direct"], ["--acks", "all", "--messages", "2000000"])),
        ] + ([("iggy", lambda: iggy_run(["-b", "2000", "--enforce-fsync", "pinned-producer", "-p", "1", "tcp"]))]
             if IGGY else [])
    if "fixed" in scenarios:
        rate = ["--rate", "300000", "--messages", "3000000"]
        kinds["fixed"] = [
            ("rill_leader", lambda: rill_run([], ["--acks", "leader"] + rate)),
            ("rill_all", lambda: rill_run([], ["--acks", "all"] + rate)),
            ("rill_direct_leader", lambda: rill_run(["--io-direct"], ["--acks", "leader"] + rate)),
            ("rill_direct_all", lambda: rill_run(["--io-direct"], ["--acks", "all"] + rate)),
        ] + ([("iggy", lambda: iggy_run(["-b", "3000", "-r", "300MB", "pinned-producer", "-p", "1", "tcp"]))]
             if IGGY else [])
    if "idempotence" in scenarios:
        kinds["idempotence"] = [
            ("on", lambda: rill_run([], ["--acks", "leader", "--messages", "6000000"])),
            ("off", lambda: rill_run([], ["--acks", "leader", "--messages", "6000000",
                                          "--enable-idempotence", "false"])),
        ]
    results = {}
    for scenario, ks in kinds.items():
        for i in range(runs):
            for name, run in ks:
                d = run()
                if d is None:
                    continue
                s = rill_summary(d) if name != "iggy" else d
                results.setdefault(scenario, {}).setdefault(name, []).append(s)
                brief = {k: round(v, 3) for k, v in s.items() if isinstance(v, float)
                         and (k == "mb_per_sec" or "p99_ms" in k or "p50_ms" in k)}
                print(scenario, name, i, json.dumps(brief), flush=True)
        for name, rs in results.get(scenario, {}).items():
            keys = [k for k, v in rs[0].items() if isinstance(v, float)]
            med = {k: round(st.median(r[k] for r in rs), 3) for k in keys}
            print("MEDIAN", scenario, name, json.dumps(med), flush=True)
    out_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
