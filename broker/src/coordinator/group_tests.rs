//! Scenario tests of the group state machine: simulated consumers that
//! follow the protocol (apply each assignment, report what they own)
//! drive the real [`Coordinator`] with explicit time; after every step
//! no partition may be owned by two members, neither in the coordinator's
//! books nor in what the consumers actually hold.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::assignor::Assignment;
use super::group::*;
use super::test_rng::TestRng;

const GROUP: &str = "g";

/// One consumer as a client library would run it.
#[derive(Debug, Clone, Default)]
struct Consumer {
    id: String,
    epoch: i32,
    subscription: BTreeSet<String>,
    /// What the consumer currently consumes: its last received assignment.
    holds: Assignment,
    /// Revoked partitions it still consumes until its next heartbeat (a
    /// slow consumer finishing and committing its last records).
    lingering: Assignment,
}

struct Sim {
    coordinator: Coordinator,
    now: Instant,
    topics: BTreeMap<String, u32>,
    consumers: BTreeMap<String, Consumer>,
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

impl Sim {
    fn new(topics: &[(&str, u32)]) -> Self {
        Sim {
            coordinator: Coordinator::new(CoordinatorConfig::default()),
            now: Instant::now(),
            topics: topics.iter().map(|&(t, n)| (t.to_owned(), n)).collect(),
            consumers: BTreeMap::new(),
        }
    }

    /// Joins a consumer; returns its coordinator-chosen id.
    fn join(&mut self, subscription: &[&str]) -> String {
        let response = self
            .coordinator
            .heartbeat(
                HeartbeatRequest {
                    group_id: GROUP.to_owned(),
                    member_id: String::new(),
                    member_epoch: JOIN_EPOCH,
                    client_id: "test".to_owned(),
                    subscribed_topics: Some(set(subscription)),
                    ..HeartbeatRequest::default()
                },
                self.now,
                &self.topics,
            )
            .expect("join succeeds");
        let consumer = Consumer {
            id: response.member_id.clone(),
            epoch: response.member_epoch,
            subscription: set(subscription),
            holds: response.assignment.unwrap_or_default(),
            lingering: Assignment::new(),
        };
        self.consumers.insert(consumer.id.clone(), consumer);
        self.check();
        response.member_id
    }

    /// A regular heartbeat reporting what the consumer holds; applies the
    /// answer as a client does (drops revoked partitions at once).
    fn heartbeat(&mut self, id: &str) -> Result<HeartbeatResponse, GroupError> {
        let consumer = self.consumers.get(id).expect("known consumer").clone();
        let mut owned = consumer.holds.clone();
        for (t, ps) in &consumer.lingering {
            owned.entry(t.clone()).or_default().extend(ps);
        }
        let response = self.coordinator.heartbeat(
            HeartbeatRequest {
                group_id: GROUP.to_owned(),
                member_id: id.to_owned(),
                member_epoch: consumer.epoch,
                client_id: "test".to_owned(),
                owned: Some(owned),
                ..HeartbeatRequest::default()
            },
            self.now,
            &self.topics,
        );
        if let Ok(r) = &response {
            let c = self.consumers.get_mut(id).expect("known consumer");
            c.lingering.clear();
            c.epoch = r.member_epoch;
            if let Some(a) = &r.assignment {
                c.holds = a.clone();
            }
        }
        self.check();
        response
    }

    fn leave(&mut self, id: &str) {
        self.coordinator
            .leave(GROUP, id, &self.topics)
            .expect("known member leaves");
        self.consumers.remove(id);
        self.check();
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        for (_, id, _) in self.coordinator.expire_sessions(self.now, &self.topics) {
            // An expired consumer has lost its partitions (it finds out on
            // its next heartbeat); it no longer consumes.
            self.consumers.remove(&id);
        }
        self.check();
    }

    /// Heartbeats everyone until nothing changes; panics if that takes
    /// suspiciously long.
    fn settle(&mut self) {
        for _ in 0..10 {
            let ids: Vec<String> = self.consumers.keys().cloned().collect();
            for id in ids {
                self.heartbeat(&id).expect("heartbeat succeeds");
            }
            if self.state() == GroupState::Stable {
                return;
            }
        }
        panic!(
            "group did not settle: {:?}",
            self.coordinator.describe_group(GROUP)
        );
    }

