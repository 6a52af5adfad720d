//! What each bench actor measures, and the summaries made from it.
//!
//! Every acknowledged (or consumed) record is one [`ActorStats::event`]:
//! counted for verification always, counted for throughput only when it
//! happened after warm-up, and — when the caller passes one — its latency
//! recorded in an HDR histogram at microsecond precision. Nothing is
//! sampled: percentiles come from every record.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::workload::Checksum;

/// Largest latency the histograms hold (1 hour, in µs); longer ones are
/// clamped to it, and the max then reads as this value.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Significant digits of the run-wide histograms: 0.1% error.
const LATENCY_SIGFIG: u8 = 3;
/// Significant digits of the per-second histograms of the time series:
/// 1% is plenty for a chart and keeps an hour-long run in memory.
const SERIES_SIGFIG: u8 = 2;
/// Bytes in a MiB, the unit of the throughput figures.
pub const MIB: f64 = 1024.0 * 1024.0;

/// Percentiles reported, with their names and the samples each needs to
/// mean anything (1 / (1 - q): p99.99 needs 10,000).
pub const PERCENTILES: [(&str, f64, u64); 5] = [
    ("p50", 50.0, 2),
    ("p90", 90.0, 10),
    ("p99", 99.0, 100),
    ("p99.9", 99.9, 1_000),
    ("p99.99", 99.99, 10_000),
];

fn latency_histogram(sigfig: u8) -> Histogram<u64> {
    // Only constants reach here; hdrhistogram refuses only invalid bounds,
    // a programming error that every bench test would hit at once.
    Histogram::new_with_bounds(1, LATENCY_US_MAX, sigfig)
        .expect("constant histogram bounds are valid")
}

/// One second of a time series.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub records: u64,
    pub bytes: u64,
    pub latency: Histogram<u64>,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            records: 0,
            bytes: 0,
            latency: latency_histogram(SERIES_SIGFIG),
        }
    }
}

/// Everything one producer or consumer measured.
#[derive(Debug, Clone)]
pub struct ActorStats {
    /// Every record, warm-up included (what verification counts).
    pub records: u64,
    pub bytes: u64,
    /// Records and bytes after warm-up (what throughput counts).
    pub measured_records: u64,
    pub measured_bytes: u64,
    /// Time of the last measured event: the end of the throughput window.
    pub last_event: Option<Instant>,
    pub latency: Histogram<u64>,
    /// Per-second buckets from `measure_from`, when a time series is kept.
    pub series: Option<Vec<Bucket>>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub checksum: Checksum,
    pub measure_from: Instant,
    /// Producers: of each record's ack latency, the time in the producer's
    /// buffer (until its batch's request was queued) ...
    pub queued: Histogram<u64>,
    /// ... and the time in flight (request queued to acknowledgement).
    pub in_flight: Histogram<u64>,
    /// Producers: one sample per batch, its request queued to its
    /// acknowledgement (what iggy-bench and Kafka's request latency give).
    pub request: Histogram<u64>,
    /// Producers: the client's counters (resends, duplicates suppressed).
    pub producer: Option<rill_client::ProducerStats>,
}

impl ActorStats {
    pub fn new(measure_from: Instant, with_series: bool) -> ActorStats {
        ActorStats {
            records: 0,
            bytes: 0,
            measured_records: 0,
            measured_bytes: 0,
            last_event: None,
            latency: latency_histogram(LATENCY_SIGFIG),
            series: with_series.then(Vec::new),
            errors: 0,
            first_error: None,
            checksum: Checksum::default(),
            measure_from,
            queued: latency_histogram(LATENCY_SIGFIG),
            in_flight: latency_histogram(LATENCY_SIGFIG),
            request: latency_histogram(LATENCY_SIGFIG),
            producer: None,
        }
    }

    /// Splits one measured record's ack latency into its time queued in the
    /// producer and its time in flight; `first_of_batch` also records the
    /// batch's request latency (once per batch).
    pub fn split(&mut self, queued: Duration, in_flight: Duration, first_of_batch: bool) {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.queued.saturating_record(us(queued));
        self.in_flight.saturating_record(us(in_flight));
        if first_of_batch {
            self.request.saturating_record(us(in_flight));
        }
    }

