//! `rill bench` runs end to end: embedded broker, real producers and
//! consumers, every record verified, JSON, CSV and SVG outputs.

use serde_json::Value;

use crate::common::{ok, rill, stdout, TestBroker};

fn json(o: &std::process::Output) -> Value {
    serde_json::from_str(stdout(ok(o)).trim()).expect("one JSON object on stdout")
}

#[test]
fn produce_consume_in_embedded_mode_verifies_every_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("run");
    let out_arg = out_dir.to_str().expect("utf-8 path");
    let out = rill(
        &[
            "bench",
            "produce-consume",
            "--messages",
            "20000",
            "--message-size",
            "256",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--keys",
            "zipf",
            "--json",
            "--output-dir",
            out_arg,
        ],
        None,
    );
    let report = json(&out);
    let v = &report["verification"];
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records_expected"], 20000);
    assert_eq!(v["records_consumed"], 20000);
    assert_eq!(v["log_records"], 20000);
    assert_eq!(v["checksum_expected"], v["checksum_consumed"]);
    assert_eq!(v["summary"], "verified: 20000 records, checksum match");

    let produce = &report["produce"];
    assert_eq!(produce["total"]["records"], 20000);
    assert_eq!(produce["actors"].as_array().map(Vec::len), Some(2));
    assert_eq!(produce["latency"]["samples"], 20000);
    // The split of each record's latency covers every record; the request
    // latency has one sample per batch, each batch holding at least one.
    assert_eq!(produce["queued"]["samples"], 20000);
    assert_eq!(produce["in_flight"]["samples"], 20000);
    let batches = produce["retries"]["batches_sent"]
        .as_u64()
        .expect("batches");
    assert_eq!(
        produce["request_latency"]["samples"].as_u64(),
        Some(batches)
    );
    assert!((1..=20000).contains(&batches));
    assert_eq!(produce["retries"]["batches_resent"], 0);
    let consume = &report["consume"];
    assert_eq!(consume["latency_kind"], "end-to-end");
    assert_eq!(consume["latency"]["samples"], 20000);
    let pcts = consume["latency"]["percentiles"]
        .as_array()
        .expect("percentiles");
    let p9999 = pcts.iter().find(|p| p["name"] == "p99.99").expect("p99.99");
    assert_eq!(p9999["too_few_samples"], false);
    let p50 = pcts[0]["micros"].as_u64().expect("p50");
    let max = consume["latency"]["max_micros"].as_u64().expect("max");
    assert!(p50 >= 1 && p50 <= max);
    assert_eq!(report["settings"]["keys"], "zipf");
    assert_eq!(report["settings"]["broker"], "embedded");

    let csv = std::fs::read_to_string(out_dir.join("timeseries.csv")).expect("csv written");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("elapsed_s,records_per_s,mib_per_s,p50_latency_us,p99_latency_us")
    );
    let per_second: u64 = lines
        .map(|l| {
            l.split(',')
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .expect("rate column")
        })
        .sum();
    assert_eq!(
        per_second, 20000,
        "the seconds add up to every consumed record"
    );
    let svg = std::fs::read_to_string(out_dir.join("chart.svg")).expect("chart written");
    assert!(
        svg.contains("<svg") && svg.contains("polyline"),
        "{svg:.200}"
    );
}

#[test]
fn io_direct_embedded_broker_serves_a_verified_produce_consume_run() {
    let out = rill(
        &[
            "bench",
            "produce-consume",
            "--io-direct",
            "--messages",
            "20000",
            "--message-size",
            "700",
            "--json",
        ],
        None,
    );
    let report = json(&out);
    let v = &report["verification"];
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records_consumed"], 20000);
    assert_eq!(v["checksum_expected"], v["checksum_consumed"]);
    assert_eq!(report["settings"]["io_direct"], true);
}

#[test]
fn an_embedded_three_broker_cluster_serves_a_verified_acks_all_run() {
    // Three in-process brokers with --peers; the topic has three replicas,
    // so every acknowledged record was committed on two of them, and the
    // consumers read every one back from the leaders.
    let out = rill(
        &[
            "bench",
            "produce-consume",
            "--embedded-brokers",
            "3",
            "--replication-factor",
            "3",
            "--acks",
            "all",
            "--partitions",
            "3",
            "--messages",
            "20000",
            "--message-size",
            "200",
            "--json",
        ],
        None,
    );
    let report = json(&out);
    let v = &report["verification"];
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records_consumed"], 20000);
    assert_eq!(v["checksum_expected"], v["checksum_consumed"]);
    assert_eq!(report["settings"]["embedded_brokers"], 3);
    assert_eq!(report["settings"]["broker"], "embedded cluster of 3");
}

