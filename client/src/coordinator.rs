//! Finding a consumer group's coordinator (Kafka's FindCoordinator).
//!
//! Only one broker keeps a group's members and committed offsets: its
//! coordinator. Every group request (heartbeats, commits, offset fetches,
//! group administration) goes there. [`Coordinators`] asks any broker
//! (through the client's metadata cache, [`Cluster::any`]) which broker
//! that is, keeps the answer per group, and keeps one reconnecting link
//! per coordinator address.
//!
//! When the coordinator answers `NotCoordinator`, `CoordinatorNotAvailable`
//! or `CoordinatorLoadInProgress`, or cannot be reached, the answer is
//! forgotten and the next request finds the coordinator again. Finds after
//! such a failure are paced: the first waits
//! [`COORDINATOR_RETRY_BACKOFF`] after the previous find, and the pause
//! doubles with every failure in a row up to
//! [`COORDINATOR_RETRY_BACKOFF_MAX`]; a request that succeeds resets it.
//! [`Coordinators::call`] retries one request this way up to a deadline.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rill_protocol::wire::{ErrorCode, FindCoordinatorRequest, COORDINATOR_KEY_GROUP};
use tokio::time::Instant;
use tracing::debug;

use crate::cluster::{format_addr, Cluster};
use crate::connection::{BrokerLink, Connection, ConnectionConfig};
use crate::error::{ClientError, Result};

/// Pause before the first find after a failure.
pub(crate) const COORDINATOR_RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between finds while failures go on.
pub(crate) const COORDINATOR_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A broker code that means "ask FindCoordinator again".
pub(crate) fn is_coordinator_code(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::CoordinatorLoadInProgress
    )
}

/// `code` if it means "ask FindCoordinator again" (for the `refused`
/// argument of [`Coordinators::call`]).
pub(crate) fn coordinator_code(code: ErrorCode) -> Option<ErrorCode> {
    is_coordinator_code(code).then_some(code)
}

/// Whether a failed group request should be sent again after finding the
/// coordinator anew: the broker is not (or not yet) the coordinator, or
/// the connection to it failed.
pub(crate) fn is_coordinator_error(error: &ClientError) -> bool {
    match error {
        ClientError::Broker { code, .. } => is_coordinator_code(*code),
        ClientError::Connect { .. }
        | ClientError::Io(_)
        | ClientError::ConnectionClosed
        | ClientError::Timeout { .. }
        | ClientError::CorrelationMismatch { .. } => true,
        _ => false,
    }
}

/// A coordinator as FindCoordinator named it.
#[derive(Debug, Clone)]
struct Found {
    node: i32,
    addr: String,
    link: Arc<BrokerLink>,
}

#[derive(Debug, Default)]
struct State {
    /// Group id → its coordinator.
    found: HashMap<String, Found>,
    /// Coordinator address → its link.
    links: HashMap<String, Arc<BrokerLink>>,
    /// Failures in a row (finds and requests): the pacing of the next find.
    failures: u32,
    last_find: Option<Instant>,
}

/// The coordinators of the groups one client talks to (module docs).
pub(crate) struct Coordinators {
    cluster: Arc<Cluster>,
    config: ConnectionConfig,
    state: Mutex<State>,
    /// Held for a whole find: one FindCoordinator at a time.
    finding: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Coordinators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        let found: HashMap<&str, (i32, &str)> = state
            .found
            .iter()
            .map(|(g, c)| (g.as_str(), (c.node, c.addr.as_str())))
            .collect();
        f.debug_struct("Coordinators")
            .field("found", &found)
            .finish_non_exhaustive()
    }
}

