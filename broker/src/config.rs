//! The broker's configuration: one struct, four sources, one `validate()`.
//!
//! Every setting can come from (highest precedence first):
//! 1. a command-line flag (`--listen 0.0.0.0:9092`),
//! 2. an environment variable (`RILL_LISTEN=0.0.0.0:9092`),
//! 3. the TOML file named by `--config FILE` / `RILL_CONFIG` (keys are the
//!    field names: `listen = "0.0.0.0:9092"`),
//! 4. the built-in default.
//!
//! clap resolves 1, 2 and 4 and records where each value came from; the file
//! then fills in only the values that clap took from a default. Doing the
//! merge on the serialized table keeps it generic: adding a field needs no
//! merge code.
//!
//! The topic settings here (`num_partitions`, `segment_bytes`, ...) are the
//! defaults for topics created without per-topic overrides; see
//! [`crate::topic_config::TopicConfig`].

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use rill_storage::FsyncPolicy;
use serde::{Deserialize, Serialize};

pub use crate::topic_config::parse_fsync_policy;
use crate::topic_config::{optional_ms, TopicConfig, PARTITIONS_MAX};

const MIB: u64 = 1024 * 1024;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

pub const LISTEN_DEFAULT: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9092));
pub const METRICS_ADDR_DEFAULT: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9644));
pub const DATA_DIR_DEFAULT: &str = "./data";
/// Kept equal to the protocol's default frame limit (100 MiB).
pub const FRAME_BYTES_MAX_DEFAULT: u64 = rill_protocol::limits::FRAME_BYTES_MAX_DEFAULT as u64;
pub const CONNECTION_INFLIGHT_BYTES_MAX_DEFAULT: u64 = 64 * MIB;
pub const BROKER_INFLIGHT_BYTES_MAX_DEFAULT: u64 = 512 * MIB;
pub const CONNECTIONS_MAX_DEFAULT: u32 = 10_000;
/// New connections accepted per second at most (Kafka's
/// `max.connection.creation.rate`, unlimited there). Unpaced, a storm of
/// ~12,000 connects a second cut an existing client to 0.05-0.09 of its
/// rate on 2 cores (RELIABILITY.md); excess connects wait in the kernel's
/// accept queue. 2,000/s still reconnects a 10,000-client fleet in 5 s.
pub const CONNECTION_ACCEPT_RATE_MAX_DEFAULT: u32 = 2_000;
pub const RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 30_000;
pub const SHUTDOWN_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// How long a client may take to send one whole frame once its first byte
/// arrived (30 s, Kafka's `request.timeout.ms` default). Idle time *between*
/// frames is not limited: an idle connection costs a socket and a few KiB,
/// while a half-sent frame holds in-flight budget that other clients need.
pub const REQUEST_READ_TIMEOUT_MS_DEFAULT: u64 = 30_000;
pub const NUM_PARTITIONS_DEFAULT: u32 = 1;
pub const RAFT_ELECTION_TIMEOUT_MS_DEFAULT: u64 = 1_500;
pub const RAFT_HEARTBEAT_MS_DEFAULT: u64 = 200;
pub const DEFAULT_REPLICATION_FACTOR_DEFAULT: u16 = 3;
/// Storage I/O threads: partitions are dealt to them, so writes to
/// different partitions are copied into the page cache in parallel. Two
/// keep both cores of a small machine copying; more help only with more
/// cores (and more partitions).
pub const IO_THREADS_DEFAULT: usize = 2;
pub const SEGMENT_BYTES_DEFAULT: u64 = 1024 * MIB;
pub const SEGMENT_MS_DEFAULT: i64 = 7 * DAY_MS;
pub const RETENTION_MS_DEFAULT: i64 = 7 * DAY_MS;
/// -1: no size limit (Kafka's convention).
pub const RETENTION_BYTES_DEFAULT: i64 = -1;
pub const FSYNC_DEFAULT: &str = "never";
/// Largest batch accepted by default: storage's default (8 MiB; see
/// `rill_storage::config::MAX_BATCH_BYTES_DEFAULT` for why it is above
/// Kafka's 1 MiB).
pub const MAX_MESSAGE_BYTES_DEFAULT: u32 = rill_storage::config::MAX_BATCH_BYTES_DEFAULT;
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;
/// Session timeout of group members that do not ask for one (Kafka's
/// `session.timeout.ms` default).
pub const GROUP_SESSION_TIMEOUT_MS_DEFAULT: u32 =
    crate::coordinator::group::SESSION_TIMEOUT_MS_DEFAULT;
