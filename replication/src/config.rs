//! The openraft configuration of a data partition.
//!
//! Snapshots of a data partition are metadata only (see `state_machine`),
//! so a snapshot must never stand in for entries a follower lacks: that
//! follower would skip the data. So openraft builds no snapshot by policy
//! (`SnapshotPolicy::Never`) and purges no log because a snapshot covers it
//! (`max_in_snapshot_log_to_keep = u64::MAX`: the purge point it computes
//! stays at 0). The only purges are retention's: below a log start the
//! leader replicated, standing on a snapshot built for exactly that point
//! (`state_machine`, `node`); a follower that lacks entries below it is
//! sent that snapshot, every other lagging follower entries.
//!
//! Also here: [`FlushMode`], when a replica counts an entry as stored.

use std::fmt;
use std::str::FromStr;

use openraft::{Config, SnapshotPolicy};

use crate::error::ReplicationError;

/// The openraft [`Config`] of a data partition with these timings (ms),
/// validated (the election timeout range is `[election, 2 * election)`,
/// which must be above the heartbeat).
pub fn raft_config(
    election_timeout_ms: u64,
    heartbeat_ms: u64,
) -> Result<Config, ReplicationError> {
    let config = Config {
        cluster_name: "rill-partition".to_string(),
        election_timeout_min: election_timeout_ms,
        election_timeout_max: election_timeout_ms.saturating_mul(2),
        heartbeat_interval: heartbeat_ms,
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: u64::MAX,
        // A node back from a partition asks before it campaigns, so it does
        // not depose a healthy leader by raising the term.
        enable_pre_vote: Some(true),
        // A replica whose disk was lost or wiped comes back empty; the
        // leader must then send it the whole log again rather than stop
        // (openraft's default treats a follower's shorter log as a bug).
        allow_log_reversion: Some(true),
        ..Config::default()
    };
    Ok(config.validate()?)
}

/// When a replica reports an appended entry to Raft as stored, which is
/// what a commit (and so the high watermark, and `acks=all`) counts. The
/// topic key `replication.flush` picks it; every replica of a partition
/// uses the topic's mode.
///
/// Whatever the mode, the Raft state file (vote, committed and purged ids,
/// anchor) is written and fsynced before it counts, after the log is
/// flushed: a vote is never cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushMode {
    /// Reported once the log has fdatasync'd the entry (group commit): a
    /// commit means "on the disks of a majority", and survives a power loss
    /// of every replica.
    #[default]
    Synced,
    /// Reported once the entry is written (in the page cache), before any
    /// fsync (Redpanda's write caching). A commit means "in the memory of a
    /// majority": it survives any process crash (`kill -9`: the page cache
    /// outlives the process) and any minority failing, but an acknowledged
    /// entry is lost if enough replicas lose power (or their kernel
    /// crashes) before their next fsync that the replicas still holding it
    /// are no majority. The entries become durable at the log's next sync:
    /// its fsync policy (`flush.policy`), every Raft state write (which
    /// flushes the log first), and a clean close. The committed id is then
    /// kept in memory and saved with the next state write, so after a
    /// restart the replica may start from an older commit (the leader's
    /// tells it the rest).
    Written,
}

impl FlushMode {
    /// The topic config value: `synced` or `written`.
    pub fn as_str(self) -> &'static str {
        match self {
            FlushMode::Synced => "synced",
            FlushMode::Written => "written",
        }
    }
}

impl fmt::Display for FlushMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FlushMode {
    type Err = ReplicationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "synced" => Ok(FlushMode::Synced),
            "written" => Ok(FlushMode::Written),
            other => Err(ReplicationError::UnknownFlushMode(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_modes_parse_and_print_their_config_values() {
        for mode in [FlushMode::Synced, FlushMode::Written] {
            assert_eq!(mode.as_str().parse::<FlushMode>().ok(), Some(mode));
            assert_eq!(mode.to_string(), mode.as_str());
        }
        assert_eq!(FlushMode::default(), FlushMode::Synced);
        for bad in ["", "sync", "Written", "always"] {
            assert!(bad.parse::<FlushMode>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn snapshots_and_snapshot_driven_purges_are_off() {
        let c = raft_config(1_000, 100).unwrap();
        assert_eq!(c.snapshot_policy, SnapshotPolicy::Never);
        assert_eq!(c.max_in_snapshot_log_to_keep, u64::MAX);
        assert_eq!(
            (c.election_timeout_min, c.election_timeout_max),
            (1_000, 2_000)
        );
        assert_eq!(c.heartbeat_interval, 100);
    }

    #[test]
    fn timings_are_validated() {
        assert!(
            raft_config(100, 100).is_err(),
            "heartbeat must be below the election timeout"
        );
        assert!(raft_config(0, 0).is_err());
    }
}
