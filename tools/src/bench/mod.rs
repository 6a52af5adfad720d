//! `rill bench`: load a broker and report what it did, honestly.
//!
//! Without `--broker` the bench starts `rill_broker::Broker` in this process
//! (127.0.0.1, port 0, data in a temporary directory removed afterwards), so
//! one command measures a fresh machine; with `--broker` it loads a running
//! broker. Scenarios:
//!
//! - `produce`: producers only; acknowledged throughput and per-record
//!   acknowledgement latency.
//! - `consume`: consumers read a topic from its start to the end offsets it
//!   had when they started; on an empty topic a produce phase (not measured)
//!   writes the data first, and every record is verified against it.
//! - `produce-consume`: both at once; end-to-end latency from the send time
//!   stamped in each value, and every acknowledged record verified.
//! - `group`: `--consumers` members of one consumer group drain the topic
//!   (filled by a produce phase when empty); per-member throughput and
//!   partitions, every record verified, duplicates counted.
//!
//! Throughput counts only acknowledged (or consumed) records after warm-up,
//! over the window from the end of warm-up to the last such record.
//!
//! # Layout
//! - [`workload`]: value stamps, keys, the order-independent checksum.
//! - [`actors`]: producer and consumer tasks.
//! - [`group`]: the `group` scenario and its members.
//! - [`stats`]: per-actor statistics, latency summaries, time series.
//! - [`report`]: the human table, the JSON object, `timeseries.csv`.
//! - [`chart`]: draws `chart.svg`.

pub mod actors;
pub mod chart;
pub mod group;
pub mod report;
pub mod stats;
pub mod workload;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rill_broker::{Broker, BrokerConfig, BrokerHandle};
use rill_client::{Admin, OffsetSpec};
use rill_protocol::limits::BATCH_BYTES_MAX;
use rill_protocol::wire::create_topics::topic_config;
use serde::Serialize;
use tokio::sync::watch;

use self::actors::{ConsumerPlan, ProducerPlan, ProducerSettings};
use self::report::{PhaseReport, Report, Verification};
use self::stats::ActorStats;
use self::workload::{Checksum, VALUE_HEADER_BYTES};
use crate::cli::{AcksArg, BenchArgs, CompressionArg, KeyMode, Scenario};
use crate::error::CliError;
use crate::topic;

/// Run length when neither `--messages` nor `--duration` is given: long
/// enough to pass start-up effects, short enough for a first try.
pub const DURATION_DEFAULT_SECS: f64 = 10.0;
/// Share of a `--duration` run left out as warm-up when `--warmup` is not
/// given, and the most seconds that may be.
pub const WARMUP_DEFAULT_FRACTION: f64 = 0.1;
pub const WARMUP_DEFAULT_MAX_SECS: f64 = 1.0;
/// Most producers or consumers one run starts (each has its own
/// connections and tasks).
pub const ACTORS_MAX: usize = 256;
/// Largest `--message-size`: one record must fit a batch the broker takes.
pub const MESSAGE_SIZE_MAX: usize = 16 * 1024 * 1024;
/// Most partitions of a bench topic (the broker's own limit).
pub const PARTITIONS_MAX: u32 = rill_broker::topics::PARTITIONS_MAX;
/// Longest run accepted, so a typo cannot start a week-long bench.
pub const DURATION_MAX_SECS: f64 = 24.0 * 60.0 * 60.0;
/// What the settings call the in-process broker.
pub const EMBEDDED: &str = "embedded";
/// How often the progress bar's rate is refreshed.
const PROGRESS_TICK: Duration = Duration::from_millis(250);
/// Heartbeat interval of the embedded broker's consumer groups: shorter
/// than the broker's default so a `group` run settles in well under a
/// second instead of a few heartbeats of 5 s.
const EMBEDDED_GROUP_HEARTBEAT_INTERVAL_MS: u32 = 250;

/// Most requests in flight per partition a non-idempotent bench producer
/// may ask for.
const IN_FLIGHT_MAX: usize = 64;