impl Coordinators {
    /// Finds coordinators through `cluster`; the links to them use
    /// `config`.
    pub(crate) fn new(cluster: Arc<Cluster>, config: ConnectionConfig) -> Coordinators {
        Coordinators {
            cluster,
            config,
            state: Mutex::new(State::default()),
            finding: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn known(&self, group: &str) -> Option<Arc<BrokerLink>> {
        self.lock().found.get(group).map(|f| Arc::clone(&f.link))
    }

    /// The pause before the next find after `failures` failures in a row.
    fn pause(failures: u32) -> Duration {
        COORDINATOR_RETRY_BACKOFF
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(COORDINATOR_RETRY_BACKOFF_MAX)
    }

    /// The link to `group`'s coordinator, asking FindCoordinator of any
    /// broker when it is not known (paced after failures).
    pub(crate) async fn link(&self, group: &str) -> Result<Arc<BrokerLink>> {
        if let Some(link) = self.known(group) {
            return Ok(link);
        }
        let _finding = self.finding.lock().await;
        // Found by another caller while this one waited.
        if let Some(link) = self.known(group) {
            return Ok(link);
        }
        let not_before = {
            let state = self.lock();
            match state.last_find {
                Some(last) if state.failures > 0 => Some(last + Self::pause(state.failures)),
                _ => None,
            }
        };
        if let Some(at) = not_before {
            tokio::time::sleep_until(at).await;
        }
        self.lock().last_find = Some(Instant::now());
        let request = FindCoordinatorRequest {
            key: group.to_owned(),
            key_type: COORDINATOR_KEY_GROUP,
        };
        let answer = match self.cluster.any().await {
            Ok(conn) => conn.find_coordinator(request).await,
            Err(e) => Err(e),
        };
        let failed = |e: ClientError| {
            let mut state = self.lock();
            state.failures = state.failures.saturating_add(1);
            debug!(group, error = %e, failures = state.failures, "finding the group coordinator failed");
            Err(e)
        };
        let resp = match answer {
            Ok(resp) => resp,
            Err(e) => return failed(e),
        };
        if resp.error != ErrorCode::None {
            return failed(ClientError::Broker {
                code: resp.error,
                topic: None,
                partition: None,
                message: Some(format!("finding the coordinator of group {group:?}")),
            });
        }
        let addr = format_addr(&resp.host, resp.port);
        let mut state = self.lock();
        let link = match state.links.get(&addr) {
            Some(link) => Arc::clone(link),
            None => {
                let link = Arc::new(BrokerLink::lazy(addr.clone(), self.config.clone()));
                state.links.insert(addr.clone(), Arc::clone(&link));
                link
            }
        };
        debug!(group, node = resp.node_id, addr = %addr, "group coordinator found");
        state.found.insert(
            group.to_owned(),
            Found {
                node: resp.node_id,
                addr,
                link: Arc::clone(&link),
            },
        );
        Ok(link)
    }

    /// A request to `group`'s coordinator over `link` failed with a
    /// coordinator error: the coordinator is forgotten (if it is still
    /// the one behind `link`) and the next find is paced.
    pub(crate) fn failed(&self, group: &str, link: &Arc<BrokerLink>, error: &ClientError) {
        let mut state = self.lock();
        if state
            .found
            .get(group)
            .is_some_and(|f| Arc::ptr_eq(&f.link, link))
        {
            state.found.remove(group);
        }
        state.failures = state.failures.saturating_add(1);
        debug!(group, error = %error, failures = state.failures, "group coordinator request failed; finding it again");
    }

    /// A request to a coordinator succeeded: finds are no longer paced.
    pub(crate) fn succeeded(&self) {
        self.lock().failures = 0;
    }

    /// Sends one request to `group`'s coordinator (`send` gets the
    /// connection). An answer for which `refused` names a code (use
    /// [`coordinator_code`]), a coordinator error or a connection failure
    /// makes it find the coordinator again and resend, until
    /// `give_up_after` has passed; then the last error is returned.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        group: &str,
        give_up_after: Duration,
        mut send: F,
        refused: impl Fn(&T) -> Option<ErrorCode>,
    ) -> Result<T>
    where
        F: FnMut(Arc<Connection>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        loop {
            let link = match self.link(group).await {
                Ok(link) => link,
                Err(e) if is_coordinator_error(&e) && started.elapsed() < give_up_after => continue,
                Err(e) => return Err(e),
            };
            let result = match link.get().await {
                Ok(conn) => send(conn).await,
                Err(e) => Err(e),
            };
            let result = result.and_then(|resp| match refused(&resp) {
                Some(code) => Err(ClientError::Broker {
                    code,
                    topic: None,
                    partition: None,
                    message: Some(format!("group {group:?}")),
                }),
                None => Ok(resp),
            });
            match result {
                Ok(resp) => {
                    self.succeeded();
                    return Ok(resp);
                }
                Err(e) if is_coordinator_error(&e) => {
                    self.failed(group, &link, &e);
                    if started.elapsed() >= give_up_after {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}
