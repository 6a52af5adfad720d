//! Every command and flag of `rill`, as clap derive structs.
//!
//! Kept apart from the code that runs the commands so `--help` reads as one
//! document and the tests can parse command lines without running them.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use rill_client::{Acks, Compression};
use serde::Serialize;

/// `rill bench --linger-ms` default: the client library's.
const LINGER_MS_DEFAULT: u64 = rill_client::producer::LINGER_DEFAULT.as_millis() as u64;

/// Broker address used when neither `--broker` nor `RILL_BROKER` is given.
pub const BROKER_DEFAULT: &str = "127.0.0.1:9092";

/// The `rill` command line.
#[derive(Debug, Parser)]
#[command(
    name = "rill",
    version,
    about = "Command line for Rill, a Kafka-style partitioned commit log",
    propagate_version = true
)]
pub struct Cli {
    /// Broker address, host:port, or a comma-separated list of them tried
    /// in turn (Kafka's bootstrap servers) [default: 127.0.0.1:9092; `rill
    /// bench` without it runs an embedded broker].
    #[arg(long, global = true, env = "RILL_BROKER")]
    pub broker: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// The address to talk to: the flag or variable, else the default.
pub fn broker_or_default(broker: Option<String>) -> String {
    broker.unwrap_or_else(|| BROKER_DEFAULT.to_owned())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Produce records read from stdin or a file, one per line.
    Produce(ProduceArgs),
    /// Print records of a topic.
    Consume(ConsumeArgs),
    /// Measure throughput and latency (embedded broker unless --broker).
    Bench(BenchArgs),
    /// List, describe, reset and delete consumer groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Show the cluster: brokers, the controller, under-replicated partitions.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Brokers, the controller's leader, each broker's partition leaderships
    /// and the partitions with fewer in-sync replicas than replicas.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(TopicCreateArgs),
    /// List topic names.
    List,
    /// Show a topic's partitions: leader, replicas, in-sync replicas, log
    /// start offset and high watermark.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic and its data.
    Delete {
        /// Topic name.
        name: String,
    },
    /// Change a topic's settings (not yet: the broker has no API for it).
    Alter(TopicAlterArgs),
}

/// Per-topic settings shared by `create` (and, later, `alter`).
#[derive(Debug, Args, Clone, Default)]
pub struct TopicSettings {
    /// Delete closed segments older than this (ms; -1: keep forever).
    #[arg(long, allow_negative_numbers = true)]
    pub retention_ms: Option<i64>,
    /// Delete the oldest closed segments while a partition is larger (bytes; -1: no limit).
    #[arg(long, allow_negative_numbers = true)]
    pub retention_bytes: Option<i64>,
    /// Roll to a new segment past this size (bytes).
    #[arg(long)]
    pub segment_bytes: Option<u64>,
    /// Roll to a new segment past this age (ms; -1: never).
    #[arg(long, allow_negative_numbers = true)]
    pub segment_ms: Option<i64>,
    /// When the log fsyncs: always, never, interval_ms:N or interval_bytes:N.
    #[arg(long)]
    pub fsync: Option<String>,
    /// Largest batch the broker accepts for this topic (bytes).
    #[arg(long)]
    pub max_message_bytes: Option<u32>,
    /// Any other topic setting, KEY=VALUE with Kafka's key names (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub configs: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct TopicCreateArgs {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    #[arg(long, short = 'p', default_value_t = 1)]
    pub partitions: u32,
    /// Copies of each partition, each on its own broker [default: the
    /// broker's default.replication.factor, at most the number of brokers].
    #[arg(long, short = 'r', value_parser = clap::value_parser!(u16).range(1..))]
    pub replication_factor: Option<u16>,
    #[command(flatten)]
    pub settings: TopicSettings,
}

#[derive(Debug, Args)]
pub struct TopicAlterArgs {
    /// Topic name.
    pub name: String,
    #[command(flatten)]
    pub settings: TopicSettings,
}

/// Acknowledgement levels, as flags spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AcksArg {
    /// The broker does not answer.
    None,
    /// Answer once written to the log (page cache).
    Leader,
    /// Answer once fsynced.
    All,
}

