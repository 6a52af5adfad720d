//! Starting and stopping a broker: [`Broker::start`] binds the client and
//! metrics listeners, opens the topics (running storage recovery), and spawns
//! the accept loop and the maintenance task; [`BrokerHandle`] stops them.
//!
//! Graceful shutdown, in order: stop accepting; tell every connection to stop
//! reading new requests (in-flight ones finish and are answered, long-poll
//! fetches return early); wait for the connections up to
//! `shutdown_timeout_ms`, aborting stragglers; stop maintenance; close every
//! log (flush, write indexes, clean-shutdown marker), then the consumer
//! offsets log.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rill_storage::io::{open_backend_with, BackendKind};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::connection;
use crate::coordinator::{GroupCoordinator, TopicView};
use crate::error::BrokerError;
use crate::metrics;
use crate::producer_ids::ProducerIdAllocator;
use crate::shared::Shared;
use crate::shutdown::stopped;
use crate::topics::{TopicRegistry, META_DIR};

/// How often every log's `tick` runs (interval fsync of idle logs, roll by
/// age) and the log end offset gauges are refreshed.
pub const TICK_INTERVAL: Duration = Duration::from_secs(1);
/// How often the group coordinator expires silent members and notices
/// topic changes. Well below the shortest session (1 s) so that expiry is
/// late by at most a quarter of it.
pub const GROUP_TICK_INTERVAL: Duration = Duration::from_millis(250);
/// Directory (under `data_dir`) of the committed offsets log. Not a valid
/// partition directory name (`<topic>-<n>`), so no topic can collide.
pub const CONSUMER_OFFSETS_DIR: &str = "__consumer_offsets";
/// Maintenance passes (about a second each) between checks that each
/// replicated partition is led by its preferred replica when that one is in
/// sync (Kafka checks every 300 s; a returning broker here takes its
/// leaderships back within about ten).
const PREFERRED_LEADER_CHECK_TICKS: u64 = 10;
/// Pause after a failed accept (typically EMFILE) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Namespace for [`Broker::start`].
#[derive(Debug)]
pub struct Broker;

/// A running broker.
#[derive(Debug)]
pub struct BrokerHandle {
    local_addr: SocketAddr,
    metrics_addr: SocketAddr,
    backend: BackendKind,
    shutdown_tx: watch::Sender<bool>,
    done_rx: watch::Receiver<bool>,
    main: Option<tokio::task::JoinHandle<()>>,
}

