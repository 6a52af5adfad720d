//! Server-side partition assignors: given the members of a group (their
//! subscriptions and what they currently hold) and the partition counts of
//! the topics, compute the target assignment.
//!
//! The coordinator computes assignments itself (as in Kafka's KIP-848), so
//! clients never elect a leader. Three assignors:
//! - [`AssignorKind::Range`]: per topic, contiguous ranges of partitions
//!   over the members subscribed to it (sorted by id); balanced per topic.
//! - [`AssignorKind::RoundRobin`]: every partition of every topic, in
//!   (topic, partition) order, dealt in turn to the members subscribed to
//!   its topic.
//! - [`AssignorKind::Sticky`] (the default): balanced like round-robin, but
//!   keeps every partition where it is unless balance needs it elsewhere,
//!   so a membership change moves as few partitions as possible.
//!
//! Every assignor gives each partition of a subscribed topic to exactly one
//! member subscribed to that topic, and is deterministic (ties broken by
//! member id), so recomputing on an unchanged group changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// A member's id, as handed out by the coordinator.
pub type MemberId = String;

/// Partitions by topic name.
pub type Assignment = BTreeMap<String, BTreeSet<u32>>;

/// What an assignor knows about one member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberSpec {
    pub id: MemberId,
    /// Topic names the member consumes.
    pub subscription: BTreeSet<String>,
    /// The member's previous target assignment (the sticky assignor keeps
    /// these partitions where it can).
    pub current: Assignment,
}

/// Computes a target assignment. Implementations must give every partition
/// of every topic in `topics` that some member subscribes to to exactly one
/// member subscribed to it, and return an entry (possibly empty) for every
/// member.
pub trait Assignor {
    fn assign(
        &self,
        members: &[MemberSpec],
        topics: &BTreeMap<String, u32>,
    ) -> BTreeMap<MemberId, Assignment>;
}

/// The assignors a group can be configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum AssignorKind {
    Range,
    RoundRobin,
    #[default]
    Sticky,
}

impl AssignorKind {
    pub const ALL: [AssignorKind; 3] = [
        AssignorKind::Range,
        AssignorKind::RoundRobin,
        AssignorKind::Sticky,
    ];

    /// The name used on the wire and in configs.
    pub const fn name(self) -> &'static str {
        match self {
            AssignorKind::Range => "range",
            AssignorKind::RoundRobin => "roundrobin",
            AssignorKind::Sticky => "sticky",
        }
    }
}

