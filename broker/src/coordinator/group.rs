//! The consumer group state machine: membership, epochs, target
//! assignments and incremental reconciliation (Kafka's KIP-848 protocol),
//! with time passed in so that tests never sleep.
//!
//! # Model
//! - A group has a **group epoch**, bumped on every change that can alter
//!   the assignment: a member joins, leaves or is expired, a subscription
//!   or the preferred assignor changes, or the partition counts of the
//!   subscribed topics change (a topic appears, grows, shrinks, is
//!   deleted). Each bump recomputes the **target assignment** with the
//!   group's assignor, fed with the previous target so the sticky assignor
//!   can keep partitions in place.
//! - Each member **owns** the partitions it was given and has not yet
//!   released: `assigned` (it consumes them) plus `pending_revocation`
//!   (it was told to stop and has not confirmed yet).
//! - On each of its heartbeats a member is **reconciled** towards its
//!   target: partitions it owns but should not are moved to
//!   `pending_revocation` (the response's assignment leaves them out);
//!   they are released when a heartbeat reports `owned` without them, or
//!   when the member is expired. While a member has revocations pending
//!   its member epoch stays where it was; once it has none, its epoch
//!   advances to the target's epoch and it is given every target
//!   partition that no other member still owns. Partitions still owned
//!   elsewhere come on a later heartbeat, after their owner released them.
//!
//! A group whose last member leaves or expires is dropped from memory: its
//! committed offsets (in the offsets store) are all that remains of it.
//!
//! **Invariant**: no partition is owned by two members at any time. Members
//! a rebalance does not touch keep their partitions (and keep consuming)
//! throughout.
//!
//! # Epoch checks (KIP-848 semantics)
//! - Heartbeat with epoch 0: join (a known member id rejoining is fenced
//!   first: it releases everything and starts over). -1 (or -2, static
//!   leave, treated alike): leave.
//! - Heartbeat with a positive epoch: greater than the member's →
//!   [`ErrorCode::FencedMemberEpoch`]; smaller → also fenced, unless it is
//!   the member's previous epoch and its `owned` partitions are a subset of
//!   what it was assigned (the previous response was lost), in which case
//!   the full assignment is sent again.
//! - Offset commit: a member epoch greater than the member's →
//!   [`ErrorCode::FencedMemberEpoch`]; smaller → [`ErrorCode::StaleMemberEpoch`]
//!   (the member should heartbeat and retry); an unknown member →
//!   [`ErrorCode::UnknownMemberId`]. Epoch -1 is an admin/simple commit,
//!   accepted only while the group has no members.
//!   [`ErrorCode::IllegalGeneration`] belongs to Kafka's classic protocol
//!   and is not used.
//! - A member that does not heartbeat for its session timeout, or does not
//!   confirm a revocation within its rebalance timeout, is expired: it is
//!   removed and its partitions are released.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rill_protocol::wire::ErrorCode;

use super::assignor::{Assignment, Assignor, AssignorKind, MemberId, MemberSpec, UnknownAssignor};

/// Kafka's default `session.timeout.ms`.
pub const SESSION_TIMEOUT_MS_DEFAULT: u32 = 45_000;
/// Shortest session a member may ask for.
pub const SESSION_TIMEOUT_MS_MIN: u32 = 1_000;
/// Longest session a member may ask for (Kafka's
/// `group.consumer.max.session.timeout.ms`).
pub const SESSION_TIMEOUT_MS_MAX: u32 = 60_000;
/// How often members are told to heartbeat (Kafka's
/// `group.consumer.heartbeat.interval.ms`).
pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u32 = 5_000;
/// Time a member gets to confirm a revocation when it does not say (Kafka's
/// `max.poll.interval.ms` default).
pub const REBALANCE_TIMEOUT_MS_DEFAULT: u32 = 300_000;
/// Members per group: bounds the assignors' work and the describe answer.
pub const MEMBERS_PER_GROUP_MAX: usize = 1_000;

/// Member epoch that asks to join.
pub const JOIN_EPOCH: i32 = 0;
/// Member epoch that asks to leave.
pub const LEAVE_EPOCH: i32 = -1;
/// Member epoch of a static member leaving temporarily; static membership
/// is not implemented, so it is a plain leave.
pub const STATIC_LEAVE_EPOCH: i32 = -2;
/// Member epoch of an offset commit made outside group membership.
pub const ADMIN_COMMIT_EPOCH: i32 = -1;