impl AcksArg {
    pub fn to_client(self) -> Acks {
        match self {
            AcksArg::None => Acks::None,
            AcksArg::Leader => Acks::Leader,
            AcksArg::All => Acks::All,
        }
    }
}

/// Batch compression, as flags spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionArg {
    None,
    Zstd,
}

impl CompressionArg {
    pub fn to_client(self) -> Compression {
        match self {
            CompressionArg::None => Compression::None,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to produce to.
    pub topic: String,
    /// Read records from this file instead of stdin.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Split each line at the first SEP into key and value (a line without SEP is an error).
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Write every record to this partition (default: by key hash; keyless records stick to one partition per batch).
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// How much acknowledgement to wait for.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    pub acks: AcksArg,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    /// Idempotent producer: retries after a lost answer or a broker restart write no duplicate and reorder nothing (Kafka's enable.idempotence; off with --acks none).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub enable_idempotence: bool,
    /// Header added to every record, NAME=VALUE (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE", value_parser = parse_key_value)]
    pub headers: Vec<(String, String)>,
}

/// How `rill consume` prints records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The value alone, one record per line.
    Value,
    /// Key, a tab, then the value.
    Kv,
    /// One JSON object per line: topic, partition, offset, timestamp, key,
    /// headers, value (UTF-8 as strings, other bytes as {"base64": ...}).
    Json,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Start at the oldest record kept [default: only new records]. With
    /// --group, reading starts at the group's committed offsets; where the
    /// group has committed none, at the oldest record with this flag and at
    /// the newest without it (as kafka-console-consumer).
    #[arg(long, conflicts_with_all = ["offset", "timestamp"])]
    pub from_beginning: bool,
    /// Start at this offset (in every partition read).
    #[arg(long, conflicts_with_all = ["timestamp", "group"])]
    pub offset: Option<u64>,
    /// Start at the first record stamped at or after this time (ms since the Unix epoch).
    #[arg(long, conflicts_with = "group")]
    pub timestamp: Option<i64>,
    /// Read only this partition [default: all].
    #[arg(long, short = 'p', conflicts_with = "group")]
    pub partition: Option<u32>,
    /// Stop after this many records.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Stop at the end offsets the partitions had when the command started
    /// (with --group: once every partition held is caught up with its end).
    #[arg(long, short = 'e')]
    pub exit_at_end: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Value)]
    pub format: OutputFormat,
    /// Consume as a member of this group: the broker assigns the
    /// partitions; offsets are committed every few seconds and on exit
    /// (Ctrl-C included), so the next run goes on where this one stopped.
    #[arg(long, short = 'g')]
    pub group: Option<String>,
}

/// What `rill bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Producers only: acknowledged throughput and acknowledgement latency.
    Produce,
    /// Consumers reading what a produce phase wrote (run first when the topic is empty).
    Consume,
    /// Producers and consumers at once: end-to-end latency, every record verified.
    ProduceConsume,
    /// --consumers members of one consumer group share the topic (filled
    /// by a produce phase when empty); per-member throughput and partitions.
    Group,
}

/// How bench records are keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyMode {
    /// No keys: records stick to one partition per batch.
    None,
    /// Keys drawn uniformly from --key-count keys.
    Uniform,
    /// Keys drawn from --key-count keys with a zipf(1.0) skew.
    Zipf,
}