impl fmt::Display for AssignorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An assignor name that is not one of [`AssignorKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown assignor {0:?} (expected range, roundrobin or sticky)")]
pub struct UnknownAssignor(pub String);

impl FromStr for AssignorKind {
    type Err = UnknownAssignor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AssignorKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| UnknownAssignor(s.to_owned()))
    }
}

impl Assignor for AssignorKind {
    fn assign(
        &self,
        members: &[MemberSpec],
        topics: &BTreeMap<String, u32>,
    ) -> BTreeMap<MemberId, Assignment> {
        match self {
            AssignorKind::Range => Range.assign(members, topics),
            AssignorKind::RoundRobin => RoundRobin.assign(members, topics),
            AssignorKind::Sticky => Sticky.assign(members, topics),
        }
    }
}

fn empty_result(members: &[MemberSpec]) -> BTreeMap<MemberId, Assignment> {
    members
        .iter()
        .map(|m| (m.id.clone(), Assignment::new()))
        .collect()
}

fn give(result: &mut BTreeMap<MemberId, Assignment>, member: &str, topic: &str, partition: u32) {
    if let Some(assignment) = result.get_mut(member) {
        assignment
            .entry(topic.to_owned())
            .or_default()
            .insert(partition);
    }
}

/// Ids of the members subscribed to `topic`, sorted.
fn subscribers<'a>(members: &'a [MemberSpec], topic: &str) -> Vec<&'a str> {
    let mut ids: Vec<&str> = members
        .iter()
        .filter(|m| m.subscription.contains(topic))
        .map(|m| m.id.as_str())
        .collect();
    ids.sort_unstable();
    ids
}

/// Kafka's range assignor: per topic, the first `count % n` subscribers
/// (by id) get one partition more than the rest.
#[derive(Debug, Clone, Copy, Default)]
pub struct Range;

impl Assignor for Range {
    fn assign(
        &self,
        members: &[MemberSpec],
        topics: &BTreeMap<String, u32>,
    ) -> BTreeMap<MemberId, Assignment> {
        let mut result = empty_result(members);
        for (topic, &count) in topics {
            let ids = subscribers(members, topic);
            let Ok(n) = u32::try_from(ids.len()) else {
                continue;
            };
            if n == 0 {
                continue;
            }
            let (quota, extra) = (count / n, count % n);
            let mut next = 0u32;
            for (i, id) in (0u32..).zip(&ids) {
                let take = quota + u32::from(i < extra);
                for partition in next..next + take {
                    give(&mut result, id, topic, partition);
                }
                next += take;
            }
        }
        result
    }
}

/// Round-robin over all partitions in (topic, partition) order, skipping
/// members not subscribed to the partition's topic.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobin;

impl Assignor for RoundRobin {
    fn assign(
        &self,
        members: &[MemberSpec],
        topics: &BTreeMap<String, u32>,
    ) -> BTreeMap<MemberId, Assignment> {
        let mut result = empty_result(members);
        let mut sorted: Vec<&MemberSpec> = members.iter().collect();
        sorted.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        if sorted.is_empty() {
            return result;
        }
        let mut cursor = 0usize;
        for (topic, &count) in topics {
            if !sorted.iter().any(|m| m.subscription.contains(topic)) {
                continue;
            }
            for partition in 0..count {
                // Some member subscribes, so this finds one within a lap.
                for _ in 0..sorted.len() {
                    let member = sorted.get(cursor % sorted.len());
                    cursor = cursor.wrapping_add(1);
                    if let Some(member) = member.filter(|m| m.subscription.contains(topic)) {
                        give(&mut result, &member.id, topic, partition);
                        break;
                    }
                }
            }
        }
        result
    }
}

/// The sticky assignor: keep, fill, then even out.
///
/// 1. Each member keeps the partitions of its `current` assignment that
///    still exist, that it still subscribes to and that no member listed
///    before it (by id) already kept.
/// 2. Each partition left over goes to the subscribed member holding the
///    fewest partitions (partitions with fewer candidate members first).
/// 3. While some member holds at least two more partitions than another
///    member that could take one of them, one partition moves from the
///    fullest such member to the emptiest.
///
/// Step 3 only ever moves from a fullest member to an emptiest one, so when
/// all members share a subscription the moves are exactly those needed:
/// the members that held most keep the extra partition of the final
/// balance. Each move strictly lowers the sum of squared counts, so step 3
/// ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sticky;

struct StickyMember<'a> {
    id: &'a str,
    subscription: &'a BTreeSet<String>,
    held: BTreeSet<(&'a str, u32)>,
}

impl Assignor for Sticky {
    fn assign(
        &self,
        members: &[MemberSpec],
        topics: &BTreeMap<String, u32>,
    ) -> BTreeMap<MemberId, Assignment> {
        let mut sorted: Vec<&MemberSpec> = members.iter().collect();
        sorted.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let mut state: Vec<StickyMember<'_>> = sorted
            .iter()
            .map(|m| StickyMember {
                id: &m.id,
                subscription: &m.subscription,
                held: BTreeSet::new(),
            })
            .collect();

        // 1. Keep what is still valid and not claimed twice.
        let mut taken: BTreeSet<(&str, u32)> = BTreeSet::new();
        for (spec, member) in sorted.iter().zip(state.iter_mut()) {
            for (topic, partitions) in &spec.current {
                let Some((name, &count)) = topics.get_key_value(topic.as_str()) else {
                    continue;
                };
                if !member.subscription.contains(topic) {
                    continue;
                }
                for &p in partitions.iter().filter(|&&p| p < count) {
                    if taken.insert((name.as_str(), p)) {
                        member.held.insert((name.as_str(), p));
                    }
                }
            }
        }

        // 2. Hand out the rest, scarcest partitions first.
        let mut unassigned: Vec<(usize, &str, u32)> = Vec::new();
        for (topic, &count) in topics {
            let candidates = state
                .iter()
                .filter(|m| m.subscription.contains(topic))
                .count();
            if candidates == 0 {
                continue;
            }
            for p in 0..count {
                if !taken.contains(&(topic.as_str(), p)) {
                    unassigned.push((candidates, topic.as_str(), p));
                }
            }
        }
        unassigned.sort_unstable();
        for (_, topic, p) in unassigned {
            let emptiest = state
                .iter_mut()
                .filter(|m| m.subscription.contains(topic))
                .min_by_key(|m| m.held.len());
            if let Some(member) = emptiest {
                member.held.insert((topic, p));
            }
        }

        // 3. Even out.
        while let Some((from, to, partition)) = next_move(&state) {
            if let Some(member) = state.get_mut(from) {
                member.held.remove(&partition);
            }
            if let Some(member) = state.get_mut(to) {
                member.held.insert(partition);
            }
        }

        let mut result = empty_result(members);
        for member in &state {
            for &(topic, p) in &member.held {
                give(&mut result, member.id, topic, p);
            }
        }
        result
    }
}

/// The next balancing move: from the fullest member that has a partition
/// some member with at least two fewer could take, to the emptiest such
/// taker. Ties go to the lowest id (`state` is sorted by id).
fn next_move<'a>(state: &[StickyMember<'a>]) -> Option<(usize, usize, (&'a str, u32))> {
    let mut by_count: Vec<usize> = (0..state.len()).collect();
    // Fullest first; `sort_by_key` is stable, so equal counts stay by id.
    by_count.sort_by_key(|&i| std::cmp::Reverse(state.get(i).map_or(0, |m| m.held.len())));
    for &from in &by_count {
        let giver = state.get(from)?;
        let mut best: Option<(usize, usize, (&'a str, u32))> = None;
        for (to, taker) in state.iter().enumerate() {
            if taker.held.len() + 1 >= giver.held.len() {
                continue;
            }
            if best.is_some_and(|(_, count, _)| count <= taker.held.len()) {
                continue;
            }
            // Give back the highest partition the taker can consume: the
            // lowest ones stay put, which keeps the result predictable.
            let movable = giver
                .held
                .iter()
                .rev()
                .find(|(topic, _)| taker.subscription.contains(*topic));
            if let Some(&partition) = movable {
                best = Some((to, taker.held.len(), partition));
            }
        }
        if let Some((to, _, partition)) = best {
            return Some((from, to, partition));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    //! Properties of every assignor over seeded random groups, and the
    //! sticky assignor's minimal movement, checked against a count computed
    //! independently of the assignor.

    use super::*;
    use crate::coordinator::test_rng::TestRng;

    /// Random groups per property: modest, the suite runs on 2 cores.
    const CASES: u64 = 200;

    fn topics(counts: &[(&str, u32)]) -> BTreeMap<String, u32> {
        counts.iter().map(|&(t, c)| (t.to_owned(), c)).collect()
    }

    fn member(id: &str, subscription: &[&str], current: Assignment) -> MemberSpec {
        MemberSpec {
            id: id.to_owned(),
            subscription: subscription.iter().map(|s| (*s).to_owned()).collect(),
            current,
        }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    fn random_group(rng: &mut TestRng) -> (Vec<MemberSpec>, BTreeMap<String, u32>) {
        let names = ["a", "b", "c"];
        let topics: BTreeMap<String, u32> = names
            .iter()
            .map(|t| ((*t).to_owned(), rng.below(13) as u32))
            .collect();
        let n = rng.below(7) as usize;
        let members = (0..n)
            .map(|i| {
                let subscription: BTreeSet<String> = names
                    .iter()
                    .filter(|_| rng.below(3) > 0)
                    .map(|t| (*t).to_owned())
                    .collect();
                // Random (possibly overlapping, possibly stale) current holdings.
                let mut current = Assignment::new();
                for t in names {
                    for p in 0..14 {
                        if rng.below(4) == 0 {
                            current.entry(t.to_owned()).or_default().insert(p);
                        }
                    }
                }
                MemberSpec {
                    id: format!("m{i}"),
                    subscription,
                    current,
                }
            })
            .collect();
        (members, topics)
    }

    /// Every partition of a subscribed topic goes to exactly one member
    /// subscribed to it; nothing else is assigned.
    fn check_complete(
        members: &[MemberSpec],
        topics: &BTreeMap<String, u32>,
        result: &BTreeMap<MemberId, Assignment>,
    ) {
        assert_eq!(result.len(), members.len());
        for (topic, &n) in topics {
            let subscribed = members.iter().any(|m| m.subscription.contains(topic));
            for p in 0..n {
                let owners: Vec<&MemberId> = result
                    .iter()
                    .filter(|(_, a)| a.get(topic).is_some_and(|s| s.contains(&p)))
                    .map(|(id, _)| id)
                    .collect();
                assert_eq!(
                    owners.len(),
                    usize::from(subscribed),
                    "{topic}-{p}: {owners:?}"
                );
            }
        }
        for (id, assignment) in result {
            let spec = members.iter().find(|m| &m.id == id).expect("known member");
            for (topic, partitions) in assignment {
                assert!(
                    spec.subscription.contains(topic),
                    "{id} got unsubscribed {topic}"
                );
                let n = topics.get(topic).copied().unwrap_or(0);
                assert!(
                    partitions.iter().all(|&p| p < n),
                    "{id} got missing {topic}"
                );
            }
        }
    }

    fn spread(counts: impl Iterator<Item = usize>) -> usize {
        let counts: Vec<usize> = counts.collect();
        let max = counts.iter().max().copied().unwrap_or(0);
        let min = counts.iter().min().copied().unwrap_or(0);
        max - min
    }

    #[test]
    fn assignors_assign_every_partition_once_to_a_subscriber() {
        let mut rng = TestRng::new(0x5EED_0001);
        for _ in 0..CASES {
            let (members, topics) = random_group(&mut rng);
            for kind in AssignorKind::ALL {
                let result = kind.assign(&members, &topics);
                check_complete(&members, &topics, &result);
                // Deterministic: the same input gives the same output.
                assert_eq!(result, kind.assign(&members, &topics), "{kind}");
            }
        }
    }

    #[test]
    fn range_and_round_robin_balance_each_topic_when_subscriptions_match() {
        let mut rng = TestRng::new(0x5EED_0002);
        for _ in 0..CASES {
            let (mut members, topics) = random_group(&mut rng);
            let all: BTreeSet<String> = topics.keys().cloned().collect();
            for m in &mut members {
                m.subscription = all.clone();
            }
            for kind in [AssignorKind::Range, AssignorKind::RoundRobin] {
                let result = kind.assign(&members, &topics);
                for topic in topics.keys() {
                    let per_topic = result
                        .values()
                        .map(|a| a.get(topic).map_or(0, BTreeSet::len));
                    assert!(spread(per_topic) <= 1, "{kind} on {topic}: {result:?}");
                }
            }
            let result = AssignorKind::RoundRobin.assign(&members, &topics);
            assert!(spread(result.values().map(count)) <= 1, "{result:?}");
        }
    }

    #[test]
    fn sticky_is_balanced_among_members_with_the_same_subscription() {
        let mut rng = TestRng::new(0x5EED_0003);
        for _ in 0..CASES {
            let (members, topics) = random_group(&mut rng);
            let result = Sticky.assign(&members, &topics);
            let mut by_subscription: BTreeMap<&BTreeSet<String>, Vec<usize>> = BTreeMap::new();
            for m in &members {
                let held = result.get(&m.id).map_or(0, count);
                by_subscription
                    .entry(&m.subscription)
                    .or_default()
                    .push(held);
            }
            for (subscription, counts) in by_subscription {
                assert!(
                    spread(counts.iter().copied()) <= 1,
                    "{subscription:?}: {counts:?} in {result:?}"
                );
            }
        }
    }

    /// Fewest partitions any balanced assignment must take away from the
    /// members' valid current holdings (identical subscriptions): the
    /// members holding most keep the `total % n` larger shares.
    fn minimum_moves(current_counts: &[usize], total: usize) -> usize {
        let n = current_counts.len();
        let (quota, extra) = (total / n, total % n);
        let mut sorted = current_counts.to_vec();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        sorted
            .iter()
            .enumerate()
            .map(|(i, &held)| held.saturating_sub(quota + usize::from(i < extra)))
            .sum()
    }

    /// Partitions in `before` (a valid, disjoint assignment) that the
    /// member no longer has in `after`.
    fn moved(
        before: &BTreeMap<MemberId, Assignment>,
        after: &BTreeMap<MemberId, Assignment>,
    ) -> usize {
        before
            .iter()
            .map(|(id, a)| {
                let kept = after.get(id);
                a.iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (t, p)))
                    .filter(|(t, p)| !kept.and_then(|k| k.get(*t)).is_some_and(|s| s.contains(p)))
                    .count()
            })
            .sum()
    }

    #[test]
    fn sticky_moves_the_minimum_when_members_join_or_leave() {
        let mut rng = TestRng::new(0x5EED_0004);
        for _ in 0..CASES {
            let topics = topics(&[("a", rng.below(20) as u32), ("b", rng.below(20) as u32)]);
            let total: u32 = topics.values().sum();
            let subscription = ["a", "b"];
            let n = 1 + rng.below(6) as usize;
            let mut members: Vec<MemberSpec> = (0..n)
                .map(|i| member(&format!("m{i:02}"), &subscription, Assignment::new()))
                .collect();
            let before = Sticky.assign(&members, &topics);
            for m in &mut members {
                m.current = before.get(&m.id).cloned().unwrap_or_default();
            }
            // Someone joins, or (if more than one) someone random leaves.
            if rng.below(2) == 0 || members.len() == 1 {
                members.push(member("new", &subscription, Assignment::new()));
            } else {
                let gone = rng.below(members.len() as u64) as usize;
                members.remove(gone);
            }
            let after = Sticky.assign(&members, &topics);
            check_complete(&members, &topics, &after);
            let counts: Vec<usize> = members.iter().map(|m| count(&m.current)).collect();
            let survivors: BTreeMap<MemberId, Assignment> = members
                .iter()
                .map(|m| (m.id.clone(), m.current.clone()))
                .collect();
            assert_eq!(
                moved(&survivors, &after),
                minimum_moves(&counts, total as usize),
                "{before:?} -> {after:?}"
            );
        }
    }

    #[test]
    fn sticky_twelve_partitions_three_to_four_members_moves_exactly_three() {
        let topics = topics(&[("t", 12)]);
        let mut members: Vec<MemberSpec> = ["a", "b", "c"]
            .iter()
            .map(|id| member(id, &["t"], Assignment::new()))
            .collect();
        let three = Sticky.assign(&members, &topics);
        assert!(three.values().all(|a| count(a) == 4), "{three:?}");
        for m in &mut members {
            m.current = three.get(&m.id).cloned().unwrap_or_default();
        }
        members.push(member("d", &["t"], Assignment::new()));
        let four = Sticky.assign(&members, &topics);
        assert!(four.values().all(|a| count(a) == 3), "{four:?}");
        for id in ["a", "b", "c"] {
            let (old, new) = (&three[id]["t"], &four[id]["t"]);
            assert!(
                new.is_subset(old),
                "{id} gained partitions: {old:?} -> {new:?}"
            );
            assert_eq!(old.len() - new.len(), 1, "{id} lost exactly one");
        }
    }

    #[test]
    fn sticky_removing_a_member_moves_only_its_partitions() {
        let topics = topics(&[("t", 10), ("u", 5)]);
        let mut members: Vec<MemberSpec> = ["a", "b", "c", "d"]
            .iter()
            .map(|id| member(id, &["t", "u"], Assignment::new()))
            .collect();
        let before = Sticky.assign(&members, &topics);
        for m in &mut members {
            m.current = before.get(&m.id).cloned().unwrap_or_default();
        }
        let gone = members.remove(1);
        let after = Sticky.assign(&members, &topics);
        for m in &members {
            for (t, ps) in &m.current {
                assert!(
                    ps.is_subset(&after[&m.id][t]),
                    "{} lost {t} partitions",
                    m.id
                );
            }
        }
        assert!(count(&gone.current) > 0);
        assert!(spread(after.values().map(count)) <= 1, "{after:?}");
    }

    #[test]
    fn range_gives_contiguous_ranges_in_member_order() {
        let topics = topics(&[("t", 7)]);
        let members = vec![
            member("b", &["t"], Assignment::new()),
            member("a", &["t"], Assignment::new()),
            member("c", &["t"], Assignment::new()),
        ];
        let result = Range.assign(&members, &topics);
        let got = |id: &str| result[id]["t"].iter().copied().collect::<Vec<u32>>();
        assert_eq!(got("a"), [0, 1, 2]);
        assert_eq!(got("b"), [3, 4]);
        assert_eq!(got("c"), [5, 6]);
    }

    #[test]
    fn assignor_names_round_trip() {
        for kind in AssignorKind::ALL {
            assert_eq!(kind.name().parse::<AssignorKind>(), Ok(kind));
        }
        assert!("uniform".parse::<AssignorKind>().is_err());
        assert_eq!(AssignorKind::default(), AssignorKind::Sticky);
    }
}
