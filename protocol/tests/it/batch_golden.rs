//! The batch format is pinned: three fixed batches must build byte-for-byte
//! into the checked-in files under tests/golden/, and records() must read
//! the expected content back from those files.
//!
//! A change here means the on-disk and wire format changed. If that is
//! intended, regenerate with `RILL_BLESS=1 cargo test -p rill-protocol golden`
//! and say so in the commit. The zstd fixture depends on the zstd library
//! version as well as the level: zstd output is deterministic for a given
//! library version and level, and Cargo.lock pins zstd-sys (1.5.7 today), so
//! a lockfile bump that changes it shows up here first.

use std::path::PathBuf;

use rill_protocol::batch::{
    stamp_base_offset, stamp_leader_epoch, BatchBuilder, BatchView, Compression,
};

/// Fixed so the fixtures are reproducible: 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000_000;

struct Expected {
    offset: u64,
    timestamp: i64,
    key: Option<&'static [u8]>,
    value: &'static [u8],
    headers: &'static [(&'static str, &'static [u8])],
}

struct Golden {
    file: &'static str,
    codec: Compression,
    producer: Option<(i64, i16, i32)>,
    /// (base_offset, leader_epoch) stamped as the broker would.
    stamp: Option<(u64, u32)>,
    records: Vec<Expected>,
}

fn goldens() -> Vec<Golden> {
    vec![
        Golden {
            file: "uncompressed_keys_headers.bin",
            codec: Compression::None,
            producer: None,
            stamp: Some((42, 3)),
            records: vec![
                Expected {
                    offset: 42,
                    timestamp: T0,
                    key: Some(b"user-1"),
                    value: b"signed up",
                    headers: &[("source", b"web"), ("trace-id", b"\x00\x01\x02\x03")],
                },
                Expected {
                    offset: 43,
                    timestamp: T0 + 5,
                    key: Some(b"user-2"),
                    value: b"",
                    headers: &[],
                },
                Expected {
                    offset: 44,
                    timestamp: T0 - 7,
                    key: None,
                    value: b"late record",
                    headers: &[("a-header-name-longer-than-inline", b"v")],
                },
            ],
        },
        Golden {
            file: "zstd.bin",
            codec: Compression::Zstd,
            producer: Some((9_001, 2, 100)),
            stamp: None,
            records: vec![
                Expected {
                    offset: 0,
                    timestamp: T0,
                    key: Some(b"sensor-a"),
                    value: b"temperature=21.5;temperature=21.5;temperature=21.5",
                    headers: &[("unit", b"C")],
                },
                Expected {
                    offset: 1,
                    timestamp: T0 + 1_000,
                    key: Some(b"sensor-a"),
                    value: b"temperature=21.6;temperature=21.6;temperature=21.6",
                    headers: &[("unit", b"C")],
                },
                Expected {
                    offset: 2,
                    timestamp: T0 + 2_000,
                    key: Some(b"sensor-b"),
                    value: b"temperature=19.0;temperature=19.0;temperature=19.0",
                    headers: &[("unit", b"C")],
                },
                Expected {
                    offset: 3,
                    timestamp: T0 + 3_000,
                    key: None,
                    value: b"heartbeat",
                    headers: &[],
                },
            ],
        },
        Golden {
            file: "single_no_key.bin",
            codec: Compression::None,
            producer: None,
            stamp: None,
            records: vec![Expected {
                offset: 0,
                timestamp: T0,
                key: None,
                value: b"hello rill",
                headers: &[],
            }],
        },
    ]
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
}

fn build(g: &Golden) -> Vec<u8> {
    let mut b = BatchBuilder::new(g.codec);
    if let Some((id, epoch, seq)) = g.producer {
        b = b.with_producer(id, epoch, seq);
    }
    for r in &g.records {
        b.push(r.timestamp, r.key, r.value, r.headers);
    }
    let mut batch = b.finish().expect("golden batch builds").to_vec();
    if let Some((base_offset, leader_epoch)) = g.stamp {
        stamp_base_offset(&mut batch, base_offset);
        stamp_leader_epoch(&mut batch, leader_epoch);
    }
    batch
}

#[test]
fn golden_batches_are_byte_identical_and_readable() {
    let bless = std::env::var_os("RILL_BLESS").is_some_and(|v| v == "1");
    for g in goldens() {
        let path = golden_dir().join(g.file);
        let built = build(&g);
        if bless {
            std::fs::write(&path, &built).expect("write golden file");
        }
        let stored = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (generate with RILL_BLESS=1)", path.display()));
        assert!(
            built == stored,
            "{}: built batch differs from the checked-in file",
            g.file
        );

        // Read the checked-in bytes, not the freshly built ones.
        let view = BatchView::new(&stored).unwrap();
        assert_eq!(view.len(), stored.len());
        assert_eq!(view.header().codec, g.codec);
        let records = view.validate_full().unwrap();
        assert_eq!(records.len(), g.records.len(), "{}", g.file);
        for (got, want) in records.iter().zip(&g.records) {
            assert_eq!(got.offset, want.offset, "{}", g.file);
            assert_eq!(got.timestamp, want.timestamp, "{}", g.file);
            assert_eq!(got.key(), want.key, "{}", g.file);
            assert_eq!(got.value(), want.value, "{}", g.file);
            let headers: Vec<(&str, &[u8])> = got.headers().collect();
            assert_eq!(headers, want.headers, "{}", g.file);
        }
    }
}
