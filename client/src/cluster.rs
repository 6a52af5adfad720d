//! The client's view of the cluster: where each broker node is, and which
//! node leads each partition (Kafka's metadata cache).
//!
//! Only a partition's leader takes its Produce requests and serves its
//! Fetch and ListOffsets, so every client that writes or reads partitions
//! asks this cache where to send them. One [`Cluster`] is shared by the
//! parts of one client (a producer's sender and its answer tasks, a
//! consumer's fetches and seeks). It owns:
//!
//! - node id → `host:port`, from the brokers of the last Metadata answer
//!   (the broker's advertised address, Kafka's `advertised.listeners`);
//! - (topic, partition) → leader node and leader epoch. A leader with an
//!   epoch older than one already seen for the partition is ignored: that
//!   answer came from a broker that has not heard of the newer leader yet;
//! - topic → partition count, or the error the broker gave for the topic;
//! - one reconnecting link per node and [`LinkKind`], opened on first use;
//! - the bootstrap link (Kafka's `bootstrap.servers`), used for the first
//!   Metadata request and whenever no known node answers.
//!
//! # Refreshes
//! A refresh asks one broker (a node with an open connection first, then
//! the other known nodes, then the bootstrap list) for the metadata of
//! every topic this client has used. Refreshes run one at a time and are
//! coalesced: a caller that asked while another refresh was waiting or
//! under way takes the result of the next one that started after it asked.
//! A refresh asked for because something failed (a leader refused a
//! request, a connection broke) is paced: it starts no sooner than
//! `retry_backoff` after the previous refresh; after
//! [`FAST_REFRESHES`] refreshes in a row that did not help (one failed,
//! or left a partition of a used topic without a leader) that pause
//! doubles with each further one, up to `retry_backoff_max` (Kafka's
//! `retry.backoff.ms` and `retry.backoff.max.ms`). The first ones stay
//! fast because a leader election, the usual reason, takes a few hundred
//! milliseconds: doubling from the first would find the new leader up to
//! half a second late (librdkafka's fast leader query does the same). A
//! topic used for the
//! first time is looked up at once. Every refresh is logged (debug) with
//! its reason.
//!
//! Callers that cannot wait inline (the producer's sender plans under a
//! lock) ask for a leader with [`Cluster::want_leader`]: a background task
//! refreshes, paced, until every wanted partition has a leader, and each
//! refresh bumps the [`Cluster::subscribe`] counter so waiters look again.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rill_protocol::wire::{ErrorCode, MetadataRequest, MetadataResponse};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::connection::{BrokerLink, Connection, ConnectionConfig};
use crate::error::{ClientError, Result};

/// Unhelpful refreshes in a row paced at `retry_backoff` before the pause
/// starts doubling (module docs): a second at the default 100 ms.
pub(crate) const FAST_REFRESHES: u32 = 10;

/// Which of a node's links a request travels on. A consumer's long-polling
/// fetches get their own, so a ListOffsets never waits behind one
/// (responses come back in request order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum LinkKind {
    Main,
    Fetch,
}

/// A partition's leader as the last Metadata answer named it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leader {
    pub(crate) node: i32,
    pub(crate) epoch: u32,
}

/// Why a refresh is asked for: logged with it, and whether it is paced.
#[derive(Debug, Clone)]
pub(crate) struct Reason {
    why: String,
    paced: bool,
}

impl Reason {
    /// A topic used for the first time (or whose partition count is
    /// stale): looked up at once.
    pub(crate) fn first_use(topic: &str) -> Reason {
        Reason {
            why: format!("first use of topic {topic}"),
            paced: false,
        }
    }

    /// Something failed: paced (module docs).
    pub(crate) fn failure(why: impl Into<String>) -> Reason {
        Reason {
            why: why.into(),
            paced: true,
        }
    }
}

/// Whether `error` means the request should go to a (possibly) new leader
/// after a metadata refresh: the leader refused it as not the leader (or
/// not yet, or not with enough replicas, or not in time), or the
/// connection to it failed.
pub(crate) fn is_leader_error(error: &ClientError) -> bool {
    match error {
        ClientError::Broker { code, .. } => matches!(
            code,
            ErrorCode::NotLeaderOrFollower
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::FencedLeaderEpoch
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::RequestTimedOut
                | ErrorCode::UnknownTopicOrPartition
        ),
        ClientError::Connect { .. }
        | ClientError::Io(_)
        | ClientError::ConnectionClosed
        | ClientError::Timeout { .. }
        | ClientError::CorrelationMismatch { .. } => true,
        _ => false,
    }
}