/// The settings a run used, as the report and JSON show them.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub scenario: Scenario,
    /// `embedded` or the address given.
    pub broker: String,
    /// The embedded broker writes with `O_DIRECT`.
    pub io_direct: bool,
    /// Brokers of the embedded cluster (1: a lone broker).
    pub embedded_brokers: u16,
    /// Replicas of each partition of a fresh topic (`None`: the broker's
    /// default).
    pub replication_factor: Option<u16>,
    pub topic: Option<String>,
    pub producers: usize,
    pub consumers: usize,
    pub partitions: u32,
    pub message_size: usize,
    pub batch_size: usize,
    pub linger_ms: u64,
    pub compression: CompressionArg,
    pub acks: AcksArg,
    pub enable_idempotence: bool,
    pub max_in_flight: usize,
    pub messages: Option<u64>,
    pub duration_secs: Option<f64>,
    pub rate: Option<f64>,
    pub keys: KeyMode,
    pub key_count: u64,
    pub warmup_secs: f64,
    #[serde(skip)]
    pub output_dir: Option<PathBuf>,
    #[serde(skip)]
    pub json: bool,
    #[serde(skip)]
    pub quiet: bool,
}

impl Settings {
    /// Resolves defaults and checks every knob; mistakes are usage errors.
    pub fn resolve(broker: Option<&str>, a: &BenchArgs) -> Result<Settings, CliError> {
        let usage = |m: String| Err(CliError::Usage(m));
        let scenario = a.scenario.or(a.scenario_name).unwrap_or(Scenario::Produce);
        if a.producers == 0 || a.producers > ACTORS_MAX {
            return usage(format!("--producers must be in 1..={ACTORS_MAX}"));
        }
        if a.consumers == 0 || a.consumers > ACTORS_MAX {
            return usage(format!("--consumers must be in 1..={ACTORS_MAX}"));
        }
        if a.partitions == 0 || a.partitions > PARTITIONS_MAX {
            return usage(format!("--partitions must be in 1..={PARTITIONS_MAX}"));
        }
        if a.message_size < VALUE_HEADER_BYTES || a.message_size > MESSAGE_SIZE_MAX {
            return usage(format!(
                "--message-size must be in {VALUE_HEADER_BYTES}..={MESSAGE_SIZE_MAX} (each value carries a {VALUE_HEADER_BYTES}-byte send stamp and id)"
            ));
        }
        if a.batch_size == 0 || a.batch_size > BATCH_BYTES_MAX {
            return usage(format!("--batch-size must be in 1..={BATCH_BYTES_MAX}"));
        }
        if a.messages == Some(0) {
            return usage("--messages must be at least 1".to_owned());
        }
        let in_flight_max = if a.enable_idempotence && a.acks != AcksArg::None {
            rill_client::producer::MAX_IN_FLIGHT_PER_PARTITION_IDEMPOTENT_MAX
        } else {
            IN_FLIGHT_MAX
        };
        if a.max_in_flight == 0 || a.max_in_flight > in_flight_max {
            return usage(format!(
                "--max-in-flight must be in 1..={in_flight_max}{}",
                if in_flight_max < IN_FLIGHT_MAX {
                    " with idempotence (--enable-idempotence false allows more)"
                } else {
                    ""
                }
            ));
        }
        let duration = match (a.messages, a.duration) {
            (Some(_), _) => None,
            (None, d) => Some(d.unwrap_or(DURATION_DEFAULT_SECS)),
        };
        // Connections, metadata and the first page faults make a timed
        // run's first moments unrepresentative; a tenth of it (at most
        // WARMUP_DEFAULT_MAX_SECS) is left out unless asked otherwise. The
        // consume and group scenarios read what is already there as fast as
        // they can, and may be done within that time: no default for them.
        let timed = matches!(scenario, Scenario::Produce | Scenario::ProduceConsume);
        let warmup = a.warmup.unwrap_or_else(|| match duration {
            // Whole milliseconds, so the report says 0.3 s, not 0.30000000000000004.
            Some(d) if timed => {
                ((d * WARMUP_DEFAULT_FRACTION).min(WARMUP_DEFAULT_MAX_SECS) * 1e3).round() / 1e3
            }
            _ => 0.0,
        });
        if let Some(d) = duration {
            if !(d > 0.0 && d <= DURATION_MAX_SECS) {
                return usage(format!(
                    "--duration must be in (0, {DURATION_MAX_SECS}] seconds"
                ));
            }
            if warmup >= d {
                return usage(format!(
                    "--warmup {warmup} must be shorter than the run ({d} s)"
                ));
            }
        }
        if !(0.0..=DURATION_MAX_SECS).contains(&warmup) {
            return usage("--warmup must be a non-negative number of seconds".to_owned());
        }
        if let Some(r) = a.rate {
            if !(r > 0.0 && r.is_finite()) {
                return usage("--rate must be a positive number of records per second".to_owned());
            }
        }
        if a.key_count == 0 {
            return usage("--key-count must be at least 1".to_owned());
        }
        if a.io_direct && broker.is_some() {
            return usage(
                "--io-direct sets up the embedded broker; start the running broker with `rill-broker --io-direct` instead"
                    .to_owned(),
            );
        }
        if a.embedded_brokers > 1 && broker.is_some() {
            return usage(
                "--embedded-brokers starts an embedded cluster; with --broker, give every broker of the running cluster instead"
                    .to_owned(),
            );
        }
        Ok(Settings {
            scenario,
            broker: broker.map_or_else(
                || match a.embedded_brokers {
                    1 => EMBEDDED.to_owned(),
                    n => format!("{EMBEDDED} cluster of {n}"),
                },
                str::to_owned,
            ),
            io_direct: a.io_direct,
            embedded_brokers: a.embedded_brokers,
            replication_factor: a.replication_factor,
            topic: a.topic.clone(),
            producers: a.producers,
            consumers: a.consumers,
            partitions: a.partitions,
            message_size: a.message_size,
            batch_size: a.batch_size,
            linger_ms: a.linger_ms,
            compression: a.compression,
            acks: a.acks,
            enable_idempotence: a.enable_idempotence,
            max_in_flight: a.max_in_flight,
            messages: a.messages,
            duration_secs: duration,
            rate: a.rate,
            keys: a.keys,
            key_count: a.key_count,
            warmup_secs: warmup,
            output_dir: a.output_dir.clone(),
            json: a.json,
            quiet: a.quiet,
        })
    }

