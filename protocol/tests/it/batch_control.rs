//! Control batches: the attribute bit is set, stays under the CRC, and the
//! one record carries the payload; ordinary batches never have it set.

use rill_protocol::batch::header::OFFSET_ATTRIBUTES;
use rill_protocol::batch::{
    stamp_base_offset, stamp_leader_epoch, BatchBuilder, BatchError, BatchView, Compression,
    ATTR_CONTROL,
};

#[test]
fn control_batch_has_the_bit_and_one_record_holding_the_payload() {
    let payload = br#"{"Membership":{"configs":[[1,2,3]]}}"#;
    let mut batch = BatchBuilder::control(0, payload).unwrap();
    stamp_base_offset(&mut batch, 42);
    stamp_leader_epoch(&mut batch, 7);
    let view = BatchView::new(&batch).unwrap();
    view.validate().unwrap();
    let h = view.header();
    assert!(h.is_control());
    assert_eq!(h.attributes, ATTR_CONTROL);
    assert_eq!((h.base_offset, h.leader_epoch, h.record_count), (42, 7, 1));
    assert_eq!((h.producer_id, h.codec), (-1, Compression::None));
    let records = view.validate_full().unwrap();
    assert_eq!(records.len(), 1);
    let r = records.get(0).unwrap();
    assert_eq!((r.key(), r.value()), (None, &payload[..]));
}

#[test]
fn ordinary_batches_are_not_control() {
    for codec in [Compression::None, Compression::Zstd] {
        let mut b = BatchBuilder::new(codec);
        b.push(1, Some(b"k"), b"v", &[]);
        let batch = b.finish().unwrap();
        assert!(!BatchView::new(&batch).unwrap().header().is_control());
    }
}

#[test]
fn the_control_bit_is_covered_by_the_crc() {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(1, None, b"v", &[]);
    let mut batch = b.finish_into_mut().unwrap();
    batch[OFFSET_ATTRIBUTES] |= ATTR_CONTROL as u8;
    let err = BatchView::new(&batch).unwrap().validate().unwrap_err();
    assert!(matches!(err, BatchError::CrcMismatch { .. }), "{err}");
}