const _: () = assert!(SESSION_TIMEOUT_MS_MIN <= SESSION_TIMEOUT_MS_DEFAULT);
const _: () = assert!(SESSION_TIMEOUT_MS_DEFAULT <= SESSION_TIMEOUT_MS_MAX);
const _: () = assert!(HEARTBEAT_INTERVAL_MS_DEFAULT < SESSION_TIMEOUT_MS_DEFAULT);

/// The coordinator's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// Session timeout when a member sends 0.
    pub session_timeout_ms_default: u32,
    pub session_timeout_ms_min: u32,
    pub session_timeout_ms_max: u32,
    pub heartbeat_interval_ms: u32,
    /// Revocation deadline when a member sends 0.
    pub rebalance_timeout_ms_default: u32,
    /// Assignor of a group whose members express no preference.
    pub default_assignor: AssignorKind,
    pub members_per_group_max: usize,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            session_timeout_ms_default: SESSION_TIMEOUT_MS_DEFAULT,
            session_timeout_ms_min: SESSION_TIMEOUT_MS_MIN,
            session_timeout_ms_max: SESSION_TIMEOUT_MS_MAX,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS_DEFAULT,
            rebalance_timeout_ms_default: REBALANCE_TIMEOUT_MS_DEFAULT,
            default_assignor: AssignorKind::default(),
            members_per_group_max: MEMBERS_PER_GROUP_MAX,
        }
    }
}

/// Why a group operation was refused; [`GroupError::code`] is the wire code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    #[error("the group id must be non-empty and free of NUL bytes")]
    InvalidGroupId,
    #[error("member {member_id:?} is not known in group {group_id:?}")]
    UnknownMember { group_id: String, member_id: String },
    #[error(
        "member epoch {received} is fenced (the member is at epoch {current}); rejoin with epoch 0"
    )]
    FencedEpoch { received: i32, current: i32 },
    #[error("member epoch {received} is stale (the member is at epoch {current})")]
    StaleEpoch { received: i32, current: i32 },
    #[error("invalid member epoch {0}")]
    InvalidMemberEpoch(i32),
    #[error("session timeout {requested_ms} ms is outside {min_ms}..={max_ms} ms")]
    InvalidSessionTimeout {
        requested_ms: u32,
        min_ms: u32,
        max_ms: u32,
    },
    #[error(transparent)]
    UnknownAssignor(#[from] UnknownAssignor),
    #[error("a joining member must send its subscribed topics")]
    MissingSubscription,
    #[error("group {group_id:?} already has {max} members, the limit")]
    GroupFull { group_id: String, max: usize },
    #[error("group {group_id:?} still has {members} members")]
    NonEmptyGroup { group_id: String, members: usize },
}

impl GroupError {
    /// The error code a response carries for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            GroupError::InvalidGroupId => ErrorCode::InvalidGroupId,
            GroupError::UnknownMember { .. } => ErrorCode::UnknownMemberId,
            GroupError::FencedEpoch { .. } => ErrorCode::FencedMemberEpoch,
            GroupError::StaleEpoch { .. } => ErrorCode::StaleMemberEpoch,
            GroupError::InvalidSessionTimeout { .. } => ErrorCode::InvalidSessionTimeout,
            GroupError::InvalidMemberEpoch(_)
            | GroupError::UnknownAssignor(_)
            | GroupError::MissingSubscription
            | GroupError::GroupFull { .. } => ErrorCode::InvalidRequest,
            GroupError::NonEmptyGroup { .. } => ErrorCode::NonEmptyGroup,
        }
    }
}

/// A heartbeat, in the coordinator's terms (the wire request without its
/// encoding details).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeartbeatRequest {
    pub group_id: String,
    /// Empty to join with a coordinator-chosen id.
    pub member_id: String,
    /// [`JOIN_EPOCH`], [`LEAVE_EPOCH`] or the epoch last received.
    pub member_epoch: i32,
    /// For describe output only.
    pub client_id: String,
    /// 0: the coordinator's default.
    pub rebalance_timeout_ms: u32,
    /// 0: the coordinator's default.
    pub session_timeout_ms: u32,
    /// `None`: unchanged (required when joining).
    pub subscribed_topics: Option<BTreeSet<String>>,
    /// `None`: unchanged (on join: no preference).
    pub assignor: Option<String>,
    /// The partitions the member holds now; `None`: unchanged.
    pub owned: Option<Assignment>,
}