    fn producer_settings(&self) -> ProducerSettings {
        ProducerSettings {
            acks: self.acks,
            compression: self.compression,
            batch_size: self.batch_size,
            linger: Duration::from_millis(self.linger_ms),
            message_size: self.message_size,
            keys: self.keys,
            key_count: self.key_count,
            enable_idempotence: self.enable_idempotence,
            max_in_flight: self.max_in_flight,
        }
    }

    fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup_secs)
    }
}

/// The brokers run in this process for the bench, and the directory they
/// own (one broker, or a cluster with `--embedded-brokers`).
struct Embedded {
    handles: Vec<BrokerHandle>,
    _dir: tempfile::TempDir,
}

/// How long an embedded cluster may take to elect its controller and
/// register every broker.
const EMBEDDED_CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(30);

impl Embedded {
    async fn start(io_direct: bool, brokers: u16) -> Result<Embedded, CliError> {
        let dir = tempfile::Builder::new()
            .prefix("rill-bench-")
            .tempdir()
            .map_err(|e| CliError::io("cannot create the embedded broker's data directory", e))?;
        let loopback_any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let base = BrokerConfig {
            listen: loopback_any_port,
            metrics_addr: loopback_any_port,
            data_dir: dir.path().to_path_buf(),
            group_heartbeat_interval_ms: EMBEDDED_GROUP_HEARTBEAT_INTERVAL_MS,
            io_direct,
            ..BrokerConfig::default()
        };
        let mut configs = vec![base.clone()];
        if brokers > 1 {
            // Each broker's peer and client listeners on ports free now.
            let free = || -> Result<std::net::SocketAddr, CliError> {
                std::net::TcpListener::bind(loopback_any_port)
                    .and_then(|l| l.local_addr())
                    .map_err(|e| CliError::io("cannot find a free loopback port", e))
            };
            let mut peers = Vec::new();
            configs.clear();
            for id in 1..=u32::from(brokers) {
                peers.push(format!("{id}@{}", free()?));
                configs.push(BrokerConfig {
                    node_id: id,
                    listen: free()?,
                    data_dir: dir.path().join(format!("broker-{id}")),
                    ..base.clone()
                });
            }
            let peers = peers.join(",");
            for c in &mut configs {
                c.peers = Some(peers.clone());
            }
        }
        let mut handles = Vec::new();
        for config in configs {
            handles.push(
                Broker::start(config)
                    .await
                    .map_err(|source| CliError::EmbeddedBroker { source })?,
            );
        }
        let embedded = Embedded { handles, _dir: dir };
        if brokers > 1 {
            embedded.await_registered(usize::from(brokers)).await?;
        }
        Ok(embedded)
    }

