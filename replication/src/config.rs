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

#[cfg(test)]
mod tests {
    use super::*;

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
