//! Property: whatever records a producer pushes, build -> view -> records
//! gives them back exactly (both codecs), and broker stamps keep the batch
//! valid while moving every record's absolute offset.

use proptest::prelude::*;
use rill_protocol::batch::{
    stamp_base_offset, stamp_leader_epoch, BatchBuilder, BatchView, Compression,
};

#[derive(Debug, Clone)]
struct Rec {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        any::<i64>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::vec(
            ("\\PC{0,12}", proptest::collection::vec(any::<u8>(), 0..20)),
            0..4,
        ),
    )
        .prop_map(|(timestamp, key, value, headers)| Rec {
            timestamp,
            key,
            value,
            headers,
        })
}

fn codec() -> impl Strategy<Value = Compression> {
    prop_oneof![Just(Compression::None), Just(Compression::Zstd)]
}

fn build(codec: Compression, recs: &[Rec]) -> Vec<u8> {
    let mut b = BatchBuilder::new(codec);
    for r in recs {
        let headers: Vec<(&str, &[u8])> = r
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        b.push(r.timestamp, r.key.as_deref(), &r.value, &headers);
    }
    assert_eq!(b.len(), recs.len());
    b.finish().expect("valid records build").to_vec()
}

fn check_records(batch: &[u8], recs: &[Rec], base_offset: u64) -> Result<(), TestCaseError> {
    let view = BatchView::new(batch).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let records = view
        .validate_full()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(records.len(), recs.len());
    let h = view.header();
    prop_assert_eq!(h.first_timestamp, recs[0].timestamp);
    prop_assert_eq!(
        h.max_timestamp,
        recs.iter().map(|r| r.timestamp).max().unwrap()
    );
    prop_assert_eq!(h.last_offset(), base_offset + recs.len() as u64 - 1);
    for (i, (got, want)) in records.iter().zip(recs).enumerate() {
        prop_assert_eq!(got.offset, base_offset + i as u64);
        prop_assert_eq!(got.timestamp, want.timestamp);
        prop_assert_eq!(got.key(), want.key.as_deref());
        prop_assert_eq!(got.value(), want.value.as_slice());
        let headers: Vec<(String, Vec<u8>)> = got
            .headers()
            .map(|(n, v)| (n.to_owned(), v.to_vec()))
            .collect();
        prop_assert_eq!(&headers, &want.headers);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn build_view_records_round_trip(
        codec in codec(),
        recs in proptest::collection::vec(rec(), 1..24),
    ) {
        let batch = build(codec, &recs);
        check_records(&batch, &recs, 0)?;
        let view = BatchView::new(&batch).unwrap();
        prop_assert_eq!(view.header().codec, codec);
        prop_assert_eq!(view.records().unwrap().is_borrowed(), codec == Compression::None);
    }

    #[test]
    fn stamps_keep_the_batch_valid(
        codec in codec(),
        recs in proptest::collection::vec(rec(), 1..8),
        base_offset in 0u64..(u64::MAX / 2),
        leader_epoch in any::<u32>(),
    ) {
        let mut batch = build(codec, &recs);
        stamp_base_offset(&mut batch, base_offset);
        stamp_leader_epoch(&mut batch, leader_epoch);
        let view = BatchView::new(&batch).unwrap();
        prop_assert_eq!(view.validate(), Ok(()));
        prop_assert_eq!(view.header().base_offset, base_offset);
        prop_assert_eq!(view.header().leader_epoch, leader_epoch);
        check_records(&batch, &recs, base_offset)?;
    }
}