#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// Scenario to run (same as --scenario).
    #[arg(value_enum, value_name = "SCENARIO", conflicts_with = "scenario")]
    pub scenario_name: Option<Scenario>,
    /// Scenario to run [default: produce].
    #[arg(long, value_enum)]
    pub scenario: Option<Scenario>,
    /// Producer clients, each with its own connection.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer clients; partitions are dealt to them round-robin.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Partitions of the bench topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024)]
    pub message_size: usize,
    /// Producer batch size in bytes.
    #[arg(long, default_value_t = rill_client::producer::BATCH_SIZE_DEFAULT)]
    pub batch_size: usize,
    /// Producer linger in milliseconds [default: the client's, 0: a batch
    /// goes out as soon as its partition has no request in flight, and
    /// grows while one is].
    #[arg(long, default_value_t = LINGER_MS_DEFAULT)]
    pub linger_ms: u64,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    /// Acknowledgement level of the producers.
    #[arg(long, value_enum, default_value_t = AcksArg::Leader)]
    pub acks: AcksArg,
    /// Idempotent producers (Kafka's enable.idempotence; off with --acks none).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub enable_idempotence: bool,
    /// Produce requests in flight per partition (1..=5 with idempotence).
    #[arg(long, default_value_t = rill_client::producer::MAX_IN_FLIGHT_PER_PARTITION_DEFAULT)]
    pub max_in_flight: usize,
    /// The embedded broker writes its segments with O_DIRECT (README, "Direct I/O");
    /// for a running broker, start it with `rill-broker --io-direct`.
    #[arg(long)]
    pub io_direct: bool,
    /// Brokers of the embedded cluster (in this process, each with its own
    /// data directory and listeners): 1 is a lone broker, 3 shows
    /// replication [default: 1].
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=9))]
    pub embedded_brokers: u16,
    /// Replicas of each partition of a fresh bench topic [default: the
    /// broker's default, at most the number of brokers].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub replication_factor: Option<u16>,
    /// Produce this many records in total.
    #[arg(long, conflicts_with = "duration")]
    pub messages: Option<u64>,
    /// Produce for this many seconds [default: 10 when --messages is not given].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Fixed total rate in records/s; latency then counts from each record's intended send time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// How records are keyed.
    #[arg(long, value_enum, default_value_t = KeyMode::None)]
    pub keys: KeyMode,
    /// Distinct keys for --keys uniform|zipf.
    #[arg(long, default_value_t = 1000)]
    pub key_count: u64,
    /// Seconds at the start whose samples are not recorded (their records
    /// are still verified) [default: for produce and produce-consume, a
    /// tenth of a --duration run, at most 1 s; otherwise none].
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Topic to use, created if missing and kept [default: a fresh bench
    /// topic with --partitions, deleted after the run].
    #[arg(long)]
    pub topic: Option<String>,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write timeseries.csv and chart.svg here.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups with their state and member count.
    List,
    /// Show a group's members, their partitions, committed offsets and lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets on a topic (refused while the group
    /// has members).
    ResetOffsets(GroupResetArgs),
    /// Delete a group's committed offsets (refused while it has members).
    Delete {
        /// Group id.
        group: String,
    },
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("to")
        .required(true)
        .args(["to_earliest", "to_latest", "to_offset", "to_datetime", "to_timestamp"])
))]
pub struct GroupResetArgs {
    /// Group id.
    pub group: String,
    /// Topic whose offsets move.
    #[arg(long)]
    pub topic: String,
    /// To the oldest record kept.
    #[arg(long)]
    pub to_earliest: bool,
    /// To the log end: skip everything there is now.
    #[arg(long)]
    pub to_latest: bool,
    /// To this offset (clamped to what each partition holds).
    #[arg(long, value_name = "N")]
    pub to_offset: Option<u64>,
    /// To the first record at or after this time: YYYY-MM-DD,
    /// YYYY-MM-DDTHH:MM[:SS[.mmm]] (UTC) or with Z / +HH:MM.
    #[arg(long, value_name = "DATETIME")]
    pub to_datetime: Option<String>,
    /// To the first record at or after this time, in ms since the Unix epoch.
    #[arg(long, value_name = "MS")]
    pub to_timestamp: Option<i64>,
    /// Only this partition (repeatable) [default: every partition].
    #[arg(long, short = 'p')]
    pub partition: Vec<u32>,
    /// Show what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Parses `KEY=VALUE` (the value may contain '=').
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}
