//! The bench's report: a compact table (in the spirit of
//! kafka-producer-perf-test's final line), or one JSON object on stdout,
//! plus `timeseries.csv` and `chart.svg` with `--output-dir`.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::group::GroupReport;
use super::stats::{
    merged, merged_latency, merged_series, ActorStats, LatencySummary, PerSecondP99, SeriesRow,
    Throughput,
};
use super::workload::Checksum;
use super::{chart, Settings};
use crate::cli::Scenario;
use crate::error::CliError;

/// File names written under `--output-dir`.
pub const TIMESERIES_FILE: &str = "timeseries.csv";
pub const CHART_FILE: &str = "chart.svg";

/// One side of a run: producers or consumers.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// `producer` or `consumer`.
    pub role: &'static str,
    /// False for the produce phase that only fills the topic for `consume`.
    pub measured: bool,
    pub actors: Vec<Throughput>,
    pub total: Throughput,
    /// `ack` for producers, `end-to-end` for produce-consume consumers.
    pub latency_kind: Option<&'static str>,
    pub latency: Option<LatencySummary>,
    /// The p99 of each second's `latency`, over the measured seconds.
    pub per_second_p99: Option<PerSecondP99>,
    /// Producers: of each record's ack latency, the part spent in the
    /// producer's buffer before its batch's request was queued ...
    pub queued: Option<LatencySummary>,
    /// ... and the part in flight, from the request to its acknowledgement.
    pub in_flight: Option<LatencySummary>,
    /// Producers: one sample per batch, request queued to acknowledgement
    /// (iggy-bench's and Kafka's request latency).
    pub request_latency: Option<LatencySummary>,
    /// Producers: resends and what idempotence did with them.
    pub retries: Option<Retries>,
    /// Delivery or fetch failures, with the first message.
    pub errors: u64,
    pub first_error: Option<String>,
    #[serde(skip)]
    pub series: Vec<SeriesRow>,
}

/// The producers' retry counters, summed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Retries {
    pub batches_sent: u64,
    pub batches_resent: u64,
    /// Resent batches the broker already held: not written twice.
    pub duplicates_suppressed: u64,
    pub epoch_bumps: u64,
    pub most_resent_at_once: u64,
}

impl Retries {
    fn of(actors: &[ActorStats]) -> Option<Retries> {
        let mut out = Retries::default();
        let mut any = false;
        for p in actors.iter().filter_map(|a| a.producer) {
            any = true;
            out.batches_sent += p.batches_sent;
            out.batches_resent += p.batches_resent;
            out.duplicates_suppressed += p.duplicates_suppressed;
            out.epoch_bumps += p.epoch_bumps;
            out.most_resent_at_once = out.most_resent_at_once.max(p.most_resent_at_once);
        }
        any.then_some(out)
    }
}

impl PhaseReport {
    fn of(
        role: &'static str,
        actors: &[ActorStats],
        measured: bool,
        latency_kind: Option<&'static str>,
    ) -> PhaseReport {
        let series = merged_series(actors);
        PhaseReport {
            role,
            measured,
            actors: actors
                .iter()
                .enumerate()
                .map(|(i, a)| Throughput::of_actor(format!("{role} {i}"), a))
                .collect(),
            total: Throughput::total(actors),
            latency_kind,
            latency: latency_kind.and_then(|_| LatencySummary::of(&merged_latency(actors))),
            per_second_p99: latency_kind.and_then(|_| PerSecondP99::of(&series)),
            queued: LatencySummary::of(&merged(actors, |a| &a.queued)),
            in_flight: LatencySummary::of(&merged(actors, |a| &a.in_flight)),
            request_latency: LatencySummary::of(&merged(actors, |a| &a.request)),
            retries: Retries::of(actors),
            errors: actors.iter().map(|a| a.errors).sum(),
            first_error: actors.iter().find_map(|a| a.first_error.clone()),
            series,
        }
    }

    pub fn producers(actors: &[ActorStats], measured: bool) -> PhaseReport {
        PhaseReport::of("producer", actors, measured, Some("ack"))
    }

