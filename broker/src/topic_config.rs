//! A topic's settings: Kafka's topic config keys (`retention.ms`, ...), how
//! they parse and combine with the broker's defaults, and the naming and
//! size rules every topic follows.
//!
//! Its own module so that the broker's configuration (which holds the
//! defaults) and the topic registry (which applies them) both depend on it
//! and not on each other.

use rill_protocol::wire::topic_config;
use rill_replication::FlushMode;
use rill_storage::{FsyncPolicy, LogConfig};

/// Most partitions one topic may have: bounds the directories, files and
/// I/O queue entries a single CreateTopics can cause.
pub const PARTITIONS_MAX: u32 = 1024;
/// Kafka's topic name length limit (leaves room for `-<partition>` in a
/// 255-byte file name).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Topic config key of the offset-index density (not in the wire crate's
/// list of Kafka names, which the other keys come from).
pub const INDEX_INTERVAL_BYTES: &str = "index.interval.bytes";
/// Topic config key of when a replica counts an entry as stored: `synced`
/// (default) or `written` (Rill's own key; Redpanda's `write.caching`).
pub const REPLICATION_FLUSH: &str = "replication.flush";
/// The fsync policy of a `replication.flush = written` topic that sets no
/// `flush.policy` of its own while the broker's default is `never`: its
/// replicas then sync at least this often (ms), so an acknowledged record
/// is never left unsynced indefinitely (Redpanda's write caching flushes
/// on a timer too). A topic that sets `flush.policy = never` itself gets
/// exactly that.
pub const WRITTEN_FSYNC_INTERVAL_MS: u64 = 1_000;

/// A topic's effective settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub segment_bytes: u64,
    pub segment_ms: Option<u64>,
    pub retention_ms: Option<u64>,
    pub retention_bytes: Option<u64>,
    pub fsync: FsyncPolicy,
    pub max_message_bytes: u32,
    pub index_interval_bytes: u32,
    /// When a replica of a replicated partition counts an entry as stored.
    pub replication_flush: FlushMode,
    /// Broker-wide (Kafka has no per-topic key for these either).
    pub producer_id_expiration_ms: u64,
    pub producer_ids_max: usize,
}

impl TopicConfig {
    /// Applies one Kafka-style override (`retention.ms` = `"60000"`).
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), String> {
        let int = |v: &str| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| format!("{key}: {v:?} is not an integer"))
        };
        let unsigned = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| format!("{key}: {v:?} is not a non-negative integer"))
        };
        let small = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("{key}: {v:?} is not an integer in 0..={}", u32::MAX))
        };
        match key {
            topic_config::RETENTION_MS => self.retention_ms = optional_ms(key, int(value)?)?,
            topic_config::RETENTION_BYTES => {
                self.retention_bytes = optional_ms(key, int(value)?)?
            }
            topic_config::SEGMENT_BYTES => self.segment_bytes = unsigned(value)?,
            topic_config::SEGMENT_MS => self.segment_ms = optional_ms(key, int(value)?)?,
            topic_config::FLUSH_POLICY => self.fsync = parse_fsync_policy(value)?,
            topic_config::MAX_MESSAGE_BYTES => self.max_message_bytes = small(value)?,
            INDEX_INTERVAL_BYTES => self.index_interval_bytes = small(value)?,
            REPLICATION_FLUSH => {
                self.replication_flush = value
                    .parse()
                    .map_err(|e: rill_replication::ReplicationError| format!("{key}: {e}"))?
            }
            other => {
                return Err(format!(
                    "unknown topic config {other:?}: expected one of retention.ms, retention.bytes, \
                     segment.bytes, segment.ms, flush.policy, max.message.bytes, index.interval.bytes, \
                     replication.flush"
                ))
            }
        }
        Ok(())
    }

    /// Defaults plus overrides, checked by the storage engine's own rules.
    /// A `replication.flush = written` topic that sets no `flush.policy`
    /// while the default is `never` syncs every
    /// [`WRITTEN_FSYNC_INTERVAL_MS`].
    pub fn with_overrides<'a>(
        &self,
        overrides: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<TopicConfig, String> {
        let mut config = self.clone();
        let mut own_flush_policy = false;
        for (k, v) in overrides {
            config.apply(k, v)?;
            own_flush_policy |= k == topic_config::FLUSH_POLICY;
        }
        if config.replication_flush == FlushMode::Written
            && config.fsync == FsyncPolicy::Never
            && !own_flush_policy
        {
            config.fsync = FsyncPolicy::IntervalMs(WRITTEN_FSYNC_INTERVAL_MS);
        }
        config
            .to_log_config()
            .validate()
            .map_err(|e| e.to_string())?;
        Ok(config)
    }

    pub fn to_log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            index_interval_bytes: self.index_interval_bytes,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            fsync: self.fsync,
            max_batch_bytes: self.max_message_bytes,
            producer_id_expiration_ms: self.producer_id_expiration_ms,
            producer_ids_max: self.producer_ids_max,
        }
    }
}