/// Shortest session a member may have: below this a GC pause or a slow
/// disk would expire healthy members.
pub const GROUP_SESSION_TIMEOUT_MS_MIN: u32 = crate::coordinator::group::SESSION_TIMEOUT_MS_MIN;
/// How often members are told to heartbeat.
pub const GROUP_HEARTBEAT_INTERVAL_MS_DEFAULT: u32 =
    crate::coordinator::group::HEARTBEAT_INTERVAL_MS_DEFAULT;

/// Kafka's `producer.id.expiration.ms` default: 1 day.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: u64 =
    rill_storage::config::PRODUCER_ID_EXPIRATION_MS_DEFAULT;
/// Producer ids a partition remembers before evicting (see
/// `rill_storage::producer_state`).
pub const PRODUCER_IDS_PER_PARTITION_MAX_DEFAULT: usize =
    rill_storage::config::PRODUCER_IDS_MAX_DEFAULT;

/// Semaphore permits are counted in `u32` per acquisition.
const INFLIGHT_BYTES_LIMIT: u64 = u32::MAX as u64;

/// Which storage I/O backend to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IoBackendSetting {
    /// io_uring where the kernel allows it, else std file I/O (logged).
    #[default]
    Auto,
    Uring,
    Std,
}

impl IoBackendSetting {
    pub fn to_choice(self) -> rill_storage::io::IoBackendChoice {
        use rill_storage::io::IoBackendChoice as C;
        match self {
            IoBackendSetting::Auto => C::Auto,
            IoBackendSetting::Uring => C::Uring,
            IoBackendSetting::Std => C::Std,
        }
    }
}