    /// One record acknowledged or consumed at `at`. `latency` is given only
    /// for records whose send time was after warm-up.
    pub fn event(&mut self, at: Instant, bytes: u64, latency: Option<Duration>, digest: u64) {
        self.records += 1;
        self.bytes += bytes;
        self.checksum.add(digest);
        let latency_us = latency.map(|l| u64::try_from(l.as_micros()).unwrap_or(u64::MAX).max(1));
        if let Some(us) = latency_us {
            self.latency.saturating_record(us);
        }
        let Some(since) = at.checked_duration_since(self.measure_from) else {
            return;
        };
        self.measured_records += 1;
        self.measured_bytes += bytes;
        self.last_event = Some(self.last_event.map_or(at, |l| l.max(at)));
        if let Some(series) = &mut self.series {
            let second = usize::try_from(since.as_secs()).unwrap_or(usize::MAX);
            if series.len() <= second && second < SERIES_SECONDS_MAX {
                series.resize_with(second + 1, Bucket::new);
            }
            if let Some(bucket) = series.get_mut(second) {
                bucket.records += 1;
                bucket.bytes += bytes;
                if let Some(us) = latency_us {
                    bucket.latency.saturating_record(us);
                }
            }
        }
    }

    pub fn error(&mut self, message: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message);
        }
    }

    /// Seconds of the throughput window: warm-up end to the last event.
    pub fn window_secs(&self) -> f64 {
        self.last_event
            .map_or(0.0, |l| l.duration_since(self.measure_from).as_secs_f64())
    }
}

/// Longest time series kept (one day of seconds), so a forgotten run cannot
/// grow it without bound.
pub const SERIES_SECONDS_MAX: usize = 24 * 60 * 60;

/// Throughput of one actor or of a whole phase.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub name: String,
    /// Records counted for throughput (after warm-up).
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub mib_per_sec: f64,
    pub errors: u64,
}

impl Throughput {
    pub fn new(name: String, records: u64, bytes: u64, seconds: f64, errors: u64) -> Throughput {
        let per_sec = |x: f64| if seconds > 0.0 { x / seconds } else { 0.0 };
        Throughput {
            name,
            records,
            bytes,
            seconds,
            records_per_sec: per_sec(records as f64),
            mib_per_sec: per_sec(bytes as f64) / MIB,
            errors,
        }
    }

    pub fn of_actor(name: String, s: &ActorStats) -> Throughput {
        Throughput::new(
            name,
            s.measured_records,
            s.measured_bytes,
            s.window_secs(),
            s.errors,
        )
    }

    /// A phase's total: all actors' records over the longest window.
    pub fn total(actors: &[ActorStats]) -> Throughput {
        let records = actors.iter().map(|a| a.measured_records).sum();
        let bytes = actors.iter().map(|a| a.measured_bytes).sum();
        let errors = actors.iter().map(|a| a.errors).sum();
        let seconds = actors
            .iter()
            .map(ActorStats::window_secs)
            .fold(0.0, f64::max);
        Throughput::new("total".to_owned(), records, bytes, seconds, errors)
    }
}

/// One percentile of a latency summary.
#[derive(Debug, Clone, Serialize)]
pub struct Percentile {
    pub name: &'static str,
    pub micros: u64,
    /// Samples this percentile needs to mean anything: 1 / (1 - q).
    pub samples_needed: u64,
    /// Fewer samples than that were recorded.
    pub too_few_samples: bool,
}

/// Latency percentiles of every recorded sample, in µs.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub mean_micros: f64,
    pub percentiles: Vec<Percentile>,
    pub max_micros: u64,
}

impl LatencySummary {
    /// `None` when no sample was recorded.
    pub fn of(h: &Histogram<u64>) -> Option<LatencySummary> {
        let samples = h.len();
        if samples == 0 {
            return None;
        }
        Some(LatencySummary {
            samples,
            mean_micros: h.mean(),
            percentiles: PERCENTILES
                .iter()
                .map(|&(name, q, needed)| Percentile {
                    name,
                    micros: h.value_at_percentile(q),
                    samples_needed: needed,
                    too_few_samples: samples < needed,
                })
                .collect(),
            max_micros: h.max(),
        })
    }

    /// The percentiles whose sample count is too small, for the report's note.
    pub fn thin(&self) -> Vec<&'static str> {
        self.percentiles
            .iter()
            .filter(|p| p.too_few_samples)
            .map(|p| p.name)
            .collect()
    }
}

/// Merges the actors' ack (or end-to-end) latency histograms.
pub fn merged_latency(actors: &[ActorStats]) -> Histogram<u64> {
    merged(actors, |a| &a.latency)
}

