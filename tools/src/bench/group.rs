//! `rill bench group`: `--consumers` members of one consumer group share a
//! topic, and the bench measures how fast the group as a whole drains it.
//!
//! The run has three steps:
//! 1. A produce phase (not measured) fills the topic when it is empty, so
//!    the consumed records can be checked against what was acknowledged.
//! 2. Every member joins a fresh group and the bench waits until the broker
//!    reports the group `Stable` with all of them before any member polls:
//!    the measured part then shows balanced consumption, not one member
//!    racing through the topic while the others are still joining.
//! 3. The members poll until the group together has reached the end
//!    offsets the topic had before they started, then leave (committing);
//!    on a running broker the bench's group is deleted afterwards.
//!
//! Every member records, per partition, the runs of offsets it consumed.
//! Merging the runs of all members gives the duplicates (an offset read by
//! two members, or twice by one): in a healthy group with commit on revoke
//! there are none, so any duplicate fails the run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_client::{Admin, AutoOffsetReset, GroupConsumer, GroupConsumerConfig};
use serde::Serialize;

use super::actors::CONSUMER_STALL_TIMEOUT;
use super::report::{PhaseReport, Report, Verification};
use super::stats::ActorStats;
use super::workload::{record_digest, Checksum};
use super::{fill_if_empty, join_all, FilledTopic, ProgressTicker, Settings, EMBEDDED};
use crate::error::CliError;

/// How long one member poll waits before the member checks whether the
/// group is done.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest wait for the group to become `Stable` with every member.
pub const GROUP_SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the settle wait asks the broker about the group.
const SETTLE_CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// The members' auto-commit interval (Kafka's default); they also commit
/// when they leave.
const MEMBER_AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// One member as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberReport {
    pub name: String,
    /// Every partition the member held at some point of the run.
    pub partitions: Vec<u32>,
    pub records: u64,
}

/// The group side of a `group` run.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub group_id: String,
    /// From the first join to `Stable` with every member.
    pub settle_secs: f64,
    pub members: Vec<MemberReport>,
    /// Records consumed more than once, over all members.
    pub duplicates: u64,
}

/// What the members share: the end to reach and how far the group got.
struct Progress {
    ends: HashMap<u32, u64>,
    /// Per partition, the highest offset consumed + 1 by any member.
    reached: Mutex<HashMap<u32, u64>>,
    done: AtomicBool,
    /// Records consumed by all members (progress bar).
    consumed: Arc<AtomicU64>,
    /// Last time any member consumed a record, as ms since `start`.
    last_record_ms: AtomicU64,
    start: Instant,
}

impl Progress {
    fn reached_all(&self) -> bool {
        let reached = self
            .reached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.ends
            .iter()
            .all(|(p, &end)| reached.get(p).copied().unwrap_or(0) >= end)
    }

