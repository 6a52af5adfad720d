//! The builder's arena serializer writes exactly the bytes rkyv writes for
//! the owned `Vec<Record>` (the documented payload type): proven by building
//! random batches, including values larger than an arena chunk, and
//! comparing their payload with `rkyv::to_bytes` of the same records.

use proptest::prelude::*;
use rill_protocol::batch::{BatchBuilder, BatchView, Compression, Record, RecordHeader};

/// A value larger than the builder's 64 KiB arena chunk, so it gets a chunk
/// of its own between records that share chunks.
const VALUE_OVER_CHUNK_BYTES: usize = 70 * 1024;

type Rec = (i64, Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);

fn rec() -> impl Strategy<Value = Rec> {
    (
        -1_000_000i64..1_000_000,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        prop_oneof![
            8 => proptest::collection::vec(any::<u8>(), 0..300),
            1 => Just(vec![7u8; VALUE_OVER_CHUNK_BYTES]),
        ],
        proptest::collection::vec(
            ("\\PC{0,40}", proptest::collection::vec(any::<u8>(), 0..20)),
            0..3,
        ),
    )
}

/// What the payload must equal: the owned records archived by rkyv itself.
fn reference_payload(recs: &[Rec]) -> Vec<u8> {
    let first = recs.first().map_or(0, |r| r.0);
    let owned: Vec<Record> = recs
        .iter()
        .enumerate()
        .map(|(i, (ts, key, value, headers))| Record {
            offset_delta: i as u32,
            timestamp_delta: ts.wrapping_sub(first),
            key: key.clone(),
            value: value.clone(),
            headers: headers
                .iter()
                .map(|(n, v)| RecordHeader {
                    name: n.clone(),
                    value: v.clone(),
                })
                .collect(),
        })
        .collect();
    rkyv::to_bytes::<rkyv::rancor::Error>(&owned)
        .expect("reference archive")
        .to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arena_payload_equals_the_owned_records_archive(
        recs in proptest::collection::vec(rec(), 1..60)
    ) {
        let mut builder = BatchBuilder::new(Compression::None);
        for (ts, key, value, headers) in &recs {
            let headers: Vec<(&str, &[u8])> =
                headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
            builder.push(*ts, key.as_deref(), value, &headers);
        }
        let estimate = builder.estimated_size();
        let batch = builder.finish().expect("batch builds");
        prop_assert!(batch.len() <= estimate, "the estimate is an upper bound");
        let view = BatchView::new(&batch).expect("batch parses");
        view.validate().expect("CRC holds");
        let expected = reference_payload(&recs);
        prop_assert_eq!(view.payload(), expected.as_slice());
    }
}