    /// `end_to_end`: the values carry send stamps (produce-consume).
    pub fn consumers(actors: &[ActorStats], end_to_end: bool) -> PhaseReport {
        PhaseReport::of("consumer", actors, true, end_to_end.then_some("end-to-end"))
    }
}

/// Did every record arrive?
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Records that should have been consumed: acknowledged ones, or the
    /// offsets between the start and end of the log read.
    pub records_expected: u64,
    pub records_consumed: u64,
    /// Records the log gained during the run, by its offsets.
    pub log_records: Option<u64>,
    /// Checksum of what was acknowledged (absent when `consume` read data
    /// written before the run: then only the count is checked).
    pub checksum_expected: Option<Checksum>,
    pub checksum_consumed: Checksum,
    /// Records consumed more than once (`group` runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<u64>,
    pub ok: bool,
    /// `verified: N records, checksum match`, or what differs.
    pub summary: String,
}

impl Verification {
    pub fn new(
        expected: u64,
        expected_checksum: Option<Checksum>,
        consumed: Checksum,
    ) -> Verification {
        let count_ok = consumed.count == expected;
        let checksum_ok = expected_checksum.is_none_or(|c| c == consumed);
        let ok = count_ok && checksum_ok;
        let summary = match (ok, expected_checksum) {
            (true, Some(_)) => format!("verified: {expected} records, checksum match"),
            (true, None) => format!(
                "verified: {expected} records (count only: the data was written before this run)"
            ),
            (false, Some(c)) => format!(
                "verification FAILED: expected {expected} records (checksum {}), consumed {} (checksum {})",
                c.hex(),
                consumed.count,
                consumed.hex()
            ),
            (false, None) => format!(
                "verification FAILED: expected {expected} records, consumed {}",
                consumed.count
            ),
        };
        Verification {
            records_expected: expected,
            records_consumed: consumed.count,
            log_records: None,
            checksum_expected: expected_checksum,
            checksum_consumed: consumed,
            duplicates: None,
            ok,
            summary,
        }
    }

    /// Adds the duplicate count; any duplicate fails the verification (the
    /// count and checksum then include the extra copies, so they differ too).
    pub fn with_duplicates(mut self, duplicates: u64) -> Verification {
        self.duplicates = Some(duplicates);
        if duplicates > 0 {
            self.ok = false;
            let _ = write!(
                self.summary,
                "; {duplicates} records consumed more than once"
            );
            if !self.summary.starts_with("verification FAILED") {
                self.summary = format!("verification FAILED: {}", self.summary);
            }
        } else if self.ok {
            self.summary.push_str(", no duplicates");
        }
        self
    }
}

/// Everything a run reports; serialized as the `--json` object.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub topic: String,
    pub produce: Option<PhaseReport>,
    pub consume: Option<PhaseReport>,
    /// Members, their partitions and duplicates (`group` runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupReport>,
    pub verification: Option<Verification>,
}

impl Report {
    pub fn new(
        settings: &Settings,
        topic: String,
        produce: Option<PhaseReport>,
        consume: Option<PhaseReport>,
        verification: Option<Verification>,
    ) -> Report {
        Report {
            settings: settings.clone(),
            topic,
            produce,
            consume,
            group: None,
            verification,
        }
    }

    /// Why the run should exit non-zero, if it should.
    pub fn failure(&self) -> Option<String> {
        let mut problems = Vec::new();
        for phase in [&self.produce, &self.consume].into_iter().flatten() {
            if phase.errors > 0 {
                problems.push(format!(
                    "{} {} errors (first: {})",
                    phase.errors,
                    phase.role,
                    phase.first_error.as_deref().unwrap_or("unknown")
                ));
            }
        }
        if let Some(v) = &self.verification {
            if !v.ok {
                problems.push(v.summary.clone());
            }
        }
        (!problems.is_empty()).then(|| format!("bench run failed: {}", problems.join("; ")))
    }