/// The coordinator's answer to a successful heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub member_id: MemberId,
    /// The member's epoch now ([`LEAVE_EPOCH`] after a leave).
    pub member_epoch: i32,
    pub heartbeat_interval_ms: u32,
    /// The partitions the member may consume, when they changed since the
    /// last response; `None`: unchanged.
    pub assignment: Option<Assignment>,
}

/// A group's state as admin tools show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Some member has not yet converged to its target.
    Reconciling,
    /// Every member holds exactly its target at the group's epoch.
    Stable,
}

impl GroupState {
    pub const fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::Reconciling => "Reconciling",
            GroupState::Stable => "Stable",
        }
    }
}

/// One row of [`Coordinator::list_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub state: GroupState,
    pub members: usize,
}

/// A member in [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: MemberId,
    pub client_id: String,
    pub member_epoch: i32,
    pub assignment: Assignment,
    pub pending_revocation: Assignment,
}

/// [`Coordinator::describe_group`]'s answer (offsets and lag are added by
/// the caller from the offsets store and the logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub assignor: AssignorKind,
    pub group_epoch: i32,
    pub members: Vec<MemberDescription>,
}

/// Why a member left the group, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    Left,
    SessionExpired,
    RevocationTimedOut,
}

#[derive(Debug, Clone)]
struct Member {
    client_id: String,
    member_epoch: i32,
    previous_member_epoch: i32,
    subscription: BTreeSet<String>,
    assignor: Option<AssignorKind>,
    /// Owned and told so: the member consumes these.
    assigned: Assignment,
    /// Owned, told to stop, not yet confirmed.
    pending_revocation: Assignment,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    session_deadline: Instant,
    revocation_deadline: Option<Instant>,
    /// The assignment in the last response; `None` before the first.
    last_sent: Option<Assignment>,
}

#[derive(Debug, Clone)]
struct Group {
    group_epoch: i32,
    /// Epoch of `target`.
    assignment_epoch: i32,
    assignor: AssignorKind,
    members: BTreeMap<MemberId, Member>,
    target: BTreeMap<MemberId, Assignment>,
    /// Partition counts of the subscribed topics `target` was computed for.
    subscribed_counts: BTreeMap<String, u32>,
}

fn contains(a: &Assignment, topic: &str, partition: u32) -> bool {
    a.get(topic).is_some_and(|ps| ps.contains(&partition))
}

fn insert(a: &mut Assignment, topic: &str, partition: u32) {
    a.entry(topic.to_owned()).or_default().insert(partition);
}

fn remove(a: &mut Assignment, topic: &str, partition: u32) {
    if let Some(ps) = a.get_mut(topic) {
        ps.remove(&partition);
        if ps.is_empty() {
            a.remove(topic);
        }
    }
}

fn pairs(a: &Assignment) -> Vec<(String, u32)> {
    a.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |&p| (t.clone(), p)))
        .collect()
}

fn is_subset(small: &Assignment, big: &Assignment) -> bool {
    small
        .iter()
        .all(|(t, ps)| ps.is_empty() || big.get(t).is_some_and(|b| ps.is_subset(b)))
}

/// A group id is non-empty and has no NUL byte (the offsets store uses NUL
/// as its key separator).
pub fn valid_group_id(group_id: &str) -> bool {
    !group_id.is_empty() && !group_id.contains('\0')
}