impl Broker {
    /// Binds both listeners, opens every topic under `data_dir`, and starts
    /// serving. Returns once the broker accepts connections.
    pub async fn start(config: BrokerConfig) -> Result<BrokerHandle, BrokerError> {
        config.validate()?;
        // Install the recorder before anything records.
        metrics::recorder_handle();
        let effective = config.to_toml().trim_end().replace('\n', ", ");
        tracing::info!(config = %effective, "starting broker");

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| BrokerError::Bind {
                    what: "client listener",
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| BrokerError::Bind {
            what: "client listener",
            addr: config.listen,
            source,
        })?;
        let metrics_listener =
            metrics::bind(config.metrics_addr)
                .await
                .map_err(|source| BrokerError::Bind {
                    what: "metrics endpoint",
                    addr: config.metrics_addr,
                    source,
                })?;
        let metrics_addr = metrics_listener
            .local_addr()
            .map_err(|source| BrokerError::Bind {
                what: "metrics endpoint",
                addr: config.metrics_addr,
                source,
            })?;

        let choice = config.io_backend.to_choice();
        let io_threads = config.io_threads;
        let io_direct = config.io_direct;
        let data_dir = config.data_dir.clone();
        let defaults = config
            .topic_defaults()
            .map_err(crate::ConfigError::Invalid)?;
        let default_partitions = config.num_partitions;
        let coordinator_config = config.coordinator_config();
        let clustered = config.peers.is_some();
        let (registry, groups, backend, producer_ids) = tokio::task::spawn_blocking(move || {
            if !clustered {
                crate::cluster::refuse_cluster_dir_without_peers(&data_dir)?;
            }
            let read_only = !check_writable(&data_dir)?;
            let backend =
                open_backend_with(choice, io_threads, io_direct).map_err(BrokerError::Backend)?;
            let kind = backend.kind();
            let offsets_dir = data_dir.join(CONSUMER_OFFSETS_DIR);
            let (groups, registry) = if read_only {
                (
                    GroupCoordinator::open_read_only(
                        &offsets_dir,
                        Arc::clone(&backend),
                        coordinator_config,
                    )?,
                    TopicRegistry::open_read_only(
                        &data_dir,
                        defaults,
                        default_partitions,
                        backend,
                    )?,
                )
            } else if clustered {
                // Topics come from the controller's metadata (see `cluster`).
                (
                    GroupCoordinator::open(&offsets_dir, Arc::clone(&backend), coordinator_config)?,
                    TopicRegistry::empty(&data_dir, defaults, default_partitions, backend),
                )
            } else {
                (
                    GroupCoordinator::open(&offsets_dir, Arc::clone(&backend), coordinator_config)?,
                    TopicRegistry::open(&data_dir, defaults, default_partitions, backend)?,
                )
            };
            ::metrics::gauge!(metrics::READ_ONLY).set(if read_only { 1.0 } else { 0.0 });
            let producer_ids = ProducerIdAllocator::open(&data_dir.join(META_DIR), read_only)?;
            Ok::<_, BrokerError>((registry, groups, kind, producer_ids))
        })
        .await
        .map_err(|e| BrokerError::Task(e.to_string()))??;
        ::metrics::gauge!(metrics::IO_BACKEND_INFO, "backend" => backend.as_str()).set(1.0);
        tracing::info!(backend = backend.as_str(), %local_addr, %metrics_addr, "broker listening");

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let broker_inflight_permits = connection::budget_permits(config.broker_inflight_bytes_max);
        let registry = Arc::new(registry);
        let cluster = match clustered {
            true if registry.is_read_only() => {
                return Err(BrokerError::Task(
                    "cluster mode needs a writable data directory".into(),
                ))
            }
            true => Some(Cluster::start(&config, &registry).await?),
            false => None,
        };
        if let Some(cluster) = &cluster {
            let client_addr = config
                .advertised_addr
                .clone()
                .unwrap_or_else(|| local_addr.to_string());
            tokio::spawn(Arc::clone(cluster).run(
                Arc::clone(&registry),
                client_addr,
                shutdown_rx.clone(),
            ));
        }
        let shared = Arc::new(Shared {
            cluster,
            registry,
            local_addr,
            shutdown: shutdown_rx.clone(),
            broker_inflight: Arc::new(Semaphore::new(broker_inflight_permits)),
            groups: Arc::new(groups),
            producer_ids,
            config,
        });

        let metrics_task = tokio::spawn(metrics::serve(metrics_listener, shutdown_rx.clone()));
        let main = tokio::spawn(run(shared, listener, metrics_task, done_tx));
        Ok(BrokerHandle {
            local_addr,
            metrics_addr,
            backend,
            shutdown_tx,
            done_rx,
            main: Some(main),
        })
    }
}

impl BrokerHandle {
    /// The address clients connect to (the real port when configured with 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the `/metrics` endpoint.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The storage I/O backend running.
    pub fn io_backend(&self) -> BackendKind {
        self.backend
    }

    /// Starts a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.shutdown_tx.send_replace(true);
    }

    /// Graceful shutdown; returns when every log is closed.
    pub async fn shutdown(mut self) {
        self.begin_shutdown();
        self.join().await;
    }

    /// Waits until the broker has stopped (after [`Self::begin_shutdown`],
    /// or a shutdown requested through another path).
    pub async fn wait(mut self) {
        self.join().await;
    }

    async fn join(&mut self) {
        if let Some(main) = self.main.take() {
            if let Err(e) = main.await {
                tracing::error!(error = %e, "broker task failed");
            }
        }
        let mut done = self.done_rx.clone();
        let _ = done.wait_for(|d| *d).await;
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        // A dropped handle stops the broker (in the background) instead of
        // leaking a listener.
        self.shutdown_tx.send_replace(true);
    }
}