    /// The series the CSV and chart show: consumers' in produce-consume and
    /// consume (end-to-end latency, consumed throughput), else producers'.
    pub fn primary_series(&self) -> &[SeriesRow] {
        let phase = match self.settings.scenario {
            Scenario::Consume | Scenario::ProduceConsume | Scenario::Group => self.consume.as_ref(),
            _ => self.produce.as_ref(),
        };
        phase.map_or(&[], |p| p.series.as_slice())
    }

    /// The human table.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "settings: scenario={} broker={} topic={} producers={} consumers={} partitions={} message-size={} batch-size={} linger-ms={} compression={} acks={} idempotence={} max-in-flight={} {} rate={} keys={}{} warmup={}s",
            scenario_name(s.scenario),
            if s.io_direct {
                format!("{} (io-direct)", s.broker)
            } else {
                s.broker.clone()
            },
            self.topic,
            s.producers,
            s.consumers,
            s.partitions,
            s.message_size,
            s.batch_size,
            s.linger_ms,
            json_name(&s.compression),
            json_name(&s.acks),
            s.enable_idempotence && s.acks != crate::cli::AcksArg::None,
            s.max_in_flight,
            match (s.messages, s.duration_secs) {
                (Some(m), _) => format!("messages={m}"),
                (None, Some(d)) => format!("duration={d}s"),
                (None, None) => String::new(),
            },
            s.rate.map_or_else(|| "max".to_owned(), |r| format!("{r}/s")),
            json_name(&s.keys),
            if s.keys == crate::cli::KeyMode::None { String::new() } else { format!(" key-count={}", s.key_count) },
            s.warmup_secs,
        );
        for phase in [&self.produce, &self.consume].into_iter().flatten() {
            write_phase(&mut out, phase);
        }
        if let Some(g) = &self.group {
            let _ = writeln!(
                out,
                "group {}: {} members, Stable after {:.2} s",
                g.group_id,
                g.members.len(),
                g.settle_secs
            );
            for m in &g.members {
                let partitions: Vec<String> = m.partitions.iter().map(u32::to_string).collect();
                let _ = writeln!(
                    out,
                    "  {}: partitions [{}], {} records",
                    m.name,
                    partitions.join(","),
                    m.records
                );
            }
        }
        if let Some(v) = &self.verification {
            let _ = writeln!(out, "{}", v.summary);
        }
        out
    }
}

fn scenario_name(s: Scenario) -> &'static str {
    match s {
        Scenario::Produce => "produce",
        Scenario::Consume => "consume",
        Scenario::ProduceConsume => "produce-consume",
        Scenario::Group => "group",
    }
}