/// Everything the broker can be told. See the module docs for precedence.
#[derive(Debug, Clone, Parser, Serialize, Deserialize)]
#[command(
    name = "rill-broker",
    version,
    about = "The Rill broker: a Kafka-style partitioned commit log",
    after_help = "Precedence: flags > RILL_* environment variables > --config file > defaults.\n\
                  Durations are milliseconds, sizes are bytes; -1 means 'no limit' where allowed."
)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// TOML file with settings (keys are the long flag names with '_' for '-').
    #[arg(long, env = "RILL_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,

    /// Address the client protocol listens on (port 0: any free port).
    #[arg(long, env = "RILL_LISTEN", default_value_t = LISTEN_DEFAULT)]
    pub listen: SocketAddr,

    /// This broker's id in its cluster (Kafka's `node.id`): what Metadata
    /// names as the broker and as the leader of the partitions it leads.
    #[arg(long, env = "RILL_NODE_ID", default_value_t = 0)]
    pub node_id: u32,

    /// `host:port` clients are told to reach this broker at (Kafka's
    /// `advertised.listeners`) when it differs from `--listen`, such as
    /// behind NAT or when listening on 0.0.0.0 [default: the listen address].
    #[arg(long, env = "RILL_ADVERTISED_ADDR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_addr: Option<String>,

    /// The cluster's brokers at first start, in Kafka's
    /// `controller.quorum.voters` form `id@host:port,...`: each broker's
    /// node id and its inter-broker listener (this broker's own entry is
    /// where it listens for peers). Without it the broker is a cluster of
    /// one, as before cluster mode. Fixed at a data directory's first start.
    #[arg(long, env = "RILL_PEERS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<String>,

    /// Raft election timeout in milliseconds (randomised in [t, 2t)): how
    /// long followers wait without a leader before electing one.
    #[arg(long, env = "RILL_RAFT_ELECTION_TIMEOUT_MS", default_value_t = RAFT_ELECTION_TIMEOUT_MS_DEFAULT)]
    pub raft_election_timeout_ms: u64,

    /// Raft heartbeat interval in milliseconds.
    #[arg(long, env = "RILL_RAFT_HEARTBEAT_MS", default_value_t = RAFT_HEARTBEAT_MS_DEFAULT)]
    pub raft_heartbeat_ms: u64,

    /// Replicas of each partition of a topic created without a replication
    /// factor (Kafka's `default.replication.factor`), capped at the number
    /// of brokers.
    #[arg(long, env = "RILL_DEFAULT_REPLICATION_FACTOR", default_value_t = DEFAULT_REPLICATION_FACTOR_DEFAULT)]
    pub default_replication_factor: u16,

    /// Address of the Prometheus `/metrics` endpoint (port 0: any free port).
    #[arg(long, env = "RILL_METRICS_ADDR", default_value_t = METRICS_ADDR_DEFAULT)]
    pub metrics_addr: SocketAddr,

    /// Directory holding topic metadata and partition logs.
    #[arg(long, env = "RILL_DATA_DIR", default_value = DATA_DIR_DEFAULT)]
    pub data_dir: PathBuf,

    /// Storage I/O backend.
    #[arg(long, env = "RILL_IO_BACKEND", value_enum, default_value_t = IoBackendSetting::Auto)]
    pub io_backend: IoBackendSetting,

    /// Storage I/O threads (1..=64); each partition's writes and fsyncs run on one of them.
    #[arg(long, env = "RILL_IO_THREADS", default_value_t = IO_THREADS_DEFAULT)]
    pub io_threads: usize,

    /// Write segment files with O_DIRECT (past the page cache); see README "Direct I/O".
    #[arg(long, env = "RILL_IO_DIRECT", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub io_direct: bool,

    /// Largest request frame accepted; larger length prefixes close the connection.
    #[arg(long, env = "RILL_FRAME_BYTES_MAX", default_value_t = FRAME_BYTES_MAX_DEFAULT)]
    pub frame_bytes_max: u64,

    /// Request bytes one connection may have in flight before the broker stops reading it.
    #[arg(long, env = "RILL_CONNECTION_INFLIGHT_BYTES_MAX", default_value_t = CONNECTION_INFLIGHT_BYTES_MAX_DEFAULT)]
    pub connection_inflight_bytes_max: u64,

    /// Request bytes all connections together may have in flight.
    #[arg(long, env = "RILL_BROKER_INFLIGHT_BYTES_MAX", default_value_t = BROKER_INFLIGHT_BYTES_MAX_DEFAULT)]
    pub broker_inflight_bytes_max: u64,

    /// Most client connections open at once; further ones wait in the accept queue.
    #[arg(long, env = "RILL_CONNECTIONS_MAX", default_value_t = CONNECTIONS_MAX_DEFAULT)]
    pub connections_max: u32,

    /// Most new connections accepted per second; further ones wait in the accept queue.
    #[arg(long, env = "RILL_CONNECTION_ACCEPT_RATE_MAX", default_value_t = CONNECTION_ACCEPT_RATE_MAX_DEFAULT)]
    pub connection_accept_rate_max: u32,

    /// How often retention is enforced on every log.
    #[arg(long, env = "RILL_RETENTION_CHECK_INTERVAL_MS", default_value_t = RETENTION_CHECK_INTERVAL_MS_DEFAULT)]
    pub retention_check_interval_ms: u64,

    /// How long graceful shutdown waits for in-flight requests.
    #[arg(long, env = "RILL_SHUTDOWN_TIMEOUT_MS", default_value_t = SHUTDOWN_TIMEOUT_MS_DEFAULT)]
    pub shutdown_timeout_ms: u64,

    /// Longest a client may take to send one frame after its first byte; slower ones are disconnected.
    #[arg(long, env = "RILL_REQUEST_READ_TIMEOUT_MS", default_value_t = REQUEST_READ_TIMEOUT_MS_DEFAULT)]
    pub request_read_timeout_ms: u64,

    /// Default partition count of new topics.
    #[arg(long, env = "RILL_NUM_PARTITIONS", default_value_t = NUM_PARTITIONS_DEFAULT)]
    pub num_partitions: u32,

    /// Default segment size before a roll (topic key `segment.bytes`).
    #[arg(long, env = "RILL_SEGMENT_BYTES", default_value_t = SEGMENT_BYTES_DEFAULT)]
    pub segment_bytes: u64,

    /// Default segment age before a roll, -1 = never (topic key `segment.ms`).
    #[arg(long, env = "RILL_SEGMENT_MS", default_value_t = SEGMENT_MS_DEFAULT, allow_negative_numbers = true)]
    pub segment_ms: i64,

    /// Default retention by age, -1 = forever (topic key `retention.ms`).
    #[arg(long, env = "RILL_RETENTION_MS", default_value_t = RETENTION_MS_DEFAULT, allow_negative_numbers = true)]
    pub retention_ms: i64,

    /// Default retention by size per partition, -1 = unlimited (topic key `retention.bytes`).
    #[arg(long, env = "RILL_RETENTION_BYTES", default_value_t = RETENTION_BYTES_DEFAULT, allow_negative_numbers = true)]
    pub retention_bytes: i64,

    /// Default fsync policy: always, never, interval_ms:N or interval_bytes:N (topic key `flush.policy`).
    #[arg(long, env = "RILL_FSYNC", default_value = FSYNC_DEFAULT, value_parser = parse_fsync_policy)]
    #[serde(with = "fsync_serde")]
    pub fsync: FsyncPolicy,

    /// Default largest batch accepted (topic key `max.message.bytes`).
    #[arg(long, env = "RILL_MAX_MESSAGE_BYTES", default_value_t = MAX_MESSAGE_BYTES_DEFAULT)]
    pub max_message_bytes: u32,

    /// Default bytes of log between offset-index entries (topic key `index.interval.bytes`).
    #[arg(long, env = "RILL_INDEX_INTERVAL_BYTES", default_value_t = INDEX_INTERVAL_BYTES_DEFAULT)]
    pub index_interval_bytes: u32,

    /// Session timeout of consumer group members that do not ask for one (at least 1000).
    #[arg(long, env = "RILL_GROUP_SESSION_TIMEOUT_MS", default_value_t = GROUP_SESSION_TIMEOUT_MS_DEFAULT)]
    pub group_session_timeout_ms: u32,

    /// How often consumer group members are told to heartbeat; below the session timeout.
    #[arg(long, env = "RILL_GROUP_HEARTBEAT_INTERVAL_MS", default_value_t = GROUP_HEARTBEAT_INTERVAL_MS_DEFAULT)]
    pub group_heartbeat_interval_ms: u32,

    /// A partition forgets an idempotent producer id this long after its last batch (Kafka's `producer.id.expiration.ms`).
    #[arg(long, env = "RILL_PRODUCER_ID_EXPIRATION_MS", default_value_t = PRODUCER_ID_EXPIRATION_MS_DEFAULT)]
    pub producer_id_expiration_ms: u64,

    /// Most idempotent producer ids one partition remembers; a new one beyond this evicts the least recently used.
    #[arg(long, env = "RILL_PRODUCER_IDS_PER_PARTITION_MAX", default_value_t = PRODUCER_IDS_PER_PARTITION_MAX_DEFAULT)]
    pub producer_ids_per_partition_max: usize,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Bad flags, or `--help` / `--version` (the binary prints and exits).
    #[error(transparent)]
    Cli(#[from] clap::Error),
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse config file {path}: {source}")]
    ParseFile {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("config file {path}: unknown setting {key:?}")]
    UnknownKey { path: PathBuf, key: String },
    #[error("config file {path}: {source}")]
    BadValue {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            config: None,
            print_config: false,
            listen: LISTEN_DEFAULT,
            node_id: 0,
            advertised_addr: None,
            peers: None,
            raft_election_timeout_ms: RAFT_ELECTION_TIMEOUT_MS_DEFAULT,
            raft_heartbeat_ms: RAFT_HEARTBEAT_MS_DEFAULT,
            default_replication_factor: DEFAULT_REPLICATION_FACTOR_DEFAULT,
            metrics_addr: METRICS_ADDR_DEFAULT,
            data_dir: PathBuf::from(DATA_DIR_DEFAULT),
            io_backend: IoBackendSetting::Auto,
            io_threads: IO_THREADS_DEFAULT,
            io_direct: false,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            connection_inflight_bytes_max: CONNECTION_INFLIGHT_BYTES_MAX_DEFAULT,
            broker_inflight_bytes_max: BROKER_INFLIGHT_BYTES_MAX_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            connection_accept_rate_max: CONNECTION_ACCEPT_RATE_MAX_DEFAULT,
            retention_check_interval_ms: RETENTION_CHECK_INTERVAL_MS_DEFAULT,
            shutdown_timeout_ms: SHUTDOWN_TIMEOUT_MS_DEFAULT,
            request_read_timeout_ms: REQUEST_READ_TIMEOUT_MS_DEFAULT,
            num_partitions: NUM_PARTITIONS_DEFAULT,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: SEGMENT_MS_DEFAULT,
            retention_ms: RETENTION_MS_DEFAULT,
            retention_bytes: RETENTION_BYTES_DEFAULT,
            fsync: FsyncPolicy::Never,
            max_message_bytes: MAX_MESSAGE_BYTES_DEFAULT,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            group_session_timeout_ms: GROUP_SESSION_TIMEOUT_MS_DEFAULT,
            group_heartbeat_interval_ms: GROUP_HEARTBEAT_INTERVAL_MS_DEFAULT,
            producer_id_expiration_ms: PRODUCER_ID_EXPIRATION_MS_DEFAULT,
            producer_ids_per_partition_max: PRODUCER_IDS_PER_PARTITION_MAX_DEFAULT,
        }
    }
}

