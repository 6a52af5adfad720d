//! BatchIter walks batches stored back to back, stops cleanly at a cut-off
//! tail, and reports a malformed header once; records read in place at any
//! byte position.

use rill_protocol::batch::{
    stamp_base_offset, stamp_leader_epoch, BatchBuilder, BatchError, BatchIter, BatchView,
    Compression, HEADER_LEN,
};

use crate::batch_common::sample_batch;

fn concat(batches: &[Vec<u8>]) -> Vec<u8> {
    batches.concat()
}

#[test]
fn iterates_back_to_back_batches_and_stops_at_a_truncated_tail() {
    let batches = [
        sample_batch(Compression::None, 3),
        sample_batch(Compression::Zstd, 5),
        sample_batch(Compression::None, 1),
    ];
    let whole = concat(&batches);
    let lens: Vec<usize> = batches.iter().map(Vec::len).collect();

    let mut it = BatchIter::new(&whole);
    let seen: Vec<usize> = it.by_ref().map(|v| v.unwrap().len()).collect();
    assert_eq!(seen, lens);
    assert_eq!(it.consumed(), whole.len());
    assert!(it.remaining().is_empty());
    assert!(!it.failed());

    // Cut inside the third batch's payload, then inside its header: both stop
    // cleanly after two batches, leaving the tail for the next read.
    let two = lens[0] + lens[1];
    for cut in [
        whole.len() - 1,
        two + HEADER_LEN + 1,
        two + HEADER_LEN - 1,
        two + 1,
    ] {
        let mut it = BatchIter::new(&whole[..cut]);
        assert_eq!(
            it.by_ref().filter_map(Result::ok).count(),
            2,
            "cut at {cut}"
        );
        assert_eq!(it.consumed(), two);
        assert_eq!(it.remaining(), &whole[two..cut]);
        assert!(!it.failed());
    }

    assert_eq!(BatchIter::new(&[]).count(), 0);
}

#[test]
fn a_malformed_header_yields_one_error_then_ends() {
    let good = sample_batch(Compression::None, 2);
    let mut bytes = good.clone();
    bytes.extend_from_slice(&[0xAB; HEADER_LEN + 10]);
    bytes.extend_from_slice(&good);

    let mut it = BatchIter::new(&bytes);
    assert!(it.next().unwrap().is_ok());
    assert!(matches!(it.next(), Some(Err(BatchError::BadMagic(_)))));
    assert!(it.next().is_none());
    assert!(it.next().is_none());
    assert!(it.failed());
    assert_eq!(it.consumed(), good.len());
}

#[test]
fn records_are_read_in_place_at_odd_positions_with_absolute_offsets() {
    let mut batch = sample_batch(Compression::None, 4);
    stamp_base_offset(&mut batch, 1_000);
    stamp_leader_epoch(&mut batch, 9);
    for shift in 1..8 {
        let mut buf = vec![0u8; shift];
        buf.extend_from_slice(&batch);
        let view = BatchView::new(&buf[shift..]).unwrap();
        assert_eq!(view.header().leader_epoch, 9);
        let records = view.validate_full().unwrap();
        assert!(
            records.is_borrowed(),
            "uncompressed records must not be copied"
        );
        let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![1_000, 1_001, 1_002, 1_003]);
        let value = records.get(3).unwrap().value();
        // The value lives inside `buf`: read in place, not copied.
        let range = buf.as_ptr_range();
        assert!(range.contains(&value.as_ptr()));
    }
}

#[test]
fn header_fields_follow_the_records() {
    let mut b = BatchBuilder::new(Compression::Zstd);
    b.push(500, Some(b"k"), b"v1", &[]);
    b.push(900, None, b"v2", &[]);
    b.push(100, None, b"v3", &[("h", b"x")]);
    let batch = b.finish().unwrap();
    let h = *BatchView::new(&batch).unwrap().header();
    assert_eq!((h.base_offset, h.leader_epoch, h.attributes), (0, 0, 0));
    assert_eq!((h.record_count, h.last_offset_delta), (3, 2));
    assert_eq!((h.first_timestamp, h.max_timestamp), (500, 900));
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (-1, -1, -1)
    );
    assert_eq!(h.codec, Compression::Zstd);
    assert_eq!(h.batch_length as usize, batch.len());

    let mut p = BatchBuilder::new(Compression::None).with_producer(77, 3, 1_000);
    p.push(1, None, b"", &[]);
    let batch = p.finish_into_mut().unwrap();
    let h = *BatchView::new(&batch).unwrap().header();
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (77, 3, 1_000)
    );

    let view = BatchView::new(&batch).unwrap();
    let records = view.validate_full().unwrap();
    let r = records.get(0).unwrap();
    assert_eq!(
        (r.offset, r.timestamp, r.key(), r.value()),
        (0, 1, None, &b""[..])
    );
}

#[test]
fn estimated_size_bounds_the_uncompressed_batch() {
    let mut b = BatchBuilder::new(Compression::None);
    assert!(b.is_empty());
    for i in 0..50u32 {
        let v = vec![i as u8; (i * 13) as usize];
        b.push(
            i64::from(i),
            Some(&i.to_le_bytes()),
            &v,
            &[("a-longer-header-name", b"v")],
        );
        let estimate = b.estimated_size();
        let actual = b.clone().finish().unwrap().len();
        assert!(estimate >= actual, "estimate {estimate} < actual {actual}");
        // Only inline short strings make the estimate exceed the real size.
        assert!(
            estimate - actual <= 16 * b.len(),
            "estimate {estimate} vs {actual}"
        );
    }
    assert_eq!(b.len(), 50);
}