/// A value enum's name as serde spells it.
fn json_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn write_phase(out: &mut String, p: &PhaseReport) {
    let verb = if p.role == "producer" {
        "acknowledged"
    } else {
        "consumed"
    };
    let note = if p.measured {
        ""
    } else {
        " (produce phase, not measured)"
    };
    if p.actors.len() > 1 {
        for a in &p.actors {
            let _ = writeln!(
                out,
                "  {}: {} records {verb}, {:.1} records/s ({:.2} MiB/s){}",
                a.name,
                a.records,
                a.records_per_sec,
                a.mib_per_sec,
                errors_note(a.errors)
            );
        }
    }
    let t = &p.total;
    let _ = write!(
        out,
        "{}s: {} records {verb} in {:.2} s, {:.1} records/s ({:.2} MiB/s){}{note}",
        p.role,
        t.records,
        t.seconds,
        t.records_per_sec,
        t.mib_per_sec,
        errors_note(t.errors)
    );
    let _ = writeln!(out);
    if let (Some(kind), Some(l)) = (p.latency_kind, &p.latency) {
        let what = match kind {
            "ack" => "per-record ack latency (send() to its acknowledgement, time queued in the producer included)",
            _ => "per-record end-to-end latency (send() to consumed)",
        };
        let _ = writeln!(out, "  {what}:");
        let _ = writeln!(out, "    {}", summary_line(l));
        if let Some(q) = &p.queued {
            let _ = writeln!(
                out,
                "    of which queued in the producer: {}",
                summary_line(q)
            );
        }
        if let Some(f) = &p.in_flight {
            let _ = writeln!(
                out,
                "    of which in flight (request to ack): {}",
                summary_line(f)
            );
        }
        if let Some(r) = &p.request_latency {
            let _ = writeln!(
                out,
                "  request latency (a batch's request to its acknowledgement, as iggy-bench and Kafka report): {}",
                summary_line(r)
            );
        }
        if let Some(s) = &p.per_second_p99 {
            let _ = writeln!(
                out,
                "  per-second p99 of the {kind} latency over {} s: median {}, worst {}",
                s.seconds,
                fmt_us(s.median_micros),
                fmt_us(s.max_micros)
            );
        }
        let thin: Vec<String> = l
            .percentiles
            .iter()
            .filter(|pc| pc.too_few_samples)
            .map(|pc| format!("{} (needs ≥ {} samples)", pc.name, pc.samples_needed))
            .collect();
        if !thin.is_empty() {
            let _ = writeln!(
                out,
                "  note: too few samples to mean much for {}",
                thin.join(", ")
            );
        }
    } else if p.latency_kind.is_some() {
        let _ = writeln!(out, "  no latency samples after warm-up");
    }
    if let Some(r) = &p.retries {
        let _ = writeln!(
            out,
            "  retries: {} of {} batches resent, {} duplicates suppressed by the broker, {} epoch bumps",
            r.batches_resent, r.batches_sent, r.duplicates_suppressed, r.epoch_bumps
        );
    }
    if let Some(e) = &p.first_error {
        let _ = writeln!(out, "  first error: {e}");
    }
}

/// `N samples: mean .., p50 .., ..., max ..`.
fn summary_line(l: &LatencySummary) -> String {
    let mut line = format!(
        "{} samples: mean {}",
        l.samples,
        fmt_us(l.mean_micros as u64)
    );
    for pc in &l.percentiles {
        let _ = write!(line, ", {} {}", pc.name, fmt_us(pc.micros));
    }
    let _ = write!(line, ", max {}", fmt_us(l.max_micros));
    line
}

fn errors_note(errors: u64) -> String {
    if errors == 0 {
        String::new()
    } else {
        format!(", {errors} errors")
    }
}

/// Microseconds, shown in the unit that keeps them readable.
fn fmt_us(us: u64) -> String {
    if us >= 1_000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

/// Prints the report and writes the output files.
pub fn emit(report: &Report, settings: &Settings) -> Result<(), CliError> {
    if let Some(dir) = &settings.output_dir {
        write_outputs(report, dir)?;
        if !settings.quiet && !settings.json {
            eprintln!(
                "wrote {} and {}",
                dir.join(TIMESERIES_FILE).display(),
                dir.join(CHART_FILE).display()
            );
        }
    }
    if settings.json {
        let text = serde_json::to_string(report)
            .map_err(|e| CliError::Failed(format!("cannot render the JSON report: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

fn write_outputs(report: &Report, dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        CliError::io(
            format!("cannot create output directory {}", dir.display()),
            e,
        )
    })?;
    let rows = report.primary_series();
    let mut csv = String::from("elapsed_s,records_per_s,mib_per_s,p50_latency_us,p99_latency_us\n");
    for r in rows {
        let opt = |v: Option<u64>| v.map_or_else(String::new, |v| v.to_string());
        let _ = writeln!(
            csv,
            "{},{},{:.3},{},{}",
            r.elapsed_secs,
            r.records_per_sec,
            r.mib_per_sec,
            opt(r.p50_micros),
            opt(r.p99_micros)
        );
    }
    let csv_path = dir.join(TIMESERIES_FILE);
    std::fs::write(&csv_path, csv)
        .map_err(|e| CliError::io(format!("cannot write {}", csv_path.display()), e))?;
    let chart_path = dir.join(CHART_FILE);
    chart::draw(&chart_path, rows, scenario_name(report.settings.scenario))
        .map_err(|e| CliError::Failed(format!("cannot draw {}: {e}", chart_path.display())))?;
    Ok(())
}