impl BrokerConfig {
    /// Parses flags (and `RILL_*` variables), then fills the values they left
    /// at their defaults from the `--config` file, then validates.
    pub fn load<I, T>(args: I) -> Result<BrokerConfig, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = BrokerConfig::command().try_get_matches_from(args)?;
        let cli = BrokerConfig::from_arg_matches(&matches)?;
        let Some(path) = cli.config.clone() else {
            cli.validate()?;
            return Ok(cli);
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::ReadFile {
            path: path.clone(),
            source,
        })?;
        let file: toml::Table = toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
            path: path.clone(),
            source,
        })?;
        let mut merged = toml::Table::try_from(&cli)
            .map_err(|e| ConfigError::Invalid(format!("cannot serialize settings: {e}")))?;
        let command = BrokerConfig::command();
        for (key, value) in file {
            // Optional settings left unset are absent from `merged`.
            let known = command.get_arguments().any(|a| a.get_id().as_str() == key);
            if !merged.contains_key(&key) && !known {
                return Err(ConfigError::UnknownKey { path, key });
            }
            let from_default = matches!(
                matches.value_source(&key),
                None | Some(ValueSource::DefaultValue)
            );
            if from_default {
                merged.insert(key, value);
            }
        }
        let mut config: BrokerConfig =
            merged.try_into().map_err(|source| ConfigError::BadValue {
                path: path.clone(),
                source,
            })?;
        config.config = Some(path);
        config.print_config = cli.print_config;
        config.validate()?;
        Ok(config)
    }

    /// The effective settings as TOML (what `--print-config` shows and what
    /// start-up logs).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }

    /// Checks every setting and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if i32::try_from(self.node_id).is_err() {
            return invalid(format!(
                "node_id {} must be at most {} (Kafka's node ids are 32-bit signed)",
                self.node_id,
                i32::MAX
            ));
        }
        if let Some(addr) = &self.advertised_addr {
            if let Err(e) = parse_host_port(addr) {
                return invalid(format!("advertised_addr {addr:?}: {e}"));
            }
        }
        if let Some(peers) = &self.peers {
            let parsed =
                parse_peers(peers).map_err(|e| ConfigError::Invalid(format!("peers: {e}")))?;
            if !parsed.contains_key(&u64::from(self.node_id)) {
                return invalid(format!(
                    "peers {peers:?} has no entry for this broker's node_id {}",
                    self.node_id
                ));
            }
        }
        if self.raft_heartbeat_ms == 0 || self.raft_heartbeat_ms >= self.raft_election_timeout_ms {
            return invalid(format!(
                "raft_heartbeat_ms {} must be in 1..{} (below raft_election_timeout_ms)",
                self.raft_heartbeat_ms, self.raft_election_timeout_ms
            ));
        }
        if self.default_replication_factor == 0 {
            return invalid("default_replication_factor must be at least 1".into());
        }
        let frame_limit = u64::from(u32::MAX);
        if self.frame_bytes_max == 0 || self.frame_bytes_max > frame_limit {
            return invalid(format!(
                "frame_bytes_max {} must be in 1..={frame_limit} (the length prefix is a u32)",
                self.frame_bytes_max
            ));
        }
        if self.frame_bytes_max < u64::from(self.max_message_bytes) {
            return invalid(format!(
                "frame_bytes_max {} is smaller than max_message_bytes {}: no batch of that size could arrive",
                self.frame_bytes_max, self.max_message_bytes
            ));
        }
        for (name, v) in [
            (
                "connection_inflight_bytes_max",
                self.connection_inflight_bytes_max,
            ),
            ("broker_inflight_bytes_max", self.broker_inflight_bytes_max),
        ] {
            if v == 0 || v > INFLIGHT_BYTES_LIMIT {
                return invalid(format!("{name} {v} must be in 1..={INFLIGHT_BYTES_LIMIT}"));
            }
        }
        if self.io_threads == 0 || self.io_threads > rill_storage::io::IO_THREADS_MAX {
            return invalid(format!(
                "io_threads {} must be in 1..={}",
                self.io_threads,
                rill_storage::io::IO_THREADS_MAX
            ));
        }
        if self.connections_max == 0 {
            return invalid("connections_max must be at least 1".into());
        }
        if self.connection_accept_rate_max == 0 {
            return invalid("connection_accept_rate_max must be at least 1".into());
        }
        if self.request_read_timeout_ms == 0 {
            return invalid("request_read_timeout_ms must be at least 1".into());
        }
        if self.retention_check_interval_ms == 0 {
            return invalid("retention_check_interval_ms must be at least 1".into());
        }
        if self.producer_id_expiration_ms == 0 {
            return invalid("producer_id_expiration_ms must be at least 1".into());
        }
        if self.producer_ids_per_partition_max == 0 {
            return invalid("producer_ids_per_partition_max must be at least 1".into());
        }
        if self.num_partitions == 0 || self.num_partitions > PARTITIONS_MAX {
            return invalid(format!(
                "num_partitions {} must be in 1..={PARTITIONS_MAX}",
                self.num_partitions
            ));
        }
        if self.group_session_timeout_ms < GROUP_SESSION_TIMEOUT_MS_MIN {
            return invalid(format!(
                "group_session_timeout_ms {} must be at least {GROUP_SESSION_TIMEOUT_MS_MIN}",
                self.group_session_timeout_ms
            ));
        }
        if self.group_heartbeat_interval_ms == 0
            || self.group_heartbeat_interval_ms >= self.group_session_timeout_ms
        {
            return invalid(format!(
                "group_heartbeat_interval_ms {} must be in 1..{} (below group_session_timeout_ms)",
                self.group_heartbeat_interval_ms, self.group_session_timeout_ms
            ));
        }
        self.topic_defaults()
            .map_err(ConfigError::Invalid)?
            .to_log_config()
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("topic defaults: {e}")))?;
        Ok(())
    }

    /// The group coordinator's settings. A default session above the
    /// coordinator's usual maximum raises that maximum with it.
    pub fn coordinator_config(&self) -> crate::coordinator::CoordinatorConfig {
        let defaults = crate::coordinator::CoordinatorConfig::default();
        crate::coordinator::CoordinatorConfig {
            session_timeout_ms_default: self.group_session_timeout_ms,
            session_timeout_ms_max: defaults
                .session_timeout_ms_max
                .max(self.group_session_timeout_ms),
            heartbeat_interval_ms: self.group_heartbeat_interval_ms,
            ..defaults
        }
    }

    /// The settings a topic gets when created without overrides.
    pub fn topic_defaults(&self) -> Result<TopicConfig, String> {
        Ok(TopicConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: optional_ms("segment_ms", self.segment_ms)?,
            retention_ms: optional_ms("retention_ms", self.retention_ms)?,
            retention_bytes: optional_ms("retention_bytes", self.retention_bytes)?,
            fsync: self.fsync,
            max_message_bytes: self.max_message_bytes,
            index_interval_bytes: self.index_interval_bytes,
            replication_flush: rill_replication::FlushMode::Synced,
            producer_id_expiration_ms: self.producer_id_expiration_ms,
            producer_ids_max: self.producer_ids_per_partition_max,
        })
    }
}