    fn state(&self) -> GroupState {
        self.coordinator
            .describe_group(GROUP)
            .map_or(GroupState::Empty, |d| d.state)
    }

    fn holds(&self, id: &str) -> Assignment {
        self.consumers
            .get(id)
            .map(|c| c.holds.clone())
            .unwrap_or_default()
    }

    /// The invariant, on the coordinator's books and on the consumers.
    fn check(&self) {
        let mut seen: BTreeMap<(String, u32), String> = BTreeMap::new();
        for (member, owned) in self.coordinator.owned_partitions(GROUP) {
            for (t, ps) in owned {
                for p in ps {
                    if let Some(other) = seen.insert((t.clone(), p), member.clone()) {
                        panic!("{t}-{p} owned by {other} and {member}");
                    }
                }
            }
        }
        let mut consumed: BTreeMap<(String, u32), String> = BTreeMap::new();
        for c in self.consumers.values() {
            for (t, ps) in c.holds.iter().chain(&c.lingering) {
                for &p in ps {
                    if let Some(other) = consumed.insert((t.clone(), p), c.id.clone()) {
                        panic!("{t}-{p} consumed by {other} and {}", c.id);
                    }
                }
            }
        }
    }

    /// Every partition of a subscribed topic is consumed by one consumer.
    fn check_complete(&self) {
        let mut total = 0;
        for (t, &n) in &self.topics {
            if self.consumers.values().any(|c| c.subscription.contains(t)) {
                total += n as usize;
            }
        }
        let held: usize = self.consumers.values().map(|c| count(&c.holds)).sum();
        assert_eq!(held, total, "{:?}", self.consumers);
    }
}

#[test]
fn three_members_on_twelve_partitions_get_four_each() {
    let mut sim = Sim::new(&[("t", 12)]);
    let ids: Vec<String> = (0..3).map(|_| sim.join(&["t"])).collect();
    sim.settle();
    for id in &ids {
        assert_eq!(count(&sim.holds(id)), 4, "{id}");
    }
    sim.check_complete();
    let description = sim.coordinator.describe_group(GROUP).expect("exists");
    assert_eq!(description.group_epoch, 3);
    assert!(description.members.iter().all(|m| m.member_epoch == 3));
}

#[test]
fn fourth_member_gets_three_partitions_only_after_their_owners_release_them() {
    let mut sim = Sim::new(&[("t", 12)]);
    let old: Vec<String> = (0..3).map(|_| sim.join(&["t"])).collect();
    sim.settle();
    let before: BTreeMap<String, Assignment> =
        old.iter().map(|id| (id.clone(), sim.holds(id))).collect();

    let new = sim.join(&["t"]);
    assert_eq!(count(&sim.holds(&new)), 0, "everything is still owned");
    // The first old member is told to drop one partition...
    let first = &old[0];
    let response = sim.heartbeat(first).expect("heartbeat");
    let kept = response.assignment.expect("assignment changed");
    assert_eq!(count(&kept), 3);
    let revoked: Vec<u32> = before[first]["t"].difference(&kept["t"]).copied().collect();
    assert_eq!(revoked.len(), 1);
    let pending = sim
        .coordinator
        .describe_group(GROUP)
        .expect("exists")
        .members;
    let pending = &pending
        .iter()
        .find(|m| &m.member_id == first)
        .expect("member")
        .pending_revocation;
    assert_eq!(pending["t"].iter().copied().collect::<Vec<_>>(), revoked);
    // ...and the new member does not get it before the release.
    sim.heartbeat(&new).expect("heartbeat");
    assert!(!sim
        .holds(&new)
        .get("t")
        .is_some_and(|ps| ps.contains(&revoked[0])));
    // The release (owned without it) frees it for the new member.
    sim.heartbeat(first).expect("heartbeat");
    sim.heartbeat(&new).expect("heartbeat");
    assert!(sim.holds(&new)["t"].contains(&revoked[0]));

    sim.settle();
    sim.check_complete();
    let mut moved = 0;
    for id in &old {
        let now = &sim.holds(id)["t"];
        assert!(now.is_subset(&before[id]["t"]), "{id} only lost partitions");
        assert_eq!(
            before[id]["t"].len() - now.len(),
            1,
            "{id} lost exactly one"
        );
        moved += before[id]["t"].len() - now.len();
    }
    assert_eq!(moved, 3);
    assert_eq!(count(&sim.holds(&new)), 3);
}

#[test]
fn untouched_members_keep_consuming_through_a_rebalance() {
    let mut sim = Sim::new(&[("t", 4)]);
    let a = sim.join(&["t"]);
    let b = sim.join(&["t"]);
    sim.settle();
    let (held_a, held_b) = (sim.holds(&a), sim.holds(&b));
    // Four members on four partitions: a and b each give one away, and
    // never hold less than their final share meanwhile.
    let c = sim.join(&["t"]);
    let d = sim.join(&["t"]);
    for _ in 0..4 {
        for id in [&a, &b, &c, &d] {
            sim.heartbeat(id).expect("heartbeat");
            if id == &a || id == &b {
                assert!(count(&sim.holds(id)) >= 1);
            }
        }
    }
    assert_eq!(sim.state(), GroupState::Stable);
    assert!(is_sub(&sim.holds(&a), &held_a) && is_sub(&sim.holds(&b), &held_b));
    sim.check_complete();
}

fn is_sub(small: &Assignment, big: &Assignment) -> bool {
    small
        .iter()
        .all(|(t, ps)| big.get(t).is_some_and(|b| ps.is_subset(b)))
}

#[test]
fn silent_member_is_expired_after_its_session_and_its_partitions_move() {
    let mut sim = Sim::new(&[("t", 6)]);
    let a = sim.join(&["t"]);
    let b = sim.join(&["t"]);
    sim.settle();
    let held_b = sim.holds(&b);
    let session = Duration::from_millis(u64::from(SESSION_TIMEOUT_MS_DEFAULT));
    // a keeps heartbeating, b falls silent.
    let half = session / 2;
    sim.now += half;
    sim.heartbeat(&a).expect("heartbeat");
    sim.advance(half - Duration::from_millis(1));
    assert_eq!(sim.coordinator.member_count(GROUP), 2, "not yet expired");
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.coordinator.member_count(GROUP), 1);
    let response = sim.heartbeat(&a).expect("heartbeat");
    assert!(is_sub(&held_b, &response.assignment.expect("grew")));
    assert_eq!(count(&sim.holds(&a)), 6);
    // b comes back too late: it is unknown and must rejoin.
    let err = sim
        .coordinator
        .heartbeat(
            HeartbeatRequest {
                group_id: GROUP.to_owned(),
                member_id: b.clone(),
                member_epoch: 3,
                ..HeartbeatRequest::default()
            },
            sim.now,
            &sim.topics,
        )
        .unwrap_err();
    assert_eq!(err.code(), rill_protocol::wire::ErrorCode::UnknownMemberId);
}