#[test]
fn consume_scenario_against_a_running_broker_reads_existing_data() {
    let broker = TestBroker::start();
    ok(&broker.rill(&["topic", "create", "existing", "--partitions", "2"]));
    let lines: String = (0..500)
        .map(|i| format!("record number {i:05} with padding\n"))
        .collect();
    ok(&broker.rill_with_stdin(&["produce", "existing"], lines.as_bytes()));
    let out = broker.rill(&[
        "bench",
        "consume",
        "--topic",
        "existing",
        "--consumers",
        "2",
        "--json",
    ]);
    let report = json(&out);
    assert_eq!(report["settings"]["broker"], broker.addr.as_str());
    assert_eq!(
        report["produce"],
        Value::Null,
        "no produce phase on a full topic"
    );
    let v = &report["verification"];
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records_consumed"], 500);
    assert_eq!(v["checksum_expected"], Value::Null);
    assert_eq!(report["consume"]["total"]["records"], 500);

    // A bench without --topic on a running broker cleans its topic up;
    // the named topic stays.
    ok(&broker.rill(&[
        "bench",
        "--messages",
        "1000",
        "--message-size",
        "64",
        "--quiet",
    ]));
    assert_eq!(stdout(ok(&broker.rill(&["topic", "list"]))), "existing\n");
}

#[test]
fn warmup_samples_are_verified_but_not_measured() {
    // 1.5 s at 2000/s with 0.5 s of warm-up: a third of the records fall
    // in the warm-up and must be missing from throughput and latency, yet
    // present in the verification.
    let out = rill(
        &[
            "bench",
            "produce-consume",
            "--duration",
            "1.5",
            "--warmup",
            "0.5",
            "--rate",
            "2000",
            "--message-size",
            "64",
            "--json",
        ],
        None,
    );
    let report = json(&out);
    let v = &report["verification"];
    assert_eq!(v["ok"], true, "{v}");
    // Fixed rate: record n is due at n / 2000 s, so exactly 3000 are due
    // before 1.5 s and exactly 2000 of them at or after 0.5 s.
    let all = v["records_consumed"].as_u64().expect("count");
    assert_eq!(all, 3000);
    let samples = report["consume"]["latency"]["samples"]
        .as_u64()
        .expect("samples");
    let acked = report["produce"]["latency"]["samples"]
        .as_u64()
        .expect("samples");
    assert_eq!(samples, 2000);
    assert_eq!(acked, 2000);
    let measured = report["produce"]["total"]["records"]
        .as_u64()
        .expect("records");
    assert!(
        measured < all - 800,
        "warm-up acks counted: {measured} of {all}"
    );
}

#[test]
fn without_warmup_flag_a_tenth_of_the_run_is_warmup() {
    // 2 s at 1000/s and no --warmup: the first 0.2 s (records 0..200) are
    // warm-up, so 1800 acknowledgements are timed and all 2000 verified.
    let out = rill(
        &[
            "bench",
            "produce-consume",
            "--duration",
            "2",
            "--rate",
            "1000",
            "--message-size",
            "64",
            "--json",
        ],
        None,
    );
    let report = json(&out);
    assert_eq!(
        report["settings"]["warmup_secs"], 0.2,
        "{}",
        report["settings"]
    );
    assert_eq!(report["verification"]["records_consumed"], 2000);
    assert_eq!(report["produce"]["latency"]["samples"], 1800);
}

#[test]
fn produce_scenario_prints_a_table_and_fixed_rate_counts_from_intended_times() {
    let out = rill(
        &[
            "bench",
            "--messages",
            "2000",
            "--message-size",
            "100",
            "--rate",
            "4000",
            "--acks",
            "all",
        ],
        None,
    );
    let text = stdout(ok(&out));
    assert!(
        text.starts_with("settings: scenario=produce broker=embedded"),
        "{text}"
    );
    assert!(text.contains("rate=4000/s"), "{text}");
    assert!(
        text.contains("producers: 2000 records acknowledged in"),
        "{text}"
    );
    assert!(text.contains("per-record ack latency (send() to its acknowledgement, time queued in the producer included):\n    2000 samples"), "{text}");
    assert!(
        text.contains("of which queued in the producer: 2000 samples"),
        "{text}"
    );
    assert!(
        text.contains("of which in flight (request to ack): 2000 samples"),
        "{text}"
    );
    assert!(
        text.contains("request latency (a batch's request to its acknowledgement"),
        "{text}"
    );
    assert!(
        text.contains("per-second p99 of the ack latency over"),
        "{text}"
    );
    assert!(text.contains("retries: 0 of "), "{text}");
    assert!(
        text.contains("note: too few samples to mean much for p99.99 (needs ≥ 10000 samples)"),
        "{text}"
    );
    // 2000 records at 4000/s cannot finish in much under half a second.
    let secs: f64 = text
        .split("acknowledged in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("seconds in the table");
    assert!(secs >= 0.45, "rate limit not honoured: {secs} s");
}
