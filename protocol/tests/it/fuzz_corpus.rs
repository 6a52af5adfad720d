//! The fuzz targets' checks (fuzz/src/lib.rs) replayed in every `cargo test`
//! without libFuzzer: each checked-in seed in fuzz/corpus/<target>/ must be
//! accepted, then seeded mutations of every seed (bit flips, boundary
//! values, cuts, splices) must never panic a decoder or make it accept a
//! non-canonical encoding. `RILL_LONG=1` runs many more mutations.
//!
//! The seeds are generated from the wire tests' strategies and the batch
//! builder: `RILL_FUZZ_WRITE_CORPUS=1 cargo test -p rill-protocol --test it
//! fuzz_corpus` rewrites them (then check the files in).

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rill_protocol::wire::*;
use rill_protocol::{BatchBuilder, Compression};

use crate::wire_common::{header_for, request, response};
use crate::wire_groups::{group_request, group_response};

#[path = "../../../fuzz/src/lib.rs"]
#[allow(dead_code, reason = "shared with the libFuzzer targets")]
mod checks;

const SEED: u64 = 0x4655_5a5a;
/// Mutations per corpus file in the CI form: the whole replay stays around
/// a second on a 2-core box.
const MUTATIONS_PER_FILE: usize = 200;
/// Mutations per corpus file under `RILL_LONG=1`.
const MUTATIONS_PER_FILE_LONG: usize = 20_000;
/// Seeds of each API kept when writing the corpus: two shapes per API.
const SEEDS_PER_API: usize = 2;
/// Values drawn from the strategies when writing the corpus; enough to hit
/// every API `SEEDS_PER_API` times.
const DRAWS: usize = 2_000;
/// Values a mutation writes over 1, 2 or 4 bytes: the boundaries length and
/// count checks must handle.
const INTERESTING_U32: [u32; 8] = [0, 1, 0x7f, 0x80, 0xffff, 0x7fff_ffff, 0x8000_0000, u32::MAX];

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_root().join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let bytes = std::fs::read(&path).expect("corpus file reads");
            (path.display().to_string(), bytes)
        })
        .collect();
    out.sort();
    out
}

/// One random change of the kinds that find decoder bugs: flipped bits,
/// boundary values written over length and count fields, cuts, repeated
/// and inserted bytes, and splices with another seed.
fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    let rounds = rng.random_range(1..=3);
    for _ in 0..rounds {
        let len = v.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let at = rng.random_range(0..len);
                v[at] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let value = INTERESTING_U32[rng.random_range(0..INTERESTING_U32.len())];
                let width = [1usize, 2, 4][rng.random_range(0..3)];
                let at = rng.random_range(0..len);
                for (i, b) in value.to_le_bytes().iter().take(width).enumerate() {
                    if let Some(slot) = v.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            2 => v.truncate(rng.random_range(0..=len)),
            3 => {
                let at = rng.random_range(0..=len);
                let n = rng.random_range(1..16);
                let junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                v.splice(at..at, junk);
            }
            4 if len > 0 => {
                let from = rng.random_range(0..len);
                let to = rng.random_range(from..=len.min(from + 32));
                let chunk = v[from..to].to_vec();
                let at = rng.random_range(0..=len);
                v.splice(at..at, chunk);
            }
            5 => {
                let cut = rng.random_range(0..=len);
                let from = rng.random_range(0..=other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            _ => {
                if len > 0 {
                    let at = rng.random_range(0..len);
                    v[at] = rng.random();
                }
            }
        }
    }
    v
}

#[test]
fn fuzz_corpus_seeds_are_accepted_and_mutations_never_panic() {
    if std::env::var_os("RILL_FUZZ_WRITE_CORPUS").is_some() {
        write_corpus();
    }
    let per_file = if std::env::var_os("RILL_LONG").is_some() {
        MUTATIONS_PER_FILE_LONG
    } else {
        MUTATIONS_PER_FILE
    };
    let mut rng = StdRng::seed_from_u64(SEED);
    for target in checks::TARGETS {
        let seeds = seeds(target.name);
        assert!(
            seeds.len() >= 4,
            "corpus of {} has {} seeds",
            target.name,
            seeds.len()
        );
        let (mut accepted, mut rejected) = (0usize, 0usize);
        for (name, bytes) in &seeds {
            assert!(
                (target.check)(bytes),
                "{}: seed {name} is not accepted",
                target.name
            );
        }
        for (i, (_, bytes)) in seeds.iter().enumerate() {
            let other = &seeds[(i + 1) % seeds.len()].1;
            for _ in 0..per_file {
                let input = mutate(&mut rng, bytes, other);
                if (target.check)(&input) {
                    accepted += 1;
                } else {
                    rejected += 1;
                }
            }
        }
        // Mutations must reach the decoders' error paths, or the replay
        // tests nothing but the seeds.
        assert!(rejected > 0, "{}: no mutation was rejected", target.name);
        eprintln!(
            "fuzz_corpus {}: {} seeds, {accepted} mutations accepted, {rejected} rejected",
            target.name,
            seeds.len()
        );
    }
}

/// Every regression input found by fuzzing, by target, under
/// fuzz/regressions/<target>/: each must run through its check without a
/// panic (they are named for the bug they found).
#[test]
fn fuzz_regressions_do_not_crash() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    for target in checks::TARGETS {
        let Ok(dir) = std::fs::read_dir(root.join(target.name)) else {
            continue;
        };
        for entry in dir {
            let bytes = std::fs::read(entry.expect("regression entry").path())
                .expect("regression file reads");
            (target.check)(&bytes);
        }
    }
}