fn millis(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

impl Group {
    fn new(assignor: AssignorKind) -> Self {
        Group {
            group_epoch: 0,
            assignment_epoch: 0,
            assignor,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            subscribed_counts: BTreeMap::new(),
        }
    }

    fn subscribed_counts(&self, topics: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
        let subscribed: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|m| m.subscription.iter())
            .collect();
        subscribed
            .into_iter()
            .filter_map(|t| topics.get(t).map(|&n| (t.clone(), n)))
            .collect()
    }

    /// The assignor most members prefer (ties: the first in name order);
    /// the default when none says.
    fn preferred_assignor(&self, default: AssignorKind) -> AssignorKind {
        let mut votes: BTreeMap<AssignorKind, usize> = BTreeMap::new();
        for kind in self.members.values().filter_map(|m| m.assignor) {
            *votes.entry(kind).or_default() += 1;
        }
        votes
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map_or(default, |(kind, _)| kind)
    }

    /// Bumps the group epoch and recomputes the target assignment.
    fn bump(&mut self, topics: &BTreeMap<String, u32>, default: AssignorKind) {
        self.group_epoch = self.group_epoch.saturating_add(1);
        self.assignor = self.preferred_assignor(default);
        self.subscribed_counts = self.subscribed_counts(topics);
        let specs: Vec<MemberSpec> = self
            .members
            .iter()
            .map(|(id, m)| MemberSpec {
                id: id.clone(),
                subscription: m.subscription.clone(),
                current: self.target.get(id).cloned().unwrap_or_default(),
            })
            .collect();
        self.target = self.assignor.assign(&specs, &self.subscribed_counts);
        self.assignment_epoch = self.group_epoch;
    }

    /// Bumps if the subscribed topics' partition counts changed.
    fn refresh_metadata(&mut self, topics: &BTreeMap<String, u32>, default: AssignorKind) -> bool {
        if self.members.is_empty() || self.subscribed_counts(topics) == self.subscribed_counts {
            return false;
        }
        self.bump(topics, default);
        true
    }

    fn owned_by_other(&self, me: &str, topic: &str, partition: u32) -> bool {
        self.members.iter().any(|(id, m)| {
            id != me
                && (contains(&m.assigned, topic, partition)
                    || contains(&m.pending_revocation, topic, partition))
        })
    }

    /// Moves `member_id` towards its target (see the module docs).
    fn reconcile(&mut self, member_id: &str, now: Instant) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let assignment_epoch = self.assignment_epoch;
        let Some(member) = self.members.get(member_id) else {
            return;
        };
        // Partitions to hand over once nothing is pending: target
        // partitions no other member owns.
        let mut grant: Vec<(String, u32)> = Vec::new();
        for (topic, p) in pairs(&target) {
            if !contains(&member.assigned, &topic, p) && !self.owned_by_other(member_id, &topic, p)
            {
                grant.push((topic, p));
            }
        }
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        for (topic, p) in pairs(&member.assigned) {
            if !contains(&target, &topic, p) {
                remove(&mut member.assigned, &topic, p);
                insert(&mut member.pending_revocation, &topic, p);
            }
        }
        // A partition the target gives back before it was released stays.
        for (topic, p) in pairs(&member.pending_revocation) {
            if contains(&target, &topic, p) {
                remove(&mut member.pending_revocation, &topic, p);
                insert(&mut member.assigned, &topic, p);
            }
        }
        if !member.pending_revocation.is_empty() {
            if member.revocation_deadline.is_none() {
                member.revocation_deadline = Some(now + member.rebalance_timeout);
            }
            return;
        }
        member.revocation_deadline = None;
        if member.member_epoch != assignment_epoch {
            member.previous_member_epoch = member.member_epoch;
            member.member_epoch = assignment_epoch;
        }
        for (topic, p) in grant {
            insert(&mut member.assigned, &topic, p);
        }
    }

    fn state(&self) -> GroupState {
        if self.members.is_empty() {
            return GroupState::Empty;
        }
        let converged = self.members.iter().all(|(id, m)| {
            m.member_epoch == self.assignment_epoch
                && m.pending_revocation.is_empty()
                && self.target.get(id).map_or(m.assigned.is_empty(), |t| {
                    is_subset(t, &m.assigned) && is_subset(&m.assigned, t)
                })
        });
        if converged {
            GroupState::Stable
        } else {
            GroupState::Reconciling
        }
    }
}

/// All groups of this broker: the pure state machine. The broker holds it
/// behind a lock and passes the current topic partition counts and time.
#[derive(Debug)]
pub struct Coordinator {
    config: CoordinatorConfig,
    groups: BTreeMap<String, Group>,
    /// Makes member ids unique across broker restarts.
    member_id_nonce: u64,
    next_member: u64,
}