/// Merges one histogram of every actor.
pub fn merged(
    actors: &[ActorStats],
    which: impl Fn(&ActorStats) -> &Histogram<u64>,
) -> Histogram<u64> {
    let mut h = latency_histogram(LATENCY_SIGFIG);
    for a in actors {
        // Same bounds on both sides; a failed add would only mean a
        // value above LATENCY_US_MAX, which saturating_record prevents.
        let _ = h.add(which(a));
    }
    h
}

/// The p99 of each second's latency, summarised over the run's seconds.
#[derive(Debug, Clone, Serialize)]
pub struct PerSecondP99 {
    pub seconds: u64,
    pub median_micros: u64,
    pub max_micros: u64,
}

impl PerSecondP99 {
    pub fn of(rows: &[SeriesRow]) -> Option<PerSecondP99> {
        let mut p99s: Vec<u64> = rows.iter().filter_map(|r| r.p99_micros).collect();
        if p99s.is_empty() {
            return None;
        }
        p99s.sort_unstable();
        Some(PerSecondP99 {
            seconds: p99s.len() as u64,
            median_micros: p99s[p99s.len() / 2],
            max_micros: p99s[p99s.len() - 1],
        })
    }
}

/// One row of `timeseries.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesRow {
    /// Seconds since warm-up ended, at the end of this second.
    pub elapsed_secs: u64,
    pub records_per_sec: u64,
    pub mib_per_sec: f64,
    pub p50_micros: Option<u64>,
    pub p99_micros: Option<u64>,
}

/// The actors' per-second buckets added up, one row per second.
pub fn merged_series(actors: &[ActorStats]) -> Vec<SeriesRow> {
    let seconds = actors
        .iter()
        .filter_map(|a| a.series.as_ref().map(Vec::len))
        .max()
        .unwrap_or(0);
    (0..seconds)
        .map(|i| {
            let mut records = 0;
            let mut bytes = 0;
            let mut latency = latency_histogram(SERIES_SIGFIG);
            for b in actors
                .iter()
                .filter_map(|a| a.series.as_ref().and_then(|s| s.get(i)))
            {
                records += b.records;
                bytes += b.bytes;
                let _ = latency.add(&b.latency);
            }
            let has = !latency.is_empty();
            SeriesRow {
                elapsed_secs: i as u64 + 1,
                records_per_sec: records,
                mib_per_sec: bytes as f64 / MIB,
                p50_micros: has.then(|| latency.value_at_quantile(0.50)),
                p99_micros: has.then(|| latency.value_at_quantile(0.99)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_events_count_for_verification_but_not_throughput() {
        let start = Instant::now();
        let measure_from = start + Duration::from_secs(1);
        let mut s = ActorStats::new(measure_from, true);
        s.event(start, 100, None, 1);
        s.event(
            measure_from + Duration::from_millis(500),
            100,
            Some(Duration::from_micros(250)),
            2,
        );
        s.event(
            measure_from + Duration::from_millis(1500),
            100,
            Some(Duration::from_micros(750)),
            3,
        );
        assert_eq!(s.records, 3);
        assert_eq!(s.checksum.count, 3);
        assert_eq!(s.measured_records, 2);
        assert_eq!(s.latency.len(), 2);
        let t = Throughput::of_actor("p0".into(), &s);
        assert!((t.seconds - 1.5).abs() < 1e-9);
        assert!((t.records_per_sec - 2.0 / 1.5).abs() < 1e-9);
        let rows = merged_series(&[s]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].records_per_sec, 1);
        assert_eq!(rows[1].p99_micros.map(|v| v / 10), Some(75));
    }

    #[test]
    fn summary_flags_percentiles_with_too_few_samples() {
        let mut h = latency_histogram(LATENCY_SIGFIG);
        for v in 1..=500u64 {
            h.saturating_record(v);
        }
        let s = LatencySummary::of(&h).expect("samples were recorded");
        assert_eq!(s.samples, 500);
        assert_eq!(s.max_micros, 500);
        assert_eq!(s.thin(), vec!["p99.9", "p99.99"]);
        let p50 = s
            .percentiles
            .iter()
            .find(|p| p.name == "p50")
            .map(|p| p.micros);
        assert_eq!(p50, Some(250));
        assert!(LatencySummary::of(&latency_histogram(LATENCY_SIGFIG)).is_none());
    }
}