/// Checks Kafka's topic name rules: 1..=249 bytes of `[a-zA-Z0-9._-]`, not
/// `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!(
            "topic name must be 1..={TOPIC_NAME_BYTES_MAX} characters, got {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {c:?}; allowed: [a-zA-Z0-9._-]"
        ));
    }
    Ok(())
}

/// `-1` means "none"; other negatives are errors.
pub(crate) fn optional_ms(name: &str, v: i64) -> Result<Option<u64>, String> {
    match v {
        -1 => Ok(None),
        v if v >= 0 => Ok(Some(v.unsigned_abs())),
        v => Err(format!("{name} {v} must be -1 (none) or >= 0")),
    }
}

/// Parses `always`, `never`, `interval_ms:N`, `interval_bytes:N` (the
/// storage crate's syntax; zero intervals are refused by `validate()`).
pub fn parse_fsync_policy(s: &str) -> Result<FsyncPolicy, String> {
    s.trim().parse::<FsyncPolicy>().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in [
            "a",
            "orders",
            "my.topic_v2-x",
            &"x".repeat(TOPIC_NAME_BYTES_MAX),
        ] {
            assert!(validate_topic_name(ok).is_ok(), "{ok:?} rejected");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "ü",
            &"x".repeat(TOPIC_NAME_BYTES_MAX + 1),
        ] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn overrides_parse_and_reject_bad_values() {
        let base = crate::BrokerConfig::default()
            .topic_defaults()
            .unwrap_or_else(|e| panic!("defaults: {e}"));
        let c = base
            .with_overrides([
                ("retention.ms", "60000"),
                ("retention.bytes", "-1"),
                ("segment.bytes", "65536"),
                ("flush.policy", "interval_ms:50"),
                ("max.message.bytes", "2048"),
            ])
            .unwrap_or_else(|e| panic!("overrides: {e}"));
        assert_eq!(c.retention_ms, Some(60_000));
        assert_eq!(c.retention_bytes, None);
        assert_eq!(c.segment_bytes, 65_536);
        assert_eq!(c.fsync, FsyncPolicy::IntervalMs(50));
        assert_eq!(c.max_message_bytes, 2048);
        assert_eq!(c.replication_flush, FlushMode::Synced);
        for (k, v) in [
            ("replication.flush", "sometimes"),
            ("replication.flush", "sync"),
            ("replication.flush", ""),
            ("retention.ms", "soon"),
            ("retention.ms", "-5"),
            ("segment.bytes", "-1"),
            ("flush.policy", "sometimes"),
            ("flush.policy", "interval_ms:0"),
            ("max.message.bytes", "10"),
            ("no.such.key", "1"),
        ] {
            assert!(base.with_overrides([(k, v)]).is_err(), "{k}={v} accepted");
        }
    }
}

#[cfg(test)]
mod replication_flush_tests {
    use super::*;

    fn base() -> TopicConfig {
        crate::BrokerConfig::default()
            .topic_defaults()
            .unwrap_or_else(|e| panic!("defaults: {e}"))
    }

    #[test]
    fn replication_flush_parses_and_a_bad_value_names_the_key_and_the_choices() {
        let c = base()
            .with_overrides([("replication.flush", "written")])
            .unwrap_or_else(|e| panic!("written: {e}"));
        assert_eq!(c.replication_flush, FlushMode::Written);
        let err = base()
            .with_overrides([("replication.flush", "cached")])
            .expect_err("a bad value is refused");
        assert!(
            err.contains("replication.flush") && err.contains("synced or written"),
            "{err}"
        );
    }

    #[test]
    fn written_mode_syncs_on_a_timer_unless_the_topic_sets_its_own_flush_policy() {
        let c = base()
            .with_overrides([("replication.flush", "written")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.fsync, FsyncPolicy::IntervalMs(WRITTEN_FSYNC_INTERVAL_MS));
        for (policy, want) in [
            ("never", FsyncPolicy::Never),
            ("interval_bytes:4096", FsyncPolicy::IntervalBytes(4096)),
        ] {
            let c = base()
                .with_overrides([("replication.flush", "written"), ("flush.policy", policy)])
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.fsync, want, "flush.policy={policy} is the topic's own");
        }
        let synced = base()
            .with_overrides([("replication.flush", "synced")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(synced.fsync, FsyncPolicy::Never);
    }
}