impl Coordinator {
    pub fn new(config: CoordinatorConfig) -> Self {
        let member_id_nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Coordinator {
            config,
            groups: BTreeMap::new(),
            member_id_nonce,
            next_member: 0,
        }
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    fn new_member_id(&mut self) -> MemberId {
        self.next_member += 1;
        format!("{:016x}-{:08x}", self.member_id_nonce, self.next_member)
    }

    fn session_timeout(&self, requested_ms: u32) -> Result<Duration, GroupError> {
        let c = &self.config;
        if requested_ms == 0 {
            return Ok(millis(c.session_timeout_ms_default));
        }
        if !(c.session_timeout_ms_min..=c.session_timeout_ms_max).contains(&requested_ms) {
            return Err(GroupError::InvalidSessionTimeout {
                requested_ms,
                min_ms: c.session_timeout_ms_min,
                max_ms: c.session_timeout_ms_max,
            });
        }
        Ok(millis(requested_ms))
    }

    fn rebalance_timeout(&self, requested_ms: u32) -> Duration {
        match requested_ms {
            0 => millis(self.config.rebalance_timeout_ms_default),
            ms => millis(ms),
        }
    }

    /// Handles a ConsumerGroupHeartbeat: join, leave, or keep alive and
    /// reconcile. `topics` holds the partition count of every topic.
    pub fn heartbeat(
        &mut self,
        req: HeartbeatRequest,
        now: Instant,
        topics: &BTreeMap<String, u32>,
    ) -> Result<HeartbeatResponse, GroupError> {
        if !valid_group_id(&req.group_id) {
            return Err(GroupError::InvalidGroupId);
        }
        let assignor = req
            .assignor
            .as_deref()
            .map(str::parse::<AssignorKind>)
            .transpose()?;
        match req.member_epoch {
            JOIN_EPOCH => self.join(req, assignor, now, topics),
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => {
                let member_id = req.member_id.clone();
                self.leave(&req.group_id, &req.member_id, topics)?;
                Ok(HeartbeatResponse {
                    member_id,
                    member_epoch: LEAVE_EPOCH,
                    heartbeat_interval_ms: 0,
                    assignment: None,
                })
            }
            epoch if epoch > 0 => self.keep_alive(req, assignor, now, topics),
            epoch => Err(GroupError::InvalidMemberEpoch(epoch)),
        }
    }

    fn join(
        &mut self,
        req: HeartbeatRequest,
        assignor: Option<AssignorKind>,
        now: Instant,
        topics: &BTreeMap<String, u32>,
    ) -> Result<HeartbeatResponse, GroupError> {
        let subscription = req
            .subscribed_topics
            .clone()
            .ok_or(GroupError::MissingSubscription)?;
        let session_timeout = self.session_timeout(req.session_timeout_ms)?;
        let rebalance_timeout = self.rebalance_timeout(req.rebalance_timeout_ms);
        let member_id = if req.member_id.is_empty() {
            self.new_member_id()
        } else {
            req.member_id.clone()
        };
        let default = self.config.default_assignor;
        let max = self.config.members_per_group_max;
        let group = self
            .groups
            .entry(req.group_id.clone())
            .or_insert_with(|| Group::new(default));
        // A known member rejoining has given up what it held: fence the old
        // incarnation so its partitions are free again.
        let rejoin = group.members.remove(&member_id).is_some();
        if !rejoin && group.members.len() >= max {
            return Err(GroupError::GroupFull {
                group_id: req.group_id,
                max,
            });
        }
        group.members.insert(
            member_id.clone(),
            Member {
                client_id: req.client_id,
                member_epoch: JOIN_EPOCH,
                previous_member_epoch: JOIN_EPOCH,
                subscription,
                assignor,
                assigned: Assignment::new(),
                pending_revocation: Assignment::new(),
                session_timeout,
                rebalance_timeout,
                session_deadline: now + session_timeout,
                revocation_deadline: None,
                last_sent: None,
            },
        );
        tracing::info!(group = %req.group_id, member = %member_id, rejoin, "member joined");
        group.target.remove(&member_id);
        group.bump(topics, default);
        Ok(self.respond(&req.group_id, &member_id, now, None))
    }

    fn keep_alive(
        &mut self,
        req: HeartbeatRequest,
        assignor: Option<AssignorKind>,
        now: Instant,
        topics: &BTreeMap<String, u32>,
    ) -> Result<HeartbeatResponse, GroupError> {
        let default = self.config.default_assignor;
        let unknown = || GroupError::UnknownMember {
            group_id: req.group_id.clone(),
            member_id: req.member_id.clone(),
        };
        let group = self.groups.get_mut(&req.group_id).ok_or_else(unknown)?;
        let member = group.members.get_mut(&req.member_id).ok_or_else(unknown)?;
        let current = member.member_epoch;
        if req.member_epoch > current {
            return Err(GroupError::FencedEpoch {
                received: req.member_epoch,
                current,
            });
        }
        if req.member_epoch < current {
            // The last response may have been lost: accept the previous
            // epoch if the member holds nothing it was not given.
            let consistent = req.member_epoch == member.previous_member_epoch
                && req
                    .owned
                    .as_ref()
                    .is_some_and(|owned| is_subset(owned, &member.assigned));
            if !consistent {
                return Err(GroupError::FencedEpoch {
                    received: req.member_epoch,
                    current,
                });
            }
            member.last_sent = None;
        }
        member.session_deadline = now + member.session_timeout;
        if req.rebalance_timeout_ms != 0 {
            member.rebalance_timeout = millis(req.rebalance_timeout_ms);
        }
        let mut changed = false;
        if let Some(subscription) = req.subscribed_topics {
            if subscription != member.subscription {
                member.subscription = subscription;
                changed = true;
            }
        }
        if assignor.is_some() && assignor != member.assignor {
            member.assignor = assignor;
            changed = true;
        }
        // Revocations the member confirms by no longer listing them.
        if let Some(owned) = &req.owned {
            for (topic, p) in pairs(&member.pending_revocation) {
                if !contains(owned, &topic, p) {
                    remove(&mut member.pending_revocation, &topic, p);
                }
            }
        }
        if changed {
            group.bump(topics, default);
        } else {
            group.refresh_metadata(topics, default);
        }
        Ok(self.respond(&req.group_id, &req.member_id, now, req.owned.as_ref()))
    }

    /// Reconciles the member and builds its response.
    fn respond(
        &mut self,
        group_id: &str,
        member_id: &str,
        now: Instant,
        owned: Option<&Assignment>,
    ) -> HeartbeatResponse {
        let heartbeat_interval_ms = self.config.heartbeat_interval_ms;
        let mut response = HeartbeatResponse {
            member_id: member_id.to_owned(),
            member_epoch: LEAVE_EPOCH,
            heartbeat_interval_ms,
            assignment: None,
        };
        let Some(group) = self.groups.get_mut(group_id) else {
            return response;
        };
        group.reconcile(member_id, now);
        let Some(member) = group.members.get_mut(member_id) else {
            return response;
        };
        response.member_epoch = member.member_epoch;
        // Send the assignment when it changed, or when the member says it
        // holds something else (a lost response, or a revocation it has
        // not yet acted on).
        let stale_view = owned
            .is_some_and(|o| !(is_subset(o, &member.assigned) && is_subset(&member.assigned, o)));
        if member.last_sent.as_ref() != Some(&member.assigned) || stale_view {
            member.last_sent = Some(member.assigned.clone());
            response.assignment = Some(member.assigned.clone());
        }
        response
    }

    /// A clean leave (LeaveGroup, or a heartbeat with epoch -1): the
    /// member's partitions are released at once.
    pub fn leave(
        &mut self,
        group_id: &str,
        member_id: &str,
        topics: &BTreeMap<String, u32>,
    ) -> Result<(), GroupError> {
        let default = self.config.default_assignor;
        let removed = self
            .groups
            .get_mut(group_id)
            .and_then(|g| g.members.remove(member_id).map(|_| g));
        let Some(group) = removed else {
            return Err(GroupError::UnknownMember {
                group_id: group_id.to_owned(),
                member_id: member_id.to_owned(),
            });
        };
        tracing::info!(group = %group_id, member = %member_id, "member left");
        group.target.remove(member_id);
        group.bump(topics, default);
        self.forget_if_empty(group_id);
        Ok(())
    }

    /// A group without members keeps no state here (its committed offsets
    /// live in the offsets store), so transient groups do not pile up.
    fn forget_if_empty(&mut self, group_id: &str) {
        if self
            .groups
            .get(group_id)
            .is_some_and(|g| g.members.is_empty())
        {
            self.groups.remove(group_id);
        }
    }

    /// Removes members whose session expired or whose revocation deadline
    /// passed, releasing their partitions. Returns who was removed.
    pub fn expire_sessions(
        &mut self,
        now: Instant,
        topics: &BTreeMap<String, u32>,
    ) -> Vec<(String, MemberId, Departure)> {
        let default = self.config.default_assignor;
        let mut gone = Vec::new();
        for (group_id, group) in &mut self.groups {
            let expired: Vec<(MemberId, Departure)> = group
                .members
                .iter()
                .filter_map(|(id, m)| {
                    if m.session_deadline <= now {
                        Some((id.clone(), Departure::SessionExpired))
                    } else if m.revocation_deadline.is_some_and(|d| d <= now) {
                        Some((id.clone(), Departure::RevocationTimedOut))
                    } else {
                        None
                    }
                })
                .collect();
            if expired.is_empty() {
                continue;
            }
            for (id, why) in expired {
                tracing::warn!(group = %group_id, member = %id, reason = ?why, "member expired");
                group.members.remove(&id);
                group.target.remove(&id);
                gone.push((group_id.clone(), id, why));
            }
            group.bump(topics, default);
        }
        self.groups.retain(|_, g| !g.members.is_empty());
        gone
    }

    /// Rebalances every group whose subscribed topics changed partition
    /// count, appeared or disappeared. Returns the groups that rebalanced.
    pub fn on_topics_changed(&mut self, topics: &BTreeMap<String, u32>) -> Vec<String> {
        let default = self.config.default_assignor;
        self.groups
            .iter_mut()
            .filter_map(|(id, g)| g.refresh_metadata(topics, default).then(|| id.clone()))
            .collect()
    }

    /// Checks that an offset commit may proceed (see the module docs for
    /// the epoch rules). Committing for a group that does not exist yet is
    /// allowed with [`ADMIN_COMMIT_EPOCH`] only.
    pub fn validate_commit(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), GroupError> {
        if !valid_group_id(group_id) {
            return Err(GroupError::InvalidGroupId);
        }
        let group = self.groups.get(group_id);
        let members = group.map_or(0, |g| g.members.len());
        if member_epoch == ADMIN_COMMIT_EPOCH && members == 0 {
            return Ok(());
        }
        let member = group
            .and_then(|g| g.members.get(member_id))
            .ok_or_else(|| GroupError::UnknownMember {
                group_id: group_id.to_owned(),
                member_id: member_id.to_owned(),
            })?;
        let current = member.member_epoch;
        if member_epoch > current {
            return Err(GroupError::FencedEpoch {
                received: member_epoch,
                current,
            });
        }
        if member_epoch < current {
            return Err(GroupError::StaleEpoch {
                received: member_epoch,
                current,
            });
        }
        Ok(())
    }

    /// Number of members of a group (0 if unknown).
    pub fn member_count(&self, group_id: &str) -> usize {
        self.groups.get(group_id).map_or(0, |g| g.members.len())
    }

    /// Every group with members (groups known only by their committed
    /// offsets are added by the caller, as Empty).
    pub fn list_groups(&self) -> Vec<GroupListing> {
        self.groups
            .iter()
            .map(|(id, g)| GroupListing {
                group_id: id.clone(),
                state: g.state(),
                members: g.members.len(),
            })
            .collect()
    }

    pub fn describe_group(&self, group_id: &str) -> Option<GroupDescription> {
        let group = self.groups.get(group_id)?;
        Some(GroupDescription {
            group_id: group_id.to_owned(),
            state: group.state(),
            assignor: group.assignor,
            group_epoch: group.group_epoch,
            members: group
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    client_id: m.client_id.clone(),
                    member_epoch: m.member_epoch,
                    assignment: m.assigned.clone(),
                    pending_revocation: m.pending_revocation.clone(),
                })
                .collect(),
        })
    }

    /// Checks a group may be deleted: [`GroupError::NonEmptyGroup`] while
    /// it has members, else `Ok` (a group without members holds no state
    /// here; its committed offsets are the caller's to delete).
    pub fn delete_group(&mut self, group_id: &str) -> Result<(), GroupError> {
        let members = self.member_count(group_id);
        if members > 0 {
            return Err(GroupError::NonEmptyGroup {
                group_id: group_id.to_owned(),
                members,
            });
        }
        self.groups.remove(group_id);
        Ok(())
    }

    /// Partitions owned (assigned or pending revocation) by each member of
    /// a group: what the no-double-ownership invariant is about.
    pub fn owned_partitions(&self, group_id: &str) -> BTreeMap<MemberId, Assignment> {
        let Some(group) = self.groups.get(group_id) else {
            return BTreeMap::new();
        };
        group
            .members
            .iter()
            .map(|(id, m)| {
                let mut owned = m.assigned.clone();
                for (t, p) in pairs(&m.pending_revocation) {
                    insert(&mut owned, &t, p);
                }
                (id.clone(), owned)
            })
            .collect()
    }
}