    fn since_last_record(&self) -> Duration {
        let last = Duration::from_millis(self.last_record_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// What one member brings back.
struct MemberOutcome {
    stats: ActorStats,
    held: BTreeSet<u32>,
    /// Per partition, runs `[start, end)` of consecutive offsets consumed.
    runs: HashMap<u32, Vec<(u64, u64)>>,
}

pub(super) async fn group_scenario(
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

    let group_id = format!(
        "rill-bench-group-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let joined_at = Instant::now();
    let mut members = Vec::with_capacity(s.consumers);
    for index in 0..s.consumers {
        let mut config = GroupConsumerConfig::new(addr, group_id.clone());
        config.client_id = format!("rill-bench-member-{index}");
        config.auto_offset_reset = AutoOffsetReset::Earliest;
        config.auto_commit = Some(MEMBER_AUTO_COMMIT_INTERVAL);
        let mut member = GroupConsumer::new(config).await.map_err(|e| {
            CliError::client(format!("group member {index}: cannot reach {addr}"), e)
        })?;
        member
            .subscribe([topic.clone()])
            .map_err(|e| CliError::client(format!("group member {index}: cannot subscribe"), e))?;
        members.push(member);
    }
    let settled = settle(admin, &group_id, s.consumers).await;
    if let Err(e) = settled {
        for m in members {
            let _ = m.close().await;
        }
        return Err(e);
    }
    let settle_secs = joined_at.elapsed().as_secs_f64();

    let consumed_counter = Arc::new(AtomicU64::new(0));
    let run_start = Instant::now();
    let progress = Arc::new(Progress {
        done: AtomicBool::new(total == 0),
        ends,
        reached: Mutex::new(starts),
        consumed: Arc::clone(&consumed_counter),
        last_record_ms: AtomicU64::new(0),
        start: run_start,
    });
    let measure_from = run_start + s.warmup();
    let bar = ProgressTicker::start("group", s, consumed_counter, Some(total), run_start);
    let handles: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(index, member)| {
            tokio::spawn(run_member(
                index,
                member,
                topic.clone(),
                Arc::clone(&progress),
                measure_from,
                s.output_dir.is_some(),
            ))
        })
        .collect();
    let outcomes = join_all(handles, "group member").await;
    bar.finish().await;
    // The members have left; on a running broker the group's offsets are
    // the bench's litter (an embedded broker's directory goes anyway).
    if !s.broker.starts_with(EMBEDDED) {
        if let Err(e) = admin.delete_group(&group_id).await {
            tracing::warn!(group_id, error = %e, "cannot delete the bench group");
        }
    }
    let outcomes = outcomes?;

    let stats: Vec<ActorStats> = outcomes.iter().map(|o| o.stats.clone()).collect();
    let mut consumed = Checksum::default();
    stats.iter().for_each(|c| consumed.merge(&c.checksum));
    let duplicates = count_duplicates(outcomes.iter().map(|o| &o.runs));
    let verification = Verification::new(total, expected, consumed).with_duplicates(duplicates);
    let mut report = Report::new(
        s,
        topic,
        produced,
        Some(PhaseReport::consumers(&stats, false)),
        Some(verification),
    );
    report.group = Some(GroupReport {
        group_id,
        settle_secs,
        members: outcomes
            .iter()
            .enumerate()
            .map(|(i, o)| MemberReport {
                name: format!("consumer {i}"),
                partitions: o.held.iter().copied().collect(),
                records: o.stats.records,
            })
            .collect(),
        duplicates,
    });
    Ok(report)
}

/// Waits until the broker shows `expected` members and a `Stable` group.
async fn settle(admin: &Admin, group_id: &str, expected: usize) -> Result<(), CliError> {
    let deadline = Instant::now() + GROUP_SETTLE_TIMEOUT;
    let mut last_seen = String::from("not yet known to the broker");
    while Instant::now() < deadline {
        // Until the first heartbeat lands the group does not exist yet.
        if let Ok(d) = admin.describe_group(group_id).await {
            if d.members.len() == expected && d.state == "Stable" {
                return Ok(());
            }
            last_seen = format!("{} with {} members", d.state, d.members.len());
        }
        tokio::time::sleep(SETTLE_CHECK_INTERVAL).await;
    }
    Err(CliError::Failed(format!(
        "group {group_id} did not become Stable with {expected} members within {} s (last seen: {last_seen})",
        GROUP_SETTLE_TIMEOUT.as_secs()
    )))
}

async fn run_member(
    index: usize,
    mut member: GroupConsumer,
    topic: String,
    progress: Arc<Progress>,
    measure_from: Instant,
    with_series: bool,
) -> Result<MemberOutcome, CliError> {
    let mut stats = ActorStats::new(measure_from, with_series);
    let mut held = BTreeSet::new();
    let mut runs: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
    while !progress.done.load(Ordering::Acquire) {
        if progress.since_last_record() > CONSUMER_STALL_TIMEOUT {
            stats.error(format!(
                "no records for {}s before the group reached the end offsets",
                CONSUMER_STALL_TIMEOUT.as_secs()
            ));
            break;
        }
        let records = match member.poll(POLL_TIMEOUT).await {
            Ok(r) => r,
            Err(e) => {
                stats.error(format!("poll failed: {e}"));
                break;
            }
        };
        held.extend(
            member
                .assignment()
                .into_iter()
                .filter(|(t, _)| *t == topic)
                .map(|(_, p)| p),
        );
        if records.is_empty() {
            continue;
        }
        let received_at = Instant::now();
        let mut count = 0u64;
        let mut highest: BTreeMap<u32, u64> = BTreeMap::new();
        let walked = records.for_each(|r| {
            if r.offset >= progress.ends.get(&r.partition).copied().unwrap_or(0) {
                return;
            }
            let bytes = (r.value.len() + r.key.map_or(0, <[u8]>::len)) as u64;
            stats.event(received_at, bytes, None, record_digest(r.value));
            add_to_runs(runs.entry(r.partition).or_default(), r.offset);
            let next = highest.entry(r.partition).or_insert(0);
            *next = (*next).max(r.offset + 1);
            count += 1;
        });
        if count > 0 {
            progress.consumed.fetch_add(count, Ordering::Relaxed);
            let ms = u64::try_from(progress.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            progress.last_record_ms.fetch_max(ms, Ordering::Relaxed);
            {
                let mut reached = progress
                    .reached
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for (p, next) in highest {
                    let r = reached.entry(p).or_insert(0);
                    *r = (*r).max(next);
                }
            }
            if progress.reached_all() {
                progress.done.store(true, Ordering::Release);
            }
        }
        if let Err(e) = walked {
            stats.error(format!("bad batch: {e}"));
            break;
        }
    }
    if let Err(e) = member.close().await {
        stats.error(format!("member {index} cannot leave the group: {e}"));
    }
    Ok(MemberOutcome { stats, held, runs })
}

/// Extends the last run when `offset` follows it, else starts a new one.
fn add_to_runs(runs: &mut Vec<(u64, u64)>, offset: u64) {
    match runs.last_mut() {
        Some(last) if last.1 == offset => last.1 += 1,
        _ => runs.push((offset, offset + 1)),
    }
}

/// Offsets covered more than once by the runs of all members: the sum of
/// the run lengths minus the length of their union, per partition.
fn count_duplicates<'a>(all: impl Iterator<Item = &'a HashMap<u32, Vec<(u64, u64)>>>) -> u64 {
    let mut by_partition: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
    for runs in all {
        for (p, list) in runs {
            by_partition.entry(*p).or_default().extend(list);
        }
    }
    let mut duplicates = 0u64;
    for list in by_partition.values_mut() {
        list.sort_unstable();
        let mut covered_to = 0u64;
        for &(start, end) in list.iter() {
            let len = end - start;
            let fresh = end.saturating_sub(start.max(covered_to));
            duplicates += len - fresh.min(len);
            covered_to = covered_to.max(end);
        }
    }
    duplicates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_consecutive_offsets_and_duplicates_are_counted_once_each() {
        let mut a = Vec::new();
        for o in [0, 1, 2, 5, 6] {
            add_to_runs(&mut a, o);
        }
        assert_eq!(a, vec![(0, 3), (5, 7)]);
        // Member b read 2..6 again (2, 5 overlap a; 3, 4 are new) and
        // re-read 4 once more after a rewind.
        let mut b = Vec::new();
        for o in [2, 3, 4, 5, 4] {
            add_to_runs(&mut b, o);
        }
        assert_eq!(b, vec![(2, 6), (4, 5)]);
        let first: HashMap<u32, Vec<(u64, u64)>> = HashMap::from([(0, a), (1, vec![(0, 10)])]);
        let second: HashMap<u32, Vec<(u64, u64)>> = HashMap::from([(0, b), (1, vec![(10, 20)])]);
        assert_eq!(count_duplicates([&first, &second].into_iter()), 3);
        assert_eq!(count_duplicates([&first].into_iter()), 0);
    }
}