    /// The bootstrap list of every broker.
    fn bootstrap(&self) -> String {
        self.handles
            .iter()
            .map(|h| h.local_addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until the controller has every broker registered (topics are
    /// spread over registered brokers only).
    async fn await_registered(&self, brokers: usize) -> Result<(), CliError> {
        let admin = topic::connect(&self.bootstrap()).await?;
        let deadline = tokio::time::Instant::now() + EMBEDDED_CLUSTER_START_TIMEOUT;
        loop {
            if let Ok(c) = admin.describe_cluster().await {
                if c.brokers.len() == brokers && c.controller_id >= 0 {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CliError::Failed(format!(
                    "the embedded cluster of {brokers} brokers did not form within {EMBEDDED_CLUSTER_START_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn shutdown(self) {
        for handle in self.handles {
            handle.shutdown().await;
        }
    }
}

/// Runs `rill bench`: prints the report (table or JSON) and fails when a
/// record was lost, refused, or did not verify.
pub async fn run(broker: Option<String>, args: BenchArgs) -> Result<(), CliError> {
    let settings = Settings::resolve(broker.as_deref(), &args)?;
    let embedded = match &broker {
        None => Some(Embedded::start(settings.io_direct, settings.embedded_brokers).await?),
        Some(_) => None,
    };
    let addr = match (&embedded, &broker) {
        (Some(e), _) => e.bootstrap(),
        (None, Some(b)) => b.clone(),
        (None, None) => crate::cli::BROKER_DEFAULT.to_owned(),
    };
    let result = tokio::select! {
        r = execute(&addr, &settings) => r,
        _ = tokio::signal::ctrl_c() => Err(CliError::Interrupted(
            "the bench was stopped before it finished; no report",
        )),
    };
    if let Some(e) = embedded {
        // Also on Ctrl-C: the data directory can hold gigabytes.
        e.shutdown().await;
    }
    let report = result?;
    report::emit(&report, &settings)?;
    report
        .failure()
        .map_or(Ok(()), |m| Err(CliError::Failed(m)))
}

/// Runs the scenario against `addr` and gathers the report.
pub async fn execute(addr: &str, settings: &Settings) -> Result<Report, CliError> {
    let admin = topic::connect(addr).await?;
    let (topic, partitions, fresh) = ensure_topic(&admin, settings).await?;
    // An existing --topic keeps its own partition count; report that one.
    let mut settings = settings.clone();
    settings.partitions = u32::try_from(partitions.len()).unwrap_or(u32::MAX);
    let s = &settings;
    let base = Instant::now();
    let report = match s.scenario {
        Scenario::Produce => {
            let producers = produce_phase(addr, &topic, s, base, true, "produce").await?;
            Ok(Report::new(
                s,
                topic.clone(),
                Some(PhaseReport::producers(&producers, true)),
                None,
                None,
            ))
        }
        Scenario::Consume => {
            consume_scenario(addr, &admin, topic.clone(), &partitions, s, base).await
        }
        Scenario::ProduceConsume => {
            produce_consume_scenario(addr, &admin, topic.clone(), &partitions, s, base).await
        }
        Scenario::Group => {
            group::group_scenario(addr, &admin, topic.clone(), &partitions, s, base).await
        }
    };
    // A fresh topic on a running broker is the bench's own litter; an
    // embedded broker's whole directory goes away anyway.
    if fresh && !s.broker.starts_with(EMBEDDED) {
        if let Err(e) = admin.delete_topic(&topic).await {
            tracing::warn!(topic, error = %e, "cannot delete the bench topic");
        }
    }
    report
}

/// The topic to use and its partitions: `--topic` if it exists, else a
/// new one with `--partitions` (allowed a batch of `--batch-size`).
async fn ensure_topic(admin: &Admin, s: &Settings) -> Result<(String, Vec<u32>, bool), CliError> {
    let name = s.topic.clone().unwrap_or_else(|| {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("rill-bench-{}-{millis}", std::process::id())
    });
    if s.topic.is_some() {
        if let Ok(d) = admin.describe_topic(&name).await {
            return Ok((
                name,
                d.partitions.iter().map(|p| p.partition).collect(),
                false,
            ));
        }
    }
    // A finished batch can exceed the producer's size estimate slightly;
    // give the topic twice the batch size so the broker never refuses one.
    let max_message = s
        .batch_size
        .saturating_mul(2)
        .min(BATCH_BYTES_MAX)
        .to_string();
    admin
        .create_replicated_topic(
            &name,
            s.partitions,
            s.replication_factor
                .unwrap_or(rill_client::DEFAULT_REPLICATION_FACTOR),
            &[(topic_config::MAX_MESSAGE_BYTES, &max_message)],
        )
        .await
        .map_err(|e| CliError::client(format!("cannot create bench topic {name}"), e))?;
    // A replicated partition elects its first leader after creation: wait
    // for every leader so the run does not measure elections.
    let deadline = tokio::time::Instant::now() + EMBEDDED_CLUSTER_START_TIMEOUT;
    loop {
        let led = admin
            .describe_topic(&name)
            .await
            .is_ok_and(|d| d.partitions.iter().all(|p| p.leader >= 0));
        if led {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::Failed(format!(
                "the partitions of {name} have no leader after {EMBEDDED_CLUSTER_START_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((name, (0..s.partitions).collect(), s.topic.is_none()))
}

/// Runs the producers to completion. `measured` runs honour `--warmup`;
/// the unmeasured produce phase of `consume` records everything.
async fn produce_phase(
    addr: &str,
    topic: &str,
    s: &Settings,
    base: Instant,
    measured: bool,
    label: &str,
) -> Result<Vec<ActorStats>, CliError> {
    let progress = Arc::new(AtomicU64::new(0));
    let run_start = Instant::now();
    let plans = producer_plans(addr, topic, s, base, run_start, measured, &progress);
    let bar = ProgressTicker::start(label, s, Arc::clone(&progress), s.messages, run_start);
    let handles: Vec<_> = plans
        .into_iter()
        .map(|p| tokio::spawn(actors::run_producer(p)))
        .collect();
    let result = join_all(handles, "producer").await;
    bar.finish().await;
    result
}

fn producer_plans(
    addr: &str,
    topic: &str,
    s: &Settings,
    base: Instant,
    run_start: Instant,
    measured: bool,
    progress: &Arc<AtomicU64>,
) -> Vec<ProducerPlan> {
    let n = s.producers as u64;
    let measure_from = if measured {
        run_start + s.warmup()
    } else {
        run_start
    };
    let deadline = s
        .duration_secs
        .map(|d| run_start + Duration::from_secs_f64(d));
    let rate = s.rate.map(|r| r / s.producers as f64);
    (0..s.producers)
        .map(|index| ProducerPlan {
            index,
            bootstrap: addr.to_owned(),
            topic: topic.to_owned(),
            settings: s.producer_settings(),
            // Split --messages evenly; the first producers take the rest.
            quota: s
                .messages
                .map(|m| m / n + u64::from((index as u64) < m % n)),
            deadline,
            rate,
            run_start,
            measure_from,
            base,
            progress: Arc::clone(progress),
            // Always: the report gives the per-second p99 of ack latency.
            with_series: measured,
            // Only a consume phase checks the producers' checksum; a
            // produce-only run skips hashing every value.
            with_digests: s.scenario != Scenario::Produce,
        })
        .collect()
}

async fn join_all<T>(
    handles: Vec<tokio::task::JoinHandle<Result<T, CliError>>>,
    role: &str,
) -> Result<Vec<T>, CliError> {
    let mut out = Vec::with_capacity(handles.len());
    let mut first_error = None;
    for (i, h) in handles.into_iter().enumerate() {
        match h.await {
            Ok(Ok(stats)) => out.push(stats),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(CliError::Failed(format!("{role} {i} task failed: {e}")));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Offsets of every partition, as a map.
async fn offsets(
    admin: &Admin,
    topic: &str,
    partitions: &[u32],
    spec: OffsetSpec,
) -> Result<HashMap<u32, u64>, CliError> {
    let found = admin
        .list_offsets(topic, partitions, spec)
        .await
        .map_err(|e| CliError::client(format!("cannot read offsets of {topic}"), e))?;
    Ok(found.into_iter().map(|o| (o.partition, o.offset)).collect())
}

/// Deals partitions to consumers round-robin, each starting at `starts`.
fn consumer_starts(
    partitions: &[u32],
    consumers: usize,
    starts: &HashMap<u32, u64>,
) -> Vec<Vec<(u32, u64)>> {
    let mut out = vec![Vec::new(); consumers];
    for (i, &p) in partitions.iter().enumerate() {
        if let Some(slot) = out.get_mut(i % consumers) {
            slot.push((p, starts.get(&p).copied().unwrap_or(0)));
        }
    }
    out
}

#[expect(
    clippy::too_many_arguments,
    reason = "the run's shared facts, passed once to every consumer plan"
)]
fn spawn_consumers(
    addr: &str,
    topic: &str,
    s: &Settings,
    assignments: Vec<Vec<(u32, u64)>>,
    targets: &watch::Receiver<Option<HashMap<u32, u64>>>,
    measure_from: Instant,
    base: Instant,
    end_to_end: bool,
    progress: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<Result<ActorStats, CliError>>> {
    assignments
        .into_iter()
        .enumerate()
        .map(|(index, starts)| {
            tokio::spawn(actors::run_consumer(ConsumerPlan {
                index,
                bootstrap: addr.to_owned(),
                topic: topic.to_owned(),
                starts,
                targets: targets.clone(),
                measure_from,
                base,
                end_to_end,
                progress: Arc::clone(progress),
                with_series: s.output_dir.is_some(),
            }))
        })
        .collect()
}

/// What a reading scenario starts from: the topic's offsets once it holds
/// data, and the produce phase that wrote it when it had none.
pub(super) struct FilledTopic {
    pub(super) starts: HashMap<u32, u64>,
    pub(super) ends: HashMap<u32, u64>,
    /// Records between `starts` and `ends`: what the readers must see.
    pub(super) total: u64,
    pub(super) produced: Option<PhaseReport>,
    /// Checksum of what the produce phase wrote (none for existing data).
    pub(super) expected: Option<Checksum>,
}

/// Runs an unmeasured produce phase when `topic` is empty, then reads the
/// offsets the consume and group scenarios read up to.
pub(super) async fn fill_if_empty(
    addr: &str,
    admin: &Admin,
    topic: &str,
    partitions: &[u32],
    s: &Settings,
    base: Instant,
) -> Result<FilledTopic, CliError> {
    let starts = offsets(admin, topic, partitions, OffsetSpec::Earliest).await?;
    let span = |ends: &HashMap<u32, u64>| -> u64 {
        partitions
            .iter()
            .map(|p| {
                ends.get(p)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(starts.get(p).copied().unwrap_or(0))
            })
            .sum()
    };
    let ends_before = offsets(admin, topic, partitions, OffsetSpec::Latest).await?;
    let (produced, expected) = if span(&ends_before) == 0 {
        let producers =
            produce_phase(addr, topic, s, base, false, "produce phase (not measured)").await?;
        let mut expected = Checksum::default();
        producers.iter().for_each(|p| expected.merge(&p.checksum));
        (
            Some(PhaseReport::producers(&producers, false)),
            Some(expected),
        )
    } else {
        (None, None)
    };
    let ends = offsets(admin, topic, partitions, OffsetSpec::Latest).await?;
    let total = span(&ends);
    Ok(FilledTopic {
        starts,
        ends,
        total,
        produced,
        expected,
    })
}

async fn consume_scenario(
    addr: &str,
    admin: &Admin,
    topic: String,
    partitions: &[u32],
    s: &Settings,
    base: Instant,
) -> Result<Report, CliError> {
    let FilledTopic {
        starts,
        ends,
        total,
        produced,
        expected,
    } = fill_if_empty(addr, admin, &topic, partitions, s, base).await?;
    let (_tx, rx) = watch::channel(Some(ends));
    let progress = Arc::new(AtomicU64::new(0));
    let run_start = Instant::now();
    let measure_from = run_start + s.warmup();
    let assignments = consumer_starts(partitions, s.consumers, &starts);
    let bar = ProgressTicker::start("consume", s, Arc::clone(&progress), Some(total), run_start);
    let handles = spawn_consumers(
        addr,
        &topic,
        s,
        assignments,
        &rx,
        measure_from,
        base,
        false,
        &progress,
    );
    let consumers = join_all(handles, "consumer").await;
    bar.finish().await;
    let consumers = consumers?;
    let mut consumed = Checksum::default();
    consumers.iter().for_each(|c| consumed.merge(&c.checksum));
    let verification = Verification::new(total, expected, consumed);
    Ok(Report::new(
        s,
        topic,
        produced,
        Some(PhaseReport::consumers(&consumers, false)),
        Some(verification),
    ))
}

async fn produce_consume_scenario(
    addr: &str,
    admin: &Admin,
    topic: String,
    partitions: &[u32],
    s: &Settings,
    base: Instant,
) -> Result<Report, CliError> {
    let starts = offsets(admin, &topic, partitions, OffsetSpec::Latest).await?;
    let (tx, rx) = watch::channel(None);
    let consumed_progress = Arc::new(AtomicU64::new(0));
    let produced_progress = Arc::new(AtomicU64::new(0));
    let run_start = Instant::now();
    let measure_from = run_start + s.warmup();
    let assignments = consumer_starts(partitions, s.consumers, &starts);
    let consumer_handles = spawn_consumers(
        addr,
        &topic,
        s,
        assignments,
        &rx,
        measure_from,
        base,
        true,
        &consumed_progress,
    );
    let plans = producer_plans(addr, &topic, s, base, run_start, true, &produced_progress);
    let bar = ProgressTicker::start(
        "produce-consume",
        s,
        Arc::clone(&consumed_progress),
        s.messages,
        run_start,
    );
    let producer_handles: Vec<_> = plans
        .into_iter()
        .map(|p| tokio::spawn(actors::run_producer(p)))
        .collect();
    let producers = join_all(producer_handles, "producer").await;
    // The consumers' end: whatever the log holds once every producer is done.
    let ends = offsets(admin, &topic, partitions, OffsetSpec::Latest).await;
    let expected_by_offsets = ends.as_ref().ok().map(|ends| {
        partitions
            .iter()
            .map(|p| {
                ends.get(p)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(starts.get(p).copied().unwrap_or(0))
            })
            .sum::<u64>()
    });
    // Even on failure the consumers must be told to stop.
    tx.send_replace(Some(ends.as_ref().cloned().unwrap_or_default()));
    let consumers = join_all(consumer_handles, "consumer").await;
    bar.finish().await;
    let producers = producers?;
    let consumers = consumers?;
    ends?;
    let mut acked = Checksum::default();
    producers.iter().for_each(|p| acked.merge(&p.checksum));
    let mut consumed = Checksum::default();
    consumers.iter().for_each(|c| consumed.merge(&c.checksum));
    let mut verification = Verification::new(acked.count, Some(acked), consumed);
    if let Some(n) = expected_by_offsets {
        verification.log_records = Some(n);
    }
    Ok(Report::new(
        s,
        topic,
        Some(PhaseReport::producers(&producers, true)),
        Some(PhaseReport::consumers(&consumers, true)),
        Some(verification),
    ))
}

/// The live progress bar: hidden when `--quiet`, `--json`, or when stderr
/// is not a terminal (indicatif's stderr target checks that).
struct ProgressTicker {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressTicker {
    fn start(
        label: &str,
        s: &Settings,
        counter: Arc<AtomicU64>,
        total_records: Option<u64>,
        run_start: Instant,
    ) -> ProgressTicker {
        let target = if s.quiet || s.json {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        // By records when the run has a count, else by elapsed seconds.
        let (length, by_records) = match (total_records, s.duration_secs) {
            (Some(n), _) => (n, true),
            (None, Some(d)) => ((d * 1000.0) as u64, false),
            (None, None) => (0, true),
        };
        let bar = ProgressBar::with_draw_target(Some(length), target);
        let template = if by_records {
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} records {msg}"
        } else {
            "{prefix} [{elapsed_precise}] {wide_bar} {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_prefix(label.to_owned());
        let ticking = bar.clone();
        let message_bytes = s.message_size as f64;
        let task = tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(PROGRESS_TICK).await;
                let now = Instant::now();
                let count = counter.load(Ordering::Relaxed);
                let secs = now.duration_since(last.0).as_secs_f64();
                let rate = if secs > 0.0 {
                    (count - last.1.min(count)) as f64 / secs
                } else {
                    0.0
                };
                last = (now, count);
                if by_records {
                    ticking.set_position(count);
                } else {
                    ticking.set_position(now.duration_since(run_start).as_millis() as u64);
                }
                ticking.set_message(format!(
                    "{rate:.0} records/s, {:.1} MiB/s",
                    rate * message_bytes / stats::MIB
                ));
            }
        });
        ProgressTicker { bar, task }
    }

    async fn finish(self) {
        self.task.abort();
        let _ = self.task.await;
        self.bar.finish_and_clear();
    }
}
