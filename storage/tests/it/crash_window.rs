//! The machine-crash window of `acks=leader` (`Durability::Written`),
//! SIMULATED with `CrashBackend`: a paced run of written appends under each
//! fsync policy, a "machine crash" right after the last acknowledgement
//! (`materialize_durable`: every byte not yet `fdatasync`'d is dropped), a
//! reopen of that image, and a count of the acknowledged appends it lacks.
//! A kill -9 of the process cannot show this window (the page cache
//! survives it); the client crate's crash_durability tests cover that.
//! Figures go to stderr; RELIABILITY.md records a long run (`RILL_LONG=1`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rill_protocol::batch::Compression;
use rill_storage::io::{CrashBackend, IoBackend};
use rill_storage::{Durability, FsyncPolicy, PartitionLog};

use super::log_support::{
    batch, now_ms, runtime, small_config, split_batches, std_backend, tempdir, BASE_END,
};

/// Crash points per policy in `cargo test`, and with `RILL_LONG=1`.
const CRASH_POINTS_SHORT: u64 = 2;
const CRASH_POINTS_LONG: u64 = 20;
/// Appends before the crash, drawn per crash point.
const APPENDS_MIN: u64 = 150;
const APPENDS_MAX: u64 = 300;
/// Pause between appends: a steady trickle, so `interval_ms` windows hold
/// a known most-appends (one per `PACE` at most).
const PACE: Duration = Duration::from_millis(1);
const VALUE_BYTES: usize = 200;
/// Big enough that no run rolls a segment.
const SEGMENT_BYTES: u64 = 1 << 20;
/// The `interval_bytes` policy tried: a few dozen appends' worth.
const INTERVAL_BYTES: u64 = 16 * 1024;
/// Default seed; `RILL_CRASH_SEED` replays another.
const SEED_DEFAULT: u64 = 0x5EED_0C4A_5B00;

/// What one policy lost over its crash points.
#[derive(Debug, Default)]
struct Loss {
    points: u64,
    acked: u64,
    lost: u64,
    lost_max: u64,
    lost_bytes_max: u64,
    /// Longest time between the first lost acknowledgement and the crash.
    window_max: Duration,
}

/// One run: `appends` paced written appends, a crash right after the last
/// acknowledgement, a reopen of the durable image. Returns (acked, lost,
/// lost bytes, time from the first lost acknowledgement to the crash).
/// Panics if what survives is not a prefix of what was
/// acknowledged, byte for byte.
fn crash_run(policy: FsyncPolicy, appends: u64, seed: u64) -> (u64, u64, u64, Duration) {
    let rt = runtime();
    let source = tempdir();
    let crash = Arc::new(CrashBackend::new(None).expect("crash backend"));
    let backend: Arc<dyn IoBackend> = crash.clone();
    let config = rill_storage::LogConfig {
        fsync: policy,
        ..small_config(SEGMENT_BYTES)
    };
    let log = PartitionLog::open(source.path(), config.clone(), backend).expect("open");
    let acked: Vec<(u64, Vec<u8>, Instant)> = rt.block_on(async {
        let mut acked = Vec::new();
        for i in 0..appends {
            if i > 0 {
                tokio::time::sleep(PACE).await;
            }
            let b = batch(1, VALUE_BYTES, now_ms(), Compression::None, seed + i);
            let info = log
                .append(b.clone(), Durability::Written)
                .await
                .expect("written append");
            let mut stamped = b.to_vec();
            stamped[..BASE_END].copy_from_slice(&info.base_offset.to_le_bytes());
            acked.push((info.base_offset, stamped, Instant::now()));
        }
        acked
    });
    // The machine dies now: only what was fdatasync'd is on the disk.
    let crashed_at = Instant::now();
    let target = tempdir();
    crash
        .materialize_durable(target.path(), source.path())
        .expect("materialize");
    drop(log);
    let recovered = PartitionLog::open(target.path(), config, std_backend()).expect("reopen");
    let end = recovered.log_end_offset();
    let mut lost = 0;
    let mut lost_bytes = 0;
    let mut window = Duration::ZERO;
    for (base, bytes, at) in &acked {
        if *base < end {
            assert_eq!(lost, 0, "{policy}: append {base} survived after a lost one");
            let got = split_batches(&recovered.read(*base, 1).expect("read"));
            assert_eq!(
                got.first().map(|(_, b)| &b[..]),
                Some(&bytes[..]),
                "{policy}: surviving append {base} is byte-equal"
            );
        } else {
            if lost == 0 {
                window = crashed_at.duration_since(*at);
            }
            lost += 1;
            lost_bytes += bytes.len() as u64;
        }
    }
    (acked.len() as u64, lost, lost_bytes, window)
}

/// Per fsync policy, how many acknowledged written appends a simulated machine crash loses: none under always, at most an interval's worth under interval_ms/interval_bytes, all unsynced under never.
#[test]
fn written_appends_lost_at_a_simulated_machine_crash_per_fsync_policy() {
    let points = if std::env::var_os("RILL_LONG").is_some_and(|v| v == "1") {
        CRASH_POINTS_LONG
    } else {
        CRASH_POINTS_SHORT
    };
    let seed = std::env::var("RILL_CRASH_SEED")
        .ok()
        .map_or(SEED_DEFAULT, |s| {
            s.parse().expect("RILL_CRASH_SEED is a u64")
        });
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let policies = [
        FsyncPolicy::Never,
        FsyncPolicy::IntervalMs(10),
        FsyncPolicy::IntervalMs(100),
        FsyncPolicy::IntervalBytes(INTERVAL_BYTES),
        FsyncPolicy::Always,
    ];
    for policy in policies {
        let mut loss = Loss::default();
        for point in 0..points {
            let appends = rng.random_range(APPENDS_MIN..=APPENDS_MAX);
            let (acked, lost, lost_bytes, window) = crash_run(policy, appends, point * APPENDS_MAX);
            match policy {
                FsyncPolicy::Always => assert_eq!(lost, 0, "always syncs every append"),
                FsyncPolicy::Never => assert_eq!(lost, acked, "never syncs: all unsynced"),
                // Appends are at least PACE apart and a sync comes with the
                // first append at least `ms` after the last one, so at most
                // ms/PACE appends (+1 for millisecond rounding) are unsynced.
                FsyncPolicy::IntervalMs(ms) => {
                    let window = ms / PACE.as_millis() as u64 + 1;
                    assert!(lost <= window, "{policy}: lost {lost} > {window}");
                    assert!(lost < acked, "{policy}: a run longer than ms synced");
                }
                FsyncPolicy::IntervalBytes(bytes) => {
                    assert!(lost_bytes < bytes, "{policy}: lost {lost_bytes} bytes");
                }
            }
            loss.points += 1;
            loss.acked += acked;
            loss.lost += lost;
            loss.lost_max = loss.lost_max.max(lost);
            loss.lost_bytes_max = loss.lost_bytes_max.max(lost_bytes);
            loss.window_max = loss.window_max.max(window);
        }
        eprintln!(
            "crash window (SIMULATED machine crash, CrashBackend, seed {seed}): fsync {policy}: \
             {} crash points, {} acked written appends, {} lost (mean {:.1}, max {} appends = \
             {} bytes, {:?} of acknowledgements per crash), appends >= {} ms apart",
            loss.points,
            loss.acked,
            loss.lost,
            loss.lost as f64 / loss.points as f64,
            loss.lost_max,
            loss.lost_bytes_max,
            loss.window_max,
            PACE.as_millis()
        );
    }
}