#[test]
fn member_that_never_releases_is_removed_after_its_rebalance_timeout() {
    let mut sim = Sim::new(&[("t", 2)]);
    let a = sim.join(&["t"]);
    sim.settle();
    let b = sim.join(&["t"]);
    // a hears of the revocation but keeps reporting the partition.
    let stubborn = sim.holds(&a);
    sim.heartbeat(&a).expect("heartbeat");
    let timeout = Duration::from_millis(u64::from(REBALANCE_TIMEOUT_MS_DEFAULT));
    // Heartbeats well within the session, until the revocation deadline.
    let steps = 10;
    let step = timeout / steps;
    assert!(step < Duration::from_millis(u64::from(SESSION_TIMEOUT_MS_DEFAULT)));
    for _ in 0..steps {
        sim.advance(Duration::ZERO);
        assert_eq!(
            sim.coordinator.member_count(GROUP),
            2,
            "deadline not reached"
        );
        sim.now += step;
        sim.consumers.get_mut(&a).expect("a").holds = stubborn.clone();
        sim.heartbeat(&a).expect("heartbeat");
        sim.heartbeat(&b).expect("heartbeat");
        assert_eq!(count(&sim.holds(&b)), 0, "still owned by a");
    }
    let gone = sim.coordinator.expire_sessions(sim.now, &sim.topics);
    assert_eq!(
        gone,
        [(GROUP.to_owned(), a.clone(), Departure::RevocationTimedOut)]
    );
    sim.consumers.remove(&a);
    sim.heartbeat(&b).expect("heartbeat");
    assert_eq!(count(&sim.holds(&b)), 2);
}

