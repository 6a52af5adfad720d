//! Fuzz-style: random bytes and mutated valid batches (seeded, thousands of
//! cases) never panic any reader, and every change inside the CRC'd region
//! is caught by validate().

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rill_protocol::batch::header::CRC_START;
use rill_protocol::batch::{BatchIter, BatchView, Compression};

use crate::batch_common::{fix_crc, sample_batch};

const SEED: u64 = 0x5249_4C4C;
const RANDOM_CASES: usize = 2_000;
const MUTATION_CASES: usize = 4_000;

/// Runs every reader over `bytes`, touching every field it yields. Results
/// are ignored: the property is "no panic".
fn exercise(bytes: &[u8]) {
    if let Ok(view) = BatchView::new(bytes) {
        let _ = view.validate();
        let _ = view.validate_full();
        if let Ok(records) = view.records() {
            for r in &records {
                let _ = (r.offset, r.timestamp, r.key(), r.value().len());
                for (name, value) in r.headers() {
                    let _ = (name.len(), value.len());
                }
            }
        }
    }
    let mut it = BatchIter::new(bytes);
    for view in it.by_ref().flatten() {
        let _ = view.records().map(|r| r.len());
    }
    assert!(it.consumed() <= bytes.len());
}

fn corpus() -> Vec<Vec<u8>> {
    vec![
        sample_batch(Compression::None, 1),
        sample_batch(Compression::None, 6),
        sample_batch(Compression::Zstd, 1),
        sample_batch(Compression::Zstd, 6),
    ]
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(SEED);
    let valid = corpus();
    for _ in 0..RANDOM_CASES {
        let len = rng.random_range(0..400);
        let mut bytes = vec![0u8; len];
        rng.fill(&mut bytes[..]);
        // Half the cases start with a real header so the payload checks run.
        if rng.random_bool(0.5) {
            let base = &valid[rng.random_range(0..valid.len())];
            let keep = rng.random_range(0..=base.len());
            bytes.splice(0..0, base[..keep].iter().copied());
        }
        exercise(&bytes);
    }
}

#[test]
fn mutated_batches_never_panic_and_crc_catches_changes() {
    let mut rng = StdRng::seed_from_u64(SEED + 1);
    let valid = corpus();
    let mut caught = 0usize;
    for case in 0..MUTATION_CASES {
        let base = &valid[case % valid.len()];
        let mut bytes = base.clone();
        match rng.random_range(0..5) {
            0 => {
                // Change up to 4 adjacent bytes in the CRC'd region: a burst
                // of at most 32 bits, which CRC32C always detects.
                let at = rng.random_range(CRC_START..bytes.len());
                let end = (at + rng.random_range(1..=4)).min(bytes.len());
                for b in &mut bytes[at..end] {
                    *b ^= rng.random_range(1..=255u8);
                }
                match BatchView::new(&bytes) {
                    Ok(view) => {
                        assert!(
                            view.validate().is_err(),
                            "case {case}: CRC missed a change at {at}"
                        );
                        assert!(view.validate_full().is_err());
                        caught += 1;
                    }
                    Err(_) => caught += 1,
                }
            }
            1 => {
                // Same, with the CRC recomputed: reaches the archive and zstd
                // decoders with hostile bytes.
                let at = rng.random_range(CRC_START..bytes.len());
                bytes[at] = rng.random();
                fix_crc(&mut bytes);
            }
            2 => bytes.truncate(rng.random_range(0..bytes.len())),
            3 => {
                let extra = rng.random_range(1..100);
                bytes.extend((0..extra).map(|_| rng.random::<u8>()));
                // The view covers the first batch only: still valid.
                let view = BatchView::new(&bytes).unwrap();
                assert_eq!(view.len(), base.len());
                view.validate_full().unwrap();
            }
            _ => {
                // Anywhere, header included, several scattered bytes.
                for _ in 0..rng.random_range(1..6) {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = rng.random();
                }
            }
        }
        exercise(&bytes);
    }
    assert!(
        caught > MUTATION_CASES / 10,
        "the CRC branch ran {caught} times"
    );
}
