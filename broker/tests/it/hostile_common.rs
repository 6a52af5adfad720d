//! Shared by the hostile-client tests: the real `rill-broker` binary in its
//! own process (so its memory is its own: peak RSS is `VmHWM` from
//! `/proc/<pid>/status`, the kernel's high-water mark, not a sample), and a
//! well-behaved client whose produce+fetch round-trip rate is measured
//! alone and then under attack.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_protocol::wire::*;

pub use crate::common::BrokerProcess;
use crate::common::{batch, Client};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Peak RSS every hostile scenario must stay under: the default in-flight
/// budgets allow 512 MiB broker-wide, plus the broker's own baseline.
pub const RSS_PEAK_BYTES_MAX: u64 = 1024 * MIB;
/// Under attack the well-behaved client keeps at least this share of its
/// solo round-trip rate. Generous on purpose: the attackers share the same
/// two cores as the broker and the good client, and `cargo test` runs other
/// tests of this binary beside them; the real ratio (0.8-1.5 when the
/// machine is otherwise quiet) is printed and recorded in RELIABILITY.md.
/// The connection storm unpaced measured 0.05-0.09, so this bound still
/// catches the failure it guards against.
pub const THROUGHPUT_RATIO_MIN: f64 = 0.15;
/// How long one throughput measurement runs in the CI form.
pub const MEASURE_CI: Duration = Duration::from_secs(2);
/// ... and under `RILL_LONG=1`.
pub const MEASURE_LONG: Duration = Duration::from_secs(30);
/// Records per produce in the good client's round trip.
const GOOD_BATCH_RECORDS: usize = 10;

pub fn long_mode() -> bool {
    std::env::var_os("RILL_LONG").is_some()
}

pub fn measure_for() -> Duration {
    if long_mode() {
        MEASURE_LONG
    } else {
        MEASURE_CI
    }
}

impl BrokerProcess {
    /// A `/proc/<pid>/status` memory field (`VmRSS`, `VmHWM`) in bytes.
    pub fn status_bytes(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).expect("read broker status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
            .map(|kib| kib * KIB)
            .unwrap_or_else(|| panic!("no {field} in {path}"))
    }

    /// The broker's peak resident memory since it started.
    pub fn rss_peak_bytes(&self) -> u64 {
        self.status_bytes("VmHWM")
    }

    pub fn rss_bytes(&self) -> u64 {
        self.status_bytes("VmRSS")
    }
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// Creates `topic` with one partition.
pub async fn create(addr: SocketAddr, topic: &str) {
    let mut c = Client::connect(addr).await;
    assert_eq!(c.create_topic(topic, 1, &[]).await.error, ErrorCode::None);
}

/// The well-behaved client: produce a small batch (acks=leader), fetch it
/// back from its offset, for `duration`; returns round trips per second.
pub async fn good_client_rate(addr: SocketAddr, topic: &str, duration: Duration) -> f64 {
    let mut c = Client::connect(addr).await;
    let started = Instant::now();
    let mut round_trips = 0u64;
    while started.elapsed() < duration {
        let r = c
            .produce(topic, 0, Acks::Leader, batch(GOOD_BATCH_RECORDS, "good", 1))
            .await;
        assert_eq!(r.error, ErrorCode::None, "good produce failed");
        let fetched = c.fetch(topic, 0, r.base_offset, 0, 0).await;
        assert!(!fetched.records.is_empty(), "good fetch came back empty");
        round_trips += 1;
    }
    round_trips as f64 / started.elapsed().as_secs_f64()
}

/// Checks and prints one scenario's figures: the good client's rate under
/// attack against its solo rate, and the broker's peak RSS.
pub fn report(scenario: &str, solo: f64, attacked: f64, broker: &BrokerProcess) {
    let ratio = attacked / solo;
    let peak = broker.rss_peak_bytes();
    eprintln!(
        "hostile {scenario}: good client {attacked:.0} round trips/s under attack vs {solo:.0} solo \
         (ratio {ratio:.2}); broker peak RSS {:.1} MiB",
        mib(peak)
    );
    assert!(
        ratio >= THROUGHPUT_RATIO_MIN,
        "{scenario}: good client at {ratio:.2} of its solo rate (min {THROUGHPUT_RATIO_MIN})"
    );
    assert!(
        peak < RSS_PEAK_BYTES_MAX,
        "{scenario}: broker peak RSS {:.1} MiB over {:.0} MiB",
        mib(peak),
        mib(RSS_PEAK_BYTES_MAX)
    );
}

/// The broker's `rill_connections_open` gauge.
pub async fn connections_open(metrics: SocketAddr) -> f64 {
    let text = crate::common::scrape(metrics).await;
    crate::common::sample(&text, "rill_connections_open")
}

/// Attackers running on their own OS thread and single-threaded runtime,
/// as a separate client machine would: they cannot starve the good
/// client's runtime in this process, only compete with it for the broker.
pub struct Attack {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often a stopped attack notices.
const ATTACK_STOP_POLL: Duration = Duration::from_millis(10);

impl Attack {
    /// Runs `make()`'s future until it ends or [`Attack::stop`].
    pub fn start<F, Fut>(make: F) -> Attack
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("attacker".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("attacker runtime");
                rt.block_on(async move {
                    tokio::select! {
                        _ = make() => {}
                        _ = async {
                            while !flag.load(Ordering::SeqCst) {
                                tokio::time::sleep(ATTACK_STOP_POLL).await;
                            }
                        } => {}
                    }
                });
                // Dropping the runtime cancels every attacker task and
                // closes their sockets.
            })
            .expect("attacker thread");
        Attack {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the attackers and waits until their sockets are closed.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("attacker thread panicked");
        }
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
