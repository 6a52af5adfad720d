//! Record batch codec: reading records in place (the unaligned rkyv format)
//! against copying to an aligned buffer first, building (serialize and
//! optionally compress), CRC validation, and zstd against none.
//!
//! Run: `cargo bench -p rill-benches --bench batch -- --warm-up-time 1 --measurement-time 3`.
//! Figures and the reasoning behind the format: /work/briefs/out_alignment.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rill_protocol::batch::ArchivedRecords;
use rill_protocol::{BatchBuilder, BatchView, Compression};

const RECORDS_PER_BATCH: usize = 1_000;
const VALUE_BYTES: usize = 1_024;
const KEY_BYTES: usize = 16;
/// Placing the batch one byte into a buffer makes every field misaligned,
/// as a batch at an arbitrary position in a fetch response is.
const ODD_SHIFT: usize = 1;

/// Values of 16 distinct letters from a fixed xorshift stream: about 4 bits
/// of entropy per byte, so zstd has real work and a realistic ~2x ratio
/// rather than the trivial ratio of repeated bytes.
fn values() -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..RECORDS_PER_BATCH)
        .map(|_| {
            (0..VALUE_BYTES)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    b'a' + (state % 16) as u8
                })
                .collect()
        })
        .collect()
}

fn builder(compression: Compression, values: &[Vec<u8>]) -> BatchBuilder {
    let mut b = BatchBuilder::new(compression);
    for (i, v) in values.iter().enumerate() {
        let key = format!("{i:0width$}", width = KEY_BYTES);
        b.push(1_700_000_000_000 + i as i64, Some(key.as_bytes()), v, &[]);
    }
    b
}

/// The batch placed at an odd byte offset of a larger buffer.
fn at_odd_offset(batch: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; ODD_SHIFT];
    buf.extend_from_slice(batch);
    buf
}

fn sum_value_lens(records: &ArchivedRecords) -> usize {
    records.iter().map(|r| r.value().len()).sum()
}

fn read(c: &mut Criterion) {
    let values = values();
    let batch = builder(Compression::None, &values).finish().unwrap();
    let buf = at_odd_offset(&batch);
    let view = BatchView::new(&buf[ODD_SHIFT..]).unwrap();
    let payload = view.payload();

    let mut g = c.benchmark_group("batch_read_1000x1KiB");
    // Per record, not per byte: iteration reads each value's length, never
    // its bytes, so the work grows with the record count.
    g.throughput(Throughput::Elements(RECORDS_PER_BATCH as u64));
    // What consumers do: bytecheck the archive where it lies, then iterate.
    g.bench_function("in_place_checked", |b| {
        b.iter(|| {
            let records = black_box(&view).records().unwrap();
            records.iter().map(|r| r.value().len()).sum::<usize>()
        })
    });
    // What the aligned format would need at an arbitrary offset: a copy into
    // an aligned buffer before the same check and iteration.
    g.bench_function("aligned_copy_checked", |b| {
        b.iter(|| {
            let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(payload.len());
            aligned.extend_from_slice(black_box(payload));
            let records = rkyv::access::<ArchivedRecords, rkyv::rancor::Error>(&aligned).unwrap();
            sum_value_lens(records)
        })
    });
    // The iteration alone, to show what the bytecheck pass costs.
    g.bench_function("in_place_unchecked", |b| {
        b.iter(|| {
            // SAFETY: `payload` is a batch the builder just wrote, and
            // `records()` validated the same bytes above.
            let records = unsafe { rkyv::access_unchecked::<ArchivedRecords>(black_box(payload)) };
            sum_value_lens(records)
        })
    });
    g.finish();
}

fn build(c: &mut Criterion) {
    let values = values();
    let mut g = c.benchmark_group("batch_build_1000x1KiB");
    g.throughput(Throughput::Bytes((RECORDS_PER_BATCH * VALUE_BYTES) as u64));
    for (name, compression) in [("none", Compression::None), ("zstd", Compression::Zstd)] {
        // Pushing copies the records; finish serializes (and compresses)
        // once. Measured separately so the codec cost is visible.
        g.bench_function(format!("push_{name}"), |b| {
            b.iter(|| builder(compression, black_box(&values)).len())
        });
        g.bench_function(format!("finish_{name}"), |b| {
            b.iter_batched(
                || builder(compression, &values),
                |builder| builder.finish().unwrap().len(),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn validate(c: &mut Criterion) {
    let values = values();
    let mut g = c.benchmark_group("batch_validate");
    for (name, compression) in [("none", Compression::None), ("zstd", Compression::Zstd)] {
        let batch = builder(compression, &values).finish().unwrap();
        let buf = at_odd_offset(&batch);
        let bytes = &buf[ODD_SHIFT..];
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        // The broker's produce path: header + CRC, no payload decoding.
        g.bench_function(format!("crc_{name}"), |b| {
            b.iter(|| {
                BatchView::new(black_box(bytes))
                    .unwrap()
                    .validate()
                    .unwrap()
            })
        });
        // A consumer's full check: CRC, decompression if any, bytecheck, offsets.
        g.bench_function(format!("full_{name}"), |b| {
            b.iter(|| {
                let view = BatchView::new(black_box(bytes)).unwrap();
                view.validate_full().unwrap().len()
            })
        });
    }
    g.finish();
}

fn sizes() {
    let values = values();
    for (name, compression) in [("none", Compression::None), ("zstd", Compression::Zstd)] {
        let batch = builder(compression, &values).finish().unwrap();
        println!("batch size {name}: {} bytes", batch.len());
    }
}

fn all(c: &mut Criterion) {
    sizes();
    read(c);
    build(c);
    validate(c);
}

criterion_group!(benches, all);
criterion_main!(benches);