#[test]
fn commits_are_checked_against_membership_and_epoch() {
    let mut sim = Sim::new(&[("t", 4)]);
    use rill_protocol::wire::ErrorCode;
    // An empty (or unknown) group takes admin commits only.
    assert_eq!(
        sim.coordinator
            .validate_commit(GROUP, "", ADMIN_COMMIT_EPOCH),
        Ok(())
    );
    let err = sim.coordinator.validate_commit(GROUP, "x", 1).unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownMemberId);

    let a = sim.join(&["t"]);
    sim.settle();
    let epoch = sim.consumers[&a].epoch;
    assert_eq!(sim.coordinator.validate_commit(GROUP, &a, epoch), Ok(()));
    let stale = sim
        .coordinator
        .validate_commit(GROUP, &a, epoch - 1)
        .unwrap_err();
    assert_eq!(stale.code(), ErrorCode::StaleMemberEpoch);
    let fenced = sim
        .coordinator
        .validate_commit(GROUP, &a, epoch + 1)
        .unwrap_err();
    assert_eq!(fenced.code(), ErrorCode::FencedMemberEpoch);
    let admin = sim
        .coordinator
        .validate_commit(GROUP, "", ADMIN_COMMIT_EPOCH)
        .unwrap_err();
    assert_eq!(
        admin.code(),
        ErrorCode::UnknownMemberId,
        "group has members"
    );
    let other = sim
        .coordinator
        .validate_commit(GROUP, "nobody", epoch)
        .unwrap_err();
    assert_eq!(other.code(), ErrorCode::UnknownMemberId);

    // A member with a revocation pending still commits at its old epoch
    // (it commits what it consumed before releasing).
    let b = sim.join(&["t"]);
    sim.heartbeat(&a).expect("heartbeat");
    let a_epoch = sim.consumers[&a].epoch;
    assert_eq!(a_epoch, epoch, "epoch holds while revoking");
    assert_eq!(sim.coordinator.validate_commit(GROUP, &a, a_epoch), Ok(()));
    sim.settle();
    assert!(sim.consumers[&a].epoch > a_epoch);
    assert!(sim
        .coordinator
        .validate_commit(GROUP, &b, sim.consumers[&b].epoch)
        .is_ok());
}

#[test]
fn heartbeat_epoch_rules_fence_and_recover_a_lost_response() {
    use rill_protocol::wire::ErrorCode;
    let mut sim = Sim::new(&[("t", 4)]);
    let a = sim.join(&["t"]);
    sim.settle();
    let epoch = sim.consumers[&a].epoch;
    let req = |epoch: i32, owned: Option<Assignment>| HeartbeatRequest {
        group_id: GROUP.to_owned(),
        member_id: a.clone(),
        member_epoch: epoch,
        owned,
        ..HeartbeatRequest::default()
    };
    let err = sim
        .coordinator
        .heartbeat(req(epoch + 1, None), sim.now, &sim.topics)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FencedMemberEpoch);
    // b joins; a's response telling it to revoke is "lost".
    let b = sim.join(&["t"]);
    let lost = sim
        .coordinator
        .heartbeat(req(epoch, Some(sim.holds(&a))), sim.now, &sim.topics);
    assert!(lost.expect("heartbeat").assignment.is_some());
    // a gets its partitions from the previous response again when it
    // repeats the old epoch with owned partitions it was given.
    sim.heartbeat(&a).expect("heartbeat");
    sim.settle();
    let now_epoch = sim.consumers[&a].epoch;
    let prev = sim
        .coordinator
        .heartbeat(req(epoch, Some(sim.holds(&a))), sim.now, &sim.topics);
    assert_eq!(
        prev.expect("previous epoch accepted").assignment,
        Some(sim.holds(&a))
    );
    // The previous epoch while claiming a partition it was never given
    // is fenced.
    let mut foreign = sim.holds(&a);
    for (t, ps) in sim.holds(&b) {
        foreign.entry(t).or_default().extend(ps);
    }
    let err = sim
        .coordinator
        .heartbeat(req(epoch, Some(foreign)), sim.now, &sim.topics);
    assert_eq!(err.unwrap_err().code(), ErrorCode::FencedMemberEpoch);
    assert!(now_epoch > epoch);
    sim.check();
}