async fn run(
    shared: Arc<Shared>,
    listener: TcpListener,
    metrics_task: tokio::task::JoinHandle<()>,
    done_tx: watch::Sender<bool>,
) {
    let maintenance = tokio::spawn(maintain(shared.clone()));
    let mut connections = JoinSet::new();
    let conn_ids = AtomicU64::new(0);
    let connection_slots = Arc::new(Semaphore::new(
        usize::try_from(shared.config.connections_max).unwrap_or(Semaphore::MAX_PERMITS),
    ));
    let mut shutdown = shared.shutdown.clone();
    // Paces accepts (no burst: `Delay` does not catch up missed ticks), so
    // a connection storm cannot crowd existing clients off the runtime.
    // (At rates above 10^9/s the period would round to 0, which `interval`
    // refuses: 1 ns is as good as unlimited.)
    let mut accept_pace = tokio::time::interval(
        (Duration::from_secs(1) / shared.config.connection_accept_rate_max.max(1))
            .max(Duration::from_nanos(1)),
    );
    accept_pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = accept_pace.tick() => {}
            _ = stopped(&mut shutdown) => break,
        }
        // Take a slot before accepting: at the limit, new connections wait
        // in the kernel's accept queue (backpressure) rather than being
        // accepted and dropped.
        let slot = tokio::select! {
            slot = connection_slots.clone().acquire_owned() => slot,
            _ = stopped(&mut shutdown) => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut shutdown) => break,
        };
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                let conn_id = conn_ids.fetch_add(1, Ordering::Relaxed);
                connections.spawn(connection::run(stream, peer, conn_id, shared.clone(), slot));
            }
            Err(e) => {
                ::metrics::counter!(metrics::CONNECTION_ERRORS_TOTAL, "reason" => "accept")
                    .increment(1);
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
    drop(listener);
    tracing::info!(
        connections = connections.len(),
        "shutting down: draining connections"
    );
    let drain_timeout = Duration::from_millis(shared.config.shutdown_timeout_ms);
    let drained = tokio::time::timeout(drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "connections did not finish within shutdown_timeout_ms; aborting them"
        );
        connections.shutdown().await;
    }
    // Not aborted: a pass in progress holds log handles that close_all
    // needs back, so let it finish (it stops at the next select).
    if let Err(e) = maintenance.await {
        tracing::error!(error = %e, "maintenance task failed");
    }
    let _ = metrics_task.await;
    if let Some(cluster) = &shared.cluster {
        cluster.stop_peers().await;
    }
    shared.registry.close_all().await;
    if let Some(cluster) = &shared.cluster {
        cluster.shutdown().await;
    }
    close_groups(shared).await;
    tracing::info!("broker stopped");
    done_tx.send_replace(true);
}