/// Whether `error` is the broker saying the node is not (or no longer)
/// the partition's leader: the cached leader is wrong, and a request is
/// better held until a refresh names the right one. Other leader errors
/// (a broken connection, a timeout, too few in-sync replicas) leave the
/// cached leader in place while a refresh runs: the next attempt goes
/// where the cache says then.
pub(crate) fn is_not_leader(error: &ClientError) -> bool {
    matches!(
        error.code(),
        Some(
            ErrorCode::NotLeaderOrFollower
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::FencedLeaderEpoch
                | ErrorCode::UnknownTopicOrPartition
        )
    )
}

/// What the last Metadata answer said about a topic.
#[derive(Debug, Clone, Copy)]
enum TopicState {
    Partitions(u32),
    Error(ErrorCode),
}

type PartitionKey = (Arc<str>, u32);

#[derive(Default)]
struct State {
    brokers: HashMap<i32, String>,
    links: HashMap<(i32, LinkKind), Arc<BrokerLink>>,
    leaders: HashMap<PartitionKey, Leader>,
    /// Highest leader epoch seen per partition; kept when its leader is
    /// forgotten, so an older leader is not taken back.
    epochs: HashMap<PartitionKey, u32>,
    topics: HashMap<Arc<str>, TopicState>,
    /// Topics every refresh asks for: those this client has used.
    interest: BTreeSet<Arc<str>>,
    /// Partitions someone waits for a leader of (background refresh).
    wanted: BTreeSet<PartitionKey>,
    /// Why the first of `wanted` was asked for, for the log.
    wanted_reason: Option<String>,
    /// A background refresh task runs.
    background: bool,
    /// Refreshes started so far; a refresh's number is this after it
    /// started.
    started: u64,
    /// Number and outcome of the last refresh that finished.
    finished: Option<(u64, Result<()>)>,
    /// Refreshes that got an answer.
    answered: u64,
    closed: bool,
}

/// When the next paced refresh may start.
#[derive(Debug, Default)]
struct Pacing {
    last: Option<Instant>,
    /// Refreshes in a row that did not help.
    unhelpful: u32,
}

