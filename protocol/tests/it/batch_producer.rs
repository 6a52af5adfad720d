//! The idempotent producer's header fields: sequence arithmetic wraps as
//! Kafka's does, and restamping a batch's producer fields keeps it valid.

use proptest::prelude::*;
use rill_protocol::batch::{sequence_add, stamp_producer, BatchBuilder, BatchView, Compression};

#[test]
fn batch_sequences_wrap_past_i32_max_to_zero() {
    assert_eq!(sequence_add(0, 0), 0);
    assert_eq!(sequence_add(5, 10), 15);
    assert_eq!(sequence_add(i32::MAX, 0), i32::MAX);
    assert_eq!(sequence_add(i32::MAX, 1), 0);
    assert_eq!(sequence_add(i32::MAX - 1, 3), 1);
    // No sequence stays no sequence.
    assert_eq!(sequence_add(-1, 7), -1);
}

fn batch(records: usize, codec: Compression) -> Vec<u8> {
    let mut b = BatchBuilder::new(codec).with_producer(7, 3, 100);
    for i in 0..records {
        b.push(
            1_000 + i as i64,
            Some(b"k"),
            format!("v{i}").as_bytes(),
            &[],
        );
    }
    b.finish().expect("builds").to_vec()
}

proptest! {
    #[test]
    fn batch_sequence_add_stays_in_range(seq in 0..=i32::MAX, n in any::<u32>()) {
        let out = sequence_add(seq, n);
        prop_assert!(out >= 0);
        let space = i64::from(i32::MAX) + 1;
        prop_assert_eq!(i64::from(out), (i64::from(seq) + i64::from(n)) % space);
    }

    #[test]
    fn batch_restamped_producer_fields_read_back_and_keep_the_crc(
        records in 1usize..20,
        zstd in any::<bool>(),
        pid in 0i64..i64::MAX,
        epoch in 0i16..i16::MAX,
        seq in 0..=i32::MAX,
    ) {
        let codec = if zstd { Compression::Zstd } else { Compression::None };
        let mut bytes = batch(records, codec);
        let before = BatchView::new(&bytes).expect("parses").header().crc;
        stamp_producer(&mut bytes, pid, epoch, seq);
        let view = BatchView::new(&bytes).expect("parses");
        view.validate().expect("CRC recomputed");
        let h = view.header();
        prop_assert_eq!(h.producer_id, pid);
        prop_assert_eq!(h.producer_epoch, epoch);
        prop_assert_eq!(h.base_sequence, seq);
        prop_assert!(h.is_idempotent());
        prop_assert_eq!(h.last_sequence(), sequence_add(seq, records as u32 - 1));
        let changed = (pid, epoch, seq) != (7, 3, 100);
        prop_assert_eq!(h.crc != before, changed);
        prop_assert_eq!(view.records().expect("records").len(), records);
    }
}