#[test]
fn rejoin_with_the_same_id_releases_the_old_incarnation() {
    let mut sim = Sim::new(&[("t", 4)]);
    let a = sim.join(&["t"]);
    let b = sim.join(&["t"]);
    sim.settle();
    let response = sim
        .coordinator
        .heartbeat(
            HeartbeatRequest {
                group_id: GROUP.to_owned(),
                member_id: a.clone(),
                member_epoch: JOIN_EPOCH,
                subscribed_topics: Some(set(&["t"])),
                ..HeartbeatRequest::default()
            },
            sim.now,
            &sim.topics,
        )
        .expect("rejoin");
    assert_eq!(response.member_id, a);
    sim.consumers.get_mut(&a).expect("a").holds = response.assignment.unwrap_or_default();
    sim.consumers.get_mut(&a).expect("a").epoch = response.member_epoch;
    sim.check();
    sim.settle();
    assert_eq!(count(&sim.holds(&a)), 2);
    assert_eq!(count(&sim.holds(&b)), 2);
}

#[test]
fn growing_or_new_topics_trigger_a_rebalance() {
    let mut sim = Sim::new(&[("t", 2)]);
    let a = sim.join(&["t", "later"]);
    let b = sim.join(&["t", "later"]);
    sim.settle();
    let epoch = sim
        .coordinator
        .describe_group(GROUP)
        .expect("exists")
        .group_epoch;
    assert!(
        sim.coordinator.on_topics_changed(&sim.topics).is_empty(),
        "nothing changed"
    );
    sim.topics.insert("t".to_owned(), 4);
    sim.topics.insert("unrelated".to_owned(), 3);
    assert_eq!(
        sim.coordinator.on_topics_changed(&sim.topics),
        [GROUP.to_owned()]
    );
    sim.settle();
    sim.check_complete();
    assert_eq!(count(&sim.holds(&a)) + count(&sim.holds(&b)), 4);
    // A topic matching the subscription appears: seen on the next heartbeat.
    sim.topics.insert("later".to_owned(), 2);
    sim.settle();
    sim.check_complete();
    assert_eq!(count(&sim.holds(&a)) + count(&sim.holds(&b)), 6);
    let after = sim
        .coordinator
        .describe_group(GROUP)
        .expect("exists")
        .group_epoch;
    assert_eq!(after, epoch + 2);
}

#[test]
fn clean_leave_frees_partitions_at_once_and_delete_needs_an_empty_group() {
    use rill_protocol::wire::ErrorCode;
    let mut sim = Sim::new(&[("t", 3)]);
    let a = sim.join(&["t"]);
    let b = sim.join(&["t"]);
    sim.settle();
    let err = sim.coordinator.delete_group(GROUP).unwrap_err();
    assert_eq!(err.code(), ErrorCode::NonEmptyGroup);
    sim.leave(&a);
    sim.heartbeat(&b).expect("heartbeat");
    assert_eq!(count(&sim.holds(&b)), 3);
    let listing = sim.coordinator.list_groups();
    assert_eq!(listing.len(), 1);
    assert_eq!(
        (listing[0].members, listing[0].state),
        (1, GroupState::Stable)
    );
    sim.leave(&b);
    assert_eq!(sim.state(), GroupState::Empty);
    assert!(
        sim.coordinator.describe_group(GROUP).is_none(),
        "no state kept"
    );
    assert!(sim.coordinator.list_groups().is_empty());
    assert_eq!(sim.coordinator.delete_group(GROUP), Ok(()));
}