/// Splits `host:port` (an IPv6 host in brackets, `[::1]:9092`); the host
/// must be non-empty and the port a number.
/// Parses `--peers` (`id@host:port,...`) into node id → `host:port`.
pub fn parse_peers(peers: &str) -> Result<std::collections::BTreeMap<u64, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    for entry in peers.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| format!("{entry:?} is not id@host:port"))?;
        let id: u64 = id
            .parse()
            .map_err(|_| format!("{entry:?}: node id {id:?} is not a number"))?;
        if i32::try_from(id).is_err() {
            return Err(format!("{entry:?}: node id {id} is above {}", i32::MAX));
        }
        parse_host_port(addr).map_err(|e| format!("{entry:?}: {e}"))?;
        if out.insert(id, addr.to_owned()).is_some() {
            return Err(format!("node id {id} is listed twice"));
        }
    }
    if out.is_empty() {
        return Err("no broker listed".into());
    }
    Ok(out)
}

pub fn parse_host_port(addr: &str) -> Result<(String, u16), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_owned())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err("the host is empty".to_owned());
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("port {port:?} is not a number in 0..=65535"))?;
    Ok((host.to_owned(), port))
}

mod fsync_serde {
    use rill_storage::FsyncPolicy;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &FsyncPolicy, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(p)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FsyncPolicy, D::Error> {
        let s = String::deserialize(d)?;
        crate::topic_config::parse_fsync_policy(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matches_clap_defaults() {
        let parsed = BrokerConfig::try_parse_from(["rill-broker"]);
        // Only meaningful when no RILL_* variable is set in the test env.
        if std::env::vars().any(|(k, _)| k.starts_with("RILL_")) {
            return;
        }
        let parsed = parsed.map(|c| c.to_toml());
        assert_eq!(parsed.ok(), Some(BrokerConfig::default().to_toml()));
    }

    #[test]
    fn fsync_policy_round_trips_and_rejects_garbage() {
        for s in [
            "always",
            "never",
            "interval_ms:1000",
            "interval_bytes:1048576",
        ] {
            let p = parse_fsync_policy(s);
            assert_eq!(p.map(|p| p.to_string()).ok().as_deref(), Some(s));
        }
        for bad in ["", "sometimes", "interval_ms:", "interval_bytes:-3"] {
            assert!(parse_fsync_policy(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn validate_rejects_inconsistent_limits() {
        let ok = BrokerConfig::default();
        assert!(ok.validate().is_ok());
        let bad = [
            BrokerConfig {
                frame_bytes_max: 0,
                ..ok.clone()
            },
            BrokerConfig {
                frame_bytes_max: 1024,
                ..ok.clone()
            },
            BrokerConfig {
                connections_max: 0,
                ..ok.clone()
            },
            BrokerConfig {
                io_threads: 0,
                ..ok.clone()
            },
            BrokerConfig {
                io_threads: rill_storage::io::IO_THREADS_MAX + 1,
                ..ok.clone()
            },
            BrokerConfig {
                connection_accept_rate_max: 0,
                ..ok.clone()
            },
            BrokerConfig {
                request_read_timeout_ms: 0,
                ..ok.clone()
            },
            BrokerConfig {
                num_partitions: 0,
                ..ok.clone()
            },
            BrokerConfig {
                retention_ms: -2,
                ..ok.clone()
            },
            BrokerConfig {
                connection_inflight_bytes_max: 0,
                ..ok.clone()
            },
            BrokerConfig {
                fsync: FsyncPolicy::IntervalMs(0),
                ..ok.clone()
            },
            BrokerConfig {
                group_session_timeout_ms: 999,
                ..ok.clone()
            },
            BrokerConfig {
                group_heartbeat_interval_ms: ok.group_session_timeout_ms,
                ..ok.clone()
            },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "accepted {b:?}");
        }
    }
}