/// Draws `DRAWS` values from `strategy` with a fixed seed.
fn draw<S: Strategy>(strategy: S) -> Vec<S::Value> {
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    (0..DRAWS)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("strategy draws")
                .current()
        })
        .collect()
}

fn write_seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus_root().join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("seed writes");
}

fn api_name(key: ApiKey) -> String {
    format!("{key:?}").to_lowercase()
}

fn write_corpus() {
    let root = corpus_root();
    for target in checks::TARGETS {
        let _ = std::fs::remove_dir_all(root.join(target.name));
    }
    let mut kept = std::collections::HashMap::new();
    for (i, req) in draw(proptest::prop_oneof![request(), group_request()])
        .into_iter()
        .enumerate()
    {
        let key = req.api_key();
        let n = kept.entry(("req", key)).or_insert(0usize);
        if *n >= SEEDS_PER_API {
            continue;
        }
        *n += 1;
        let header = header_for(&req, u32::try_from(i).expect("small"), "seed".into());
        let mut frame = BytesMut::new();
        encode_request_frame(&header, &req, &mut frame).expect("seed encodes");
        let name = format!("{}-{n}", api_name(key));
        write_seed("request_frame", &name, &frame);
        let body = crate::wire_common::request_body(&req);
        let selected = [&key.code().to_le_bytes()[..], &body[..]].concat();
        write_seed("request_body", &name, &selected);
    }
    for (i, resp) in draw(proptest::prop_oneof![response(), group_response()])
        .into_iter()
        .enumerate()
    {
        let key = resp.api_key();
        let n = kept.entry(("resp", key)).or_insert(0usize);
        if *n >= SEEDS_PER_API {
            continue;
        }
        *n += 1;
        let header = ResponseHeader {
            correlation_id: u32::try_from(i).expect("small"),
        };
        let mut frame = BytesMut::new();
        encode_response_frame(&header, &resp, &mut frame).expect("seed encodes");
        let selected = [
            &key.code().to_le_bytes()[..],
            &frame[FRAME_LENGTH_PREFIX_BYTES..],
        ]
        .concat();
        write_seed("response", &format!("{}-{n}", api_name(key)), &selected);
    }
    for key in ApiKey::ALL {
        for (kind, what) in [("req", "request"), ("resp", "response")] {
            let n = kept.get(&(kind, *key)).copied().unwrap_or(0);
            assert_eq!(
                n, SEEDS_PER_API,
                "{DRAWS} draws gave {n} {what} seeds for {key:?}"
            );
        }
    }
    let mut batches = Vec::new();
    for compression in [Compression::None, Compression::Zstd] {
        for records in [1usize, 3, 8] {
            let mut b = BatchBuilder::new(compression);
            for r in 0..records {
                let key = format!("k{r}");
                b.push(
                    1_700_000_000_000 + r as i64,
                    (r % 2 == 0).then_some(key.as_bytes()),
                    format!("value-{r}").as_bytes(),
                    &[("h", b"v")],
                );
            }
            let bytes = b.finish().expect("seed batch builds").to_vec();
            write_seed(
                "batch",
                &format!("{compression:?}-{records}").to_lowercase(),
                &bytes,
            );
            batches.push(bytes);
        }
    }
    for (i, frame) in draw(crate::peer_frames::peer_frame())
        .into_iter()
        .take(12)
        .enumerate()
    {
        let mut bytes = BytesMut::new();
        frame.encode(&mut bytes).expect("seed encodes");
        write_seed("peer_frame", &format!("frame-{i}"), &bytes);
    }
    for (i, pair) in batches.windows(2).enumerate() {
        let mut run = pair.concat();
        // A fetch's last batch is routinely cut short.
        let tail = pair[0].get(..pair[0].len() / 2).unwrap_or(&[]);
        run.extend_from_slice(tail);
        write_seed("batch_iter", &format!("run-{i}"), &run);
    }
}
