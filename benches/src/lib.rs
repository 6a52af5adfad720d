//! Shared helpers for Rill's criterion benchmarks (`benches/benches/*.rs`).
//!
//! Benchmarks measure speed and memory goals; tests never time anything.
//! Figures go into BENCHMARKS.md with the command and the machine.

use bytes::Bytes;
use rill_protocol::{BatchBuilder, Compression};

/// Builds one batch of `records` records of `value_bytes` each (keys of 16
/// bytes), the shape the issues' figures are quoted for (1 KiB × 1000).
pub fn make_batch(records: usize, value_bytes: usize, compression: Compression) -> Bytes {
    let mut builder = BatchBuilder::new(compression);
    let value: Vec<u8> = (0..value_bytes).map(|i| (i % 251) as u8).collect();
    for i in 0..records {
        let key = format!("key-{i:012}");
        builder.push(
            1_700_000_000_000 + i as i64,
            Some(key.as_bytes()),
            &value,
            &[],
        );
    }
    builder.finish().expect("bench batch fits the limits")
}