/// The metadata cache and the links to the cluster's nodes (module docs).
pub(crate) struct Cluster {
    config: ConnectionConfig,
    bootstrap: BrokerLink,
    retry_backoff: Duration,
    retry_backoff_max: Duration,
    state: Mutex<State>,
    /// Held for the whole of a refresh: one round trip at a time.
    refreshing: tokio::sync::Mutex<Pacing>,
    /// Bumped after every refresh, answered or not.
    updated: watch::Sender<u64>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Cluster")
            .field("brokers", &state.brokers)
            .field("leaders", &state.leaders.len())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to the bootstrap list once now, so that a wrong address or
    /// a version mismatch is reported at construction. No metadata is
    /// asked for until a topic is used.
    pub(crate) async fn connect(
        bootstrap: &str,
        config: ConnectionConfig,
        retry_backoff: Duration,
        retry_backoff_max: Duration,
    ) -> Result<Arc<Cluster>> {
        let link = BrokerLink::connect(bootstrap, config.clone()).await?;
        Ok(Arc::new(Cluster {
            config,
            bootstrap: link,
            retry_backoff,
            retry_backoff_max: retry_backoff_max.max(retry_backoff),
            state: Mutex::new(State::default()),
            refreshing: tokio::sync::Mutex::new(Pacing::default()),
            updated: watch::Sender::new(0),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The link over the bootstrap list: for requests any broker answers
    /// (topic and group administration).
    pub(crate) fn bootstrap(&self) -> &BrokerLink {
        &self.bootstrap
    }

    /// A counter bumped after every refresh.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.updated.subscribe()
    }

    /// Refreshes that got an answer so far.
    pub(crate) fn refreshes(&self) -> u64 {
        self.lock().answered
    }

    /// The partition's leader, if the cache knows one.
    pub(crate) fn leader(&self, topic: &str, partition: u32) -> Option<Leader> {
        let state = self.lock();
        let name = state.interest.get(topic)?;
        state.leaders.get(&(Arc::clone(name), partition)).copied()
    }

    /// The topic's partition count from the last answer: `None` if the
    /// topic was never looked up, the broker's error for it otherwise.
    pub(crate) fn partition_count(&self, topic: &str) -> Option<Result<u32>> {
        match self.lock().topics.get(topic)? {
            TopicState::Partitions(0) => Some(Err(ClientError::UnknownTopic(topic.to_owned()))),
            TopicState::Partitions(n) => Some(Ok(*n)),
            TopicState::Error(code) => Some(Err(ClientError::topic(*code, topic, None))),
        }
    }

    /// A request to `node` for the partition failed with a leader error:
    /// forgets the leader (if the cache still names `node`), so the next
    /// request waits for a refresh.
    pub(crate) fn leader_failed(&self, topic: &str, partition: u32, node: i32) {
        let mut state = self.lock();
        let Some(name) = state.interest.get(topic).cloned() else {
            return;
        };
        let key = (name, partition);
        if state.leaders.get(&key).is_some_and(|l| l.node == node) {
            state.leaders.remove(&key);
        }
    }

    /// The link of `kind` to `node`, created (not connected) on first use.
    pub(crate) fn link(&self, node: i32, kind: LinkKind) -> Result<Arc<BrokerLink>> {
        let mut state = self.lock();
        if let Some(link) = state.links.get(&(node, kind)) {
            return Ok(Arc::clone(link));
        }
        let addr = state
            .brokers
            .get(&node)
            .cloned()
            .ok_or_else(|| ClientError::Broker {
                code: ErrorCode::LeaderNotAvailable,
                topic: None,
                partition: None,
                message: Some(format!("broker node {node} is not in the metadata")),
            })?;
        let link = Arc::new(BrokerLink::lazy(addr, self.config.clone()));
        state.links.insert((node, kind), Arc::clone(&link));
        Ok(link)
    }

    /// A live connection of `kind` to `node`.
    pub(crate) async fn connection(&self, node: i32, kind: LinkKind) -> Result<Arc<Connection>> {
        self.link(node, kind)?.get().await
    }

    /// A connection to any broker, for requests any of them answers: a
    /// node already connected, then the other known nodes, then the
    /// bootstrap list.
    pub(crate) async fn any(&self) -> Result<Arc<Connection>> {
        let mut candidates: Vec<(bool, i32)> = {
            let state = self.lock();
            state
                .brokers
                .keys()
                .map(|&node| {
                    let connected = state
                        .links
                        .get(&(node, LinkKind::Main))
                        .is_some_and(|l| l.is_connected());
                    (!connected, node)
                })
                .collect()
        };
        candidates.sort_unstable();
        for (_, node) in candidates {
            match self.connection(node, LinkKind::Main).await {
                Ok(conn) => return Ok(conn),
                Err(e @ ClientError::NoCommonVersion { .. }) => return Err(e),
                Err(e) => debug!(node, error = %e, "known broker does not answer; trying the next"),
            }
        }
        self.bootstrap.get().await
    }

    /// Asks for `topics`' metadata (and that of every topic used before),
    /// paced and coalesced as the module docs say.
    pub(crate) async fn refresh(&self, topics: &[&str], reason: &Reason) -> Result<()> {
        let asked_after = {
            let mut state = self.lock();
            for topic in topics {
                if !state.interest.contains(*topic) {
                    state.interest.insert(Arc::from(*topic));
                }
            }
            state.started
        };
        let mut pacing = self.refreshing.lock().await;
        if let Some((number, outcome)) = &self.lock().finished {
            if *number > asked_after {
                return outcome.clone();
            }
        }
        if reason.paced {
            if let Some(last) = pacing.last {
                tokio::time::sleep_until(last + self.pause(pacing.unhelpful)).await;
            }
        }
        let (number, names) = {
            let mut state = self.lock();
            if state.closed {
                return Err(ClientError::Closed);
            }
            state.started += 1;
            let names: Vec<String> = state.interest.iter().map(|t| t.to_string()).collect();
            (state.started, names)
        };
        debug!(reason = %reason.why, topics = ?names, "refreshing metadata");
        let answer = match self.any().await {
            Ok(conn) => {
                conn.metadata(MetadataRequest {
                    topics: Some(names),
                })
                .await
            }
            Err(e) => Err(e),
        };
        pacing.last = Some(Instant::now());
        let outcome = match answer {
            Ok(response) => {
                let complete = self.apply(response);
                pacing.unhelpful = if complete {
                    0
                } else {
                    pacing.unhelpful.saturating_add(1)
                };
                Ok(())
            }
            Err(e) => {
                debug!(reason = %reason.why, error = %e, "metadata refresh failed");
                pacing.unhelpful = pacing.unhelpful.saturating_add(1);
                Err(e)
            }
        };
        self.lock().finished = Some((number, outcome.clone()));
        self.updated.send_modify(|n| *n = n.wrapping_add(1));
        outcome
    }

    /// The pause before a paced refresh after `unhelpful` unhelpful ones.
    fn pause(&self, unhelpful: u32) -> Duration {
        let doublings = unhelpful.saturating_sub(FAST_REFRESHES).min(16);
        self.retry_backoff
            .saturating_mul(1 << doublings)
            .min(self.retry_backoff_max)
    }

    /// Takes a Metadata answer into the cache; whether every partition of
    /// every used topic now has a leader.
    fn apply(&self, response: MetadataResponse) -> bool {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.answered += 1;
        if !response.brokers.is_empty() {
            let brokers: HashMap<i32, String> = response
                .brokers
                .into_iter()
                .map(|b| (b.node_id, format_addr(&b.host, b.port)))
                .collect();
            // A node that moved or left: its links go (requests already
            // queued on them finish on their own).
            state
                .links
                .retain(|(node, _), _| brokers.get(node) == state.brokers.get(node));
            for (node, addr) in &brokers {
                if state.brokers.get(node) != Some(addr) {
                    debug!(node, addr = %addr, "broker address learned");
                }
            }
            state.brokers = brokers;
        }
        for topic in response.topics {
            let name = match state.interest.get(topic.name.as_str()) {
                Some(name) => Arc::clone(name),
                None => Arc::from(topic.name.as_str()),
            };
            if topic.error != ErrorCode::None {
                state
                    .topics
                    .insert(Arc::clone(&name), TopicState::Error(topic.error));
                state.leaders.retain(|(t, _), _| *t != name);
                state.wanted.retain(|(t, _)| *t != name);
                continue;
            }
            let count = u32::try_from(topic.partitions.len()).unwrap_or(u32::MAX);
            state
                .topics
                .insert(Arc::clone(&name), TopicState::Partitions(count));
            for p in topic.partitions {
                let key = (Arc::clone(&name), p.partition);
                let known = state.epochs.get(&key).copied();
                if p.error != ErrorCode::None
                    || p.leader < 0
                    || !state.brokers.contains_key(&p.leader)
                {
                    state.leaders.remove(&key);
                    continue;
                }
                if known.is_some_and(|e| e > p.leader_epoch) {
                    debug!(topic = %name, partition = p.partition, epoch = p.leader_epoch, known = ?known, "ignoring a leader older than one already seen");
                    continue;
                }
                let leader = Leader {
                    node: p.leader,
                    epoch: p.leader_epoch,
                };
                if state.leaders.insert(key.clone(), leader) != Some(leader) {
                    debug!(topic = %name, partition = p.partition, node = leader.node, epoch = leader.epoch, "partition leader learned");
                }
                state.epochs.insert(key, p.leader_epoch);
            }
        }
        let leaders = &state.leaders;
        state.wanted.retain(|key| !leaders.contains_key(key));
        state
            .interest
            .iter()
            .all(|topic| match state.topics.get(topic) {
                Some(TopicState::Partitions(n)) => {
                    (0..*n).all(|p| leaders.contains_key(&(Arc::clone(topic), p)))
                }
                _ => false,
            })
    }

    /// Asks the background task to refresh until the partition has a
    /// leader (module docs); the cache keeps what it knows meanwhile. `why`
    /// is logged with the refresh.
    pub(crate) fn want_leader(self: &Arc<Self>, topic: &Arc<str>, partition: u32, why: &str) {
        let spawn = {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            if !state.interest.contains(&**topic) {
                state.interest.insert(Arc::clone(topic));
            }
            state.wanted.insert((Arc::clone(topic), partition));
            if state.wanted_reason.is_none() {
                state.wanted_reason = Some(why.to_owned());
            }
            !std::mem::replace(&mut state.background, true)
        };
        if spawn {
            tokio::spawn(background_refresh(Arc::downgrade(self)));
        }
    }

    /// Drops every link; refreshes stop.
    pub(crate) async fn close(&self) {
        let links: Vec<Arc<BrokerLink>> = {
            let mut state = self.lock();
            state.closed = true;
            state.wanted.clear();
            state.links.drain().map(|(_, l)| l).collect()
        };
        for link in links {
            link.close().await;
        }
        self.bootstrap.close().await;
    }
}

/// `host:port`, with an IPv6 host in brackets.
pub(crate) fn format_addr(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Refreshes until no partition is wanted (or the cluster is dropped or
/// closed); each refresh is paced.
async fn background_refresh(cluster: Weak<Cluster>) {
    loop {
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        let reason = {
            let mut state = cluster.lock();
            if state.wanted.is_empty() || state.closed {
                state.background = false;
                return;
            }
            let why = state
                .wanted_reason
                .take()
                .unwrap_or_else(|| "partitions still without a leader".to_owned());
            Reason::failure(why)
        };
        if let Err(e) = cluster.refresh(&[], &reason).await {
            debug!(error = %e, "background metadata refresh failed; retrying");
        }
    }
}