#[test]
fn bad_requests_are_refused_with_their_codes() {
    use rill_protocol::wire::ErrorCode;
    let mut c = Coordinator::new(CoordinatorConfig::default());
    let topics = BTreeMap::new();
    let now = Instant::now();
    let join = |group: &str, session_ms: u32, assignor: Option<&str>| HeartbeatRequest {
        group_id: group.to_owned(),
        member_epoch: JOIN_EPOCH,
        session_timeout_ms: session_ms,
        subscribed_topics: Some(set(&["t"])),
        assignor: assignor.map(str::to_owned),
        ..HeartbeatRequest::default()
    };
    let code = |r: Result<HeartbeatResponse, GroupError>| r.map(|_| ()).unwrap_err().code();
    assert_eq!(
        code(c.heartbeat(join("", 0, None), now, &topics)),
        ErrorCode::InvalidGroupId
    );
    assert_eq!(
        code(c.heartbeat(join("g", SESSION_TIMEOUT_MS_MIN - 1, None), now, &topics)),
        ErrorCode::InvalidSessionTimeout
    );
    assert_eq!(
        code(c.heartbeat(join("g", 0, Some("uniform")), now, &topics)),
        ErrorCode::InvalidRequest
    );
    let mut no_subscription = join("g", 0, None);
    no_subscription.subscribed_topics = None;
    assert_eq!(
        code(c.heartbeat(no_subscription, now, &topics)),
        ErrorCode::InvalidRequest
    );
    let mut bad_epoch = join("g", 0, None);
    bad_epoch.member_epoch = -3;
    assert_eq!(
        code(c.heartbeat(bad_epoch, now, &topics)),
        ErrorCode::InvalidRequest
    );
    // The shortest allowed session works, and expires on time.
    let r = c
        .heartbeat(
            join("g", SESSION_TIMEOUT_MS_MIN, Some("range")),
            now,
            &topics,
        )
        .expect("join");
    let later = now + Duration::from_millis(u64::from(SESSION_TIMEOUT_MS_MIN));
    let gone = c.expire_sessions(later, &topics);
    assert_eq!(
        gone,
        [("g".to_owned(), r.member_id, Departure::SessionExpired)]
    );
}

#[test]
fn group_uses_the_assignor_its_members_prefer() {
    let mut c = Coordinator::new(CoordinatorConfig::default());
    let topics: BTreeMap<String, u32> = [("t".to_owned(), 3)].into_iter().collect();
    let now = Instant::now();
    for assignor in [Some("range"), Some("range"), None] {
        c.heartbeat(
            HeartbeatRequest {
                group_id: GROUP.to_owned(),
                member_epoch: JOIN_EPOCH,
                subscribed_topics: Some(set(&["t"])),
                assignor: assignor.map(str::to_owned),
                ..HeartbeatRequest::default()
            },
            now,
            &topics,
        )
        .expect("join");
    }
    let d = c.describe_group(GROUP).expect("exists");
    assert_eq!(d.assignor, super::AssignorKind::Range);
    assert_eq!(d.members.len(), 3);
}