/// Closes the offsets log cleanly. Every commit was synced before it was
/// acknowledged, so if some task still holds the coordinator (it should
/// not: connections and maintenance are done) nothing is lost by skipping
/// the clean close; the next start recovers the log.
async fn close_groups(shared: Arc<Shared>) {
    let Ok(shared) = Arc::try_unwrap(shared) else {
        tracing::warn!("broker state still shared at shutdown; offsets log not closed cleanly");
        return;
    };
    let Ok(groups) = Arc::try_unwrap(shared.groups) else {
        tracing::warn!(
            "group coordinator still shared at shutdown; offsets log not closed cleanly"
        );
        return;
    };
    if let Err(e) = groups.close().await {
        tracing::error!(error = %e, "closing the consumer offsets log failed");
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Sums of the per-log counters the maintenance pass turns into metrics.
#[derive(Debug, Default, Clone, Copy)]
struct LogTotals {
    syncs: u64,
    producers: u64,
    producer_evictions: u64,
    producer_expirations: u64,
}

/// Periodic work on every log: `tick` each [`TICK_INTERVAL`], retention each
/// `retention_check_interval_ms`; the group coordinator's tick each
/// [`GROUP_TICK_INTERVAL`], with the group lag gauges on every log tick.
/// Runs the (blocking) storage calls on the blocking pool so a slow disk
/// never stalls the request runtime; the coordinator's tick is in memory.
async fn maintain(shared: Arc<Shared>) {
    let retention_every = Duration::from_millis(shared.config.retention_check_interval_ms);
    let mut tick = tokio::time::interval(TICK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retention = tokio::time::interval(retention_every);
    // The logs count their own fdatasyncs, evictions and expirations; the
    // counters get the growth.
    let mut seen = LogTotals::default();
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut group_tick = tokio::time::interval(GROUP_TICK_INTERVAL);
    group_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = shared.shutdown.clone();
    let mut passes = 0u64;
    loop {
        let enforce = tokio::select! {
            _ = group_tick.tick() => {
                shared.groups.tick(&*shared.registry as &dyn TopicView);
                continue;
            }
            _ = tick.tick() => false,
            _ = retention.tick() => true,
            _ = stopped(&mut shutdown) => return,
        };
        shared.groups.publish_lag_metrics(&*shared.registry);
        passes = passes.wrapping_add(1);
        if shared.cluster.is_some() {
            let partitions = shared.registry.all_partitions();
            let mut under = 0u32;
            for p in &partitions {
                under += u32::from(p.publish_replication_metrics());
                if passes.is_multiple_of(PREFERRED_LEADER_CHECK_TICKS) {
                    p.prefer_leader().await;
                }
            }
            ::metrics::gauge!(metrics::UNDER_REPLICATED_PARTITIONS).set(f64::from(under));
        }
        let registry = shared.registry.clone();
        let pass = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            let mut totals = LogTotals::default();
            for part in registry.all_partitions() {
                let (topic, partition) = (part.topic(), part.id());
                part.tick(now);
                if enforce {
                    match part.enforce_retention(now) {
                        Ok(outcome) => {
                            tracing::debug!(%topic, partition, ?outcome, "retention checked")
                        }
                        Err(e) => {
                            tracing::warn!(%topic, partition, error = %e, "retention failed")
                        }
                    }
                }
                // Precision loss above 2^53 is irrelevant for a gauge.
                ::metrics::gauge!(metrics::LOG_END_OFFSET, "topic" => topic.to_string(), "partition" => partition.to_string())
                    .set(part.log_end_offset() as f64);
                let stats = part.stats();
                totals.syncs += stats.syncs;
                totals.producers += stats.producers as u64;
                totals.producer_evictions += stats.producer_evictions;
                totals.producer_expirations += stats.producer_expirations;
            }
            totals
        });
        match pass.await {
            Ok(totals) => {
                ::metrics::counter!(metrics::FSYNC_TOTAL)
                    .increment(totals.syncs.saturating_sub(seen.syncs));
                ::metrics::counter!(metrics::PRODUCER_ID_EVICTIONS_TOTAL).increment(
                    totals
                        .producer_evictions
                        .saturating_sub(seen.producer_evictions),
                );
                ::metrics::counter!(metrics::PRODUCER_ID_EXPIRATIONS_TOTAL).increment(
                    totals
                        .producer_expirations
                        .saturating_sub(seen.producer_expirations),
                );
                // Precision loss above 2^53 is irrelevant for a gauge.
                ::metrics::gauge!(metrics::PRODUCER_IDS).set(totals.producers as f64);
                seen = totals;
            }
            Err(e) => tracing::error!(error = %e, "maintenance pass failed"),
        }
    }
}

/// Name of the file written and removed at start to prove the data
/// directory writable.
const WRITE_PROBE_FILE: &str = ".rill_write_probe";

/// Whether the data directory can be written. A read-only mount (`EROFS`)
/// or missing permissions (`EACCES`, `EPERM`) answers `false`: the broker
/// then opens everything read-only, serving reads and refusing writes, as
/// a lasting state until it is restarted on a writable directory. Any
/// other failure (say, a full disk refusing the probe) is an error: it
/// says nothing about whether the logs can be opened safely.
fn check_writable(data_dir: &std::path::Path) -> Result<bool, BrokerError> {
    let probe = data_dir.join(WRITE_PROBE_FILE);
    let attempt = || -> std::io::Result<()> {
        std::fs::create_dir_all(data_dir)?;
        std::fs::write(&probe, b"")?;
        std::fs::remove_file(&probe)
    };
    match attempt() {
        Ok(()) => Ok(true),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            tracing::warn!(
                error = %e,
                "data directory {} is read-only: serving reads, refusing writes",
                data_dir.display()
            );
            Ok(false)
        }
        Err(source) => Err(BrokerError::DataDirNotWritable {
            path: data_dir.to_path_buf(),
            source,
        }),
    }
}