/// Seeded random churn: joins, leaves, heartbeats (some delaying their
/// release), subscription changes, topic growth and silence long enough to
/// expire; the invariant is checked after every single event, and in the
/// end the group converges to a complete assignment.
#[test]
fn random_churn_never_double_assigns() {
    for seed in 0..24u64 {
        let mut rng = TestRng::new(0xC0FF_EE00 + seed);
        let mut sim = Sim::new(&[("a", 5), ("b", 7)]);
        let subscriptions: [&[&str]; 3] = [&["a"], &["b"], &["a", "b"]];
        for _ in 0..300 {
            let ids: Vec<String> = sim.consumers.keys().cloned().collect();
            let pick = |rng: &mut TestRng| ids.get(rng.below(ids.len() as u64) as usize).cloned();
            match rng.below(20) {
                0..=2 if ids.len() < 8 => {
                    let s = subscriptions[rng.below(3) as usize];
                    sim.join(s);
                }
                3 => {
                    if let Some(id) = pick(&mut rng) {
                        sim.leave(&id);
                    }
                }
                4 => {
                    // A consumer slow to release: it keeps consuming what
                    // this heartbeat revokes until its next one.
                    if let Some(id) = pick(&mut rng) {
                        let before = sim.holds(&id);
                        let _ = sim.heartbeat(&id);
                        let c = sim.consumers.get_mut(&id).expect("known");
                        for (t, ps) in before {
                            let kept = c.holds.get(&t).cloned().unwrap_or_default();
                            c.lingering
                                .entry(t)
                                .or_default()
                                .extend(ps.difference(&kept));
                        }
                        sim.check();
                    }
                }
                5 => {
                    if let Some(id) = pick(&mut rng) {
                        let s = subscriptions[rng.below(3) as usize];
                        let c = sim.consumers.get_mut(&id).expect("known");
                        c.subscription = set(s);
                        let req = HeartbeatRequest {
                            group_id: GROUP.to_owned(),
                            member_id: id.clone(),
                            member_epoch: c.epoch,
                            subscribed_topics: Some(set(s)),
                            owned: Some(c.holds.clone()),
                            ..HeartbeatRequest::default()
                        };
                        if let Ok(r) = sim.coordinator.heartbeat(req, sim.now, &sim.topics) {
                            let c = sim.consumers.get_mut(&id).expect("known");
                            c.epoch = r.member_epoch;
                            if let Some(a) = r.assignment {
                                c.holds = a;
                            }
                        }
                        sim.check();
                    }
                }
                6 => {
                    let topic = if rng.below(2) == 0 { "a" } else { "b" };
                    if let Some(n) = sim.topics.get_mut(topic) {
                        *n += 1;
                    }
                    let topics = sim.topics.clone();
                    sim.coordinator.on_topics_changed(&topics);
                    sim.check();
                }
                7 => {
                    // Everyone but one random consumer heartbeats, then a
                    // session's worth of time passes: that one expires.
                    let silent = pick(&mut rng);
                    sim.now += Duration::from_millis(u64::from(SESSION_TIMEOUT_MS_DEFAULT) / 2);
                    for id in ids.iter().filter(|id| Some(*id) != silent.as_ref()) {
                        let _ = sim.heartbeat(id);
                    }
                    sim.advance(Duration::from_millis(
                        u64::from(SESSION_TIMEOUT_MS_DEFAULT) / 2,
                    ));
                }
                _ => {
                    if let Some(id) = pick(&mut rng) {
                        sim.heartbeat(&id).expect("live member heartbeats");
                    }
                }
            }
        }
        if !sim.consumers.is_empty() {
            sim.settle();
            sim.check_complete();
        }
    }
}

#[test]
fn group_size_is_bounded() {
    use rill_protocol::wire::ErrorCode;
    let config = CoordinatorConfig {
        members_per_group_max: 2,
        ..CoordinatorConfig::default()
    };
    let mut c = Coordinator::new(config);
    let topics = BTreeMap::new();
    let join = || HeartbeatRequest {
        group_id: GROUP.to_owned(),
        member_epoch: JOIN_EPOCH,
        subscribed_topics: Some(set(&["t"])),
        ..HeartbeatRequest::default()
    };
    let now = Instant::now();
    let first = c.heartbeat(join(), now, &topics).expect("first joins");
    c.heartbeat(join(), now, &topics).expect("second joins");
    let err = c.heartbeat(join(), now, &topics).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
    assert_eq!(c.member_count(GROUP), 2);
    // A member already in the group may still rejoin.
    let mut rejoin = join();
    rejoin.member_id = first.member_id;
    c.heartbeat(rejoin, now, &topics)
        .expect("rejoin of a known member");
    assert_eq!(c.member_count(GROUP), 2);
}
