//! Each class of malformed batch gives its own typed error, found by the
//! cheapest check that can see it; shown by corrupting real built batches.

use rill_protocol::batch::header::{
    MAGIC, OFFSET_BASE_OFFSET, OFFSET_CODEC, OFFSET_FORMAT_VERSION, OFFSET_HEADER_LENGTH,
    OFFSET_LAST_OFFSET_DELTA, OFFSET_MAGIC, OFFSET_PAYLOAD_LENGTH, OFFSET_RECORD_COUNT,
};
use rill_protocol::batch::{
    stamp_base_offset, BatchBuilder, BatchError, BatchView, Compression, Record,
    RecordBatchHeaderField, HEADER_LEN,
};
use rill_protocol::limits::{BATCH_BYTES_MAX, BATCH_DECOMPRESSED_BYTES_MAX};

use crate::batch_common::{fix_crc, put_u32, sample_batch, with_payload};

#[test]
fn empty_builder_is_refused() {
    assert_eq!(
        BatchBuilder::new(Compression::None).finish(),
        Err(BatchError::Empty)
    );
    assert_eq!(
        BatchBuilder::new(Compression::Zstd).finish(),
        Err(BatchError::Empty)
    );
}

#[test]
fn short_input_is_truncated_not_a_panic() {
    let batch = sample_batch(Compression::None, 3);
    for len in [0, 1, HEADER_LEN - 1] {
        assert_eq!(
            BatchView::new(&batch[..len]).unwrap_err(),
            BatchError::Truncated {
                needed: HEADER_LEN,
                available: len
            }
        );
    }
    let cut = batch.len() - 1;
    assert_eq!(
        BatchView::new(&batch[..cut]).unwrap_err(),
        BatchError::Truncated {
            needed: batch.len(),
            available: cut
        }
    );
}

#[test]
fn wrong_magic_version_codec_are_refused() {
    let batch = sample_batch(Compression::None, 2);

    let mut b = batch.clone();
    put_u32(&mut b, OFFSET_MAGIC, MAGIC ^ 1);
    assert_eq!(
        BatchView::new(&b).unwrap_err(),
        BatchError::BadMagic(MAGIC ^ 1)
    );

    let mut b = batch.clone();
    b[OFFSET_FORMAT_VERSION] = 9;
    assert_eq!(
        BatchView::new(&b).unwrap_err(),
        BatchError::UnsupportedVersion(9)
    );

    let mut b = batch.clone();
    b[OFFSET_CODEC] = 7;
    assert_eq!(BatchView::new(&b).unwrap_err(), BatchError::UnknownCodec(7));
}

#[test]
fn inconsistent_lengths_are_refused() {
    let batch = sample_batch(Compression::None, 2);
    let bad_length = |b: &[u8]| match BatchView::new(b) {
        Err(BatchError::BadLength { field, .. }) => field,
        other => panic!("expected BadLength, got {other:?}"),
    };

    let mut b = batch.clone();
    b[OFFSET_HEADER_LENGTH] = 71;
    assert_eq!(bad_length(&b), RecordBatchHeaderField::HeaderLength);

    let mut b = batch.clone();
    put_u32(&mut b, OFFSET_PAYLOAD_LENGTH, 1);
    assert_eq!(bad_length(&b), RecordBatchHeaderField::PayloadLength);

    let mut b = batch.clone();
    put_u32(&mut b, OFFSET_RECORD_COUNT, 0);
    assert_eq!(bad_length(&b), RecordBatchHeaderField::RecordCount);

    let mut b = batch.clone();
    put_u32(&mut b, OFFSET_LAST_OFFSET_DELTA, 5);
    assert_eq!(bad_length(&b), RecordBatchHeaderField::LastOffsetDelta);
}

#[test]
fn crc_mismatch_is_caught_and_stamps_are_outside_the_crc() {
    let mut batch = sample_batch(Compression::Zstd, 4);
    BatchView::new(&batch).unwrap().validate().unwrap();
    stamp_base_offset(&mut batch, 123_456);
    BatchView::new(&batch).unwrap().validate().unwrap();

    let last = batch.len() - 1;
    batch[last] ^= 0x40;
    assert!(matches!(
        BatchView::new(&batch).unwrap().validate(),
        Err(BatchError::CrcMismatch { .. })
    ));
    assert!(matches!(
        BatchView::new(&batch).unwrap().validate_full(),
        Err(BatchError::CrcMismatch { .. })
    ));
    // The base offset field is not checksummed, so the corruption above is
    // the only thing validate() can be reporting.
    assert_ne!(OFFSET_BASE_OFFSET, last);
}

#[test]
fn garbage_payload_with_good_crc_is_a_bad_archive() {
    let batch = sample_batch(Compression::None, 3);
    let garbage = with_payload(&batch, &[0xff; 40]);
    let view = BatchView::new(&garbage).unwrap();
    view.validate().unwrap();
    assert!(matches!(view.records(), Err(BatchError::BadArchive(_))));
    assert!(matches!(
        view.validate_full(),
        Err(BatchError::BadArchive(_))
    ));

    let empty = with_payload(&batch, &[]);
    assert!(matches!(
        BatchView::new(&empty).unwrap().records(),
        Err(BatchError::BadArchive(_))
    ));
}

#[test]
fn record_count_must_match_the_archive() {
    let mut batch = sample_batch(Compression::None, 3);
    put_u32(&mut batch, OFFSET_RECORD_COUNT, 4);
    put_u32(&mut batch, OFFSET_LAST_OFFSET_DELTA, 3);
    fix_crc(&mut batch);
    let view = BatchView::new(&batch).unwrap();
    view.validate().unwrap();
    assert_eq!(
        view.records().unwrap_err(),
        BatchError::RecordCountMismatch {
            header: 4,
            archive: 3
        }
    );
}

#[test]
fn offset_deltas_must_be_dense() {
    let batch = sample_batch(Compression::None, 2);
    let records = vec![
        Record {
            offset_delta: 0,
            timestamp_delta: 0,
            key: None,
            value: b"a".to_vec(),
            headers: vec![],
        },
        Record {
            offset_delta: 2,
            timestamp_delta: 0,
            key: None,
            value: b"b".to_vec(),
            headers: vec![],
        },
    ];
    let archive = rkyv::to_bytes::<rkyv::rancor::Error>(&records).unwrap();
    let gappy = with_payload(&batch, &archive);
    let view = BatchView::new(&gappy).unwrap();
    // records() alone reads it (the archive is well formed) ...
    assert_eq!(view.records().unwrap().len(), 2);
    // ... but the full validation refuses the gap.
    assert_eq!(
        view.validate_full().unwrap_err(),
        BatchError::NonDenseOffsets {
            index: 1,
            offset_delta: 2
        }
    );
}

#[test]
fn corrupt_zstd_is_a_decompress_error() {
    let batch = sample_batch(Compression::Zstd, 5);
    let view = BatchView::new(&batch).unwrap();
    let mut payload = view.payload().to_vec();
    // Keep the frame magic, wreck the frame header and blocks.
    for b in payload.iter_mut().skip(4) {
        *b = !*b;
    }
    let bad = with_payload(&batch, &payload);
    assert!(matches!(
        BatchView::new(&bad).unwrap().records(),
        Err(BatchError::Decompress(_))
    ));

    let half = with_payload(&batch, &view.payload()[..view.payload().len() / 2]);
    assert!(matches!(
        BatchView::new(&half).unwrap().records(),
        Err(BatchError::Decompress(_))
    ));
}

/// Block size zstd allows at most (`ZSTD_BLOCKSIZE_MAX`).
const ZSTD_BLOCK_MAX: usize = 128 * 1024;

/// A hand-made zstd frame of RLE blocks that expands to `size` zero bytes
/// and declares no content size: only the decoder's output tells its size.
fn rle_frame(size: usize) -> Vec<u8> {
    let mut f = 0xFD2F_B528u32.to_le_bytes().to_vec();
    f.push(0x00); // descriptor: no content size, not single-segment, no checksum
    f.push(7 << 3); // window descriptor: 2^(10+7) = 128 KiB
    let mut left = size;
    while left > 0 {
        let n = left.min(ZSTD_BLOCK_MAX);
        left -= n;
        let last = u32::from(left == 0);
        let block_header = last | (1 << 1) | ((n as u32) << 3); // type 1 = RLE
        f.extend_from_slice(&block_header.to_le_bytes()[..3]);
        f.push(0);
    }
    f
}

#[test]
fn decompression_bomb_is_stopped_at_the_limit() {
    let batch = sample_batch(Compression::Zstd, 1);

    // The same frame shape below the limit decodes (and then fails later, on
    // the archive), so the bomb's error is down to its size alone.
    let small = with_payload(&batch, &rle_frame(2 * ZSTD_BLOCK_MAX));
    match BatchView::new(&small).unwrap().records() {
        Err(BatchError::BadArchive(_) | BatchError::RecordCountMismatch { .. }) => {}
        other => panic!("small RLE frame should decode then fail the archive check: {other:?}"),
    }

    let frame = rle_frame(BATCH_DECOMPRESSED_BYTES_MAX + 1);
    assert!(
        frame.len() < 16 * 1024,
        "the bomb is small: {} bytes",
        frame.len()
    );
    let bomb = with_payload(&batch, &frame);
    let view = BatchView::new(&bomb).unwrap();
    view.validate().unwrap();
    assert_eq!(
        view.records().unwrap_err(),
        BatchError::DecompressedTooLarge {
            limit: BATCH_DECOMPRESSED_BYTES_MAX
        }
    );
}

#[test]
fn oversized_batch_is_refused_by_the_builder() {
    let value = vec![7u8; BATCH_BYTES_MAX];
    let mut b = BatchBuilder::new(Compression::None);
    b.push(0, None, &value, &[]);
    assert!(b.estimated_size() > BATCH_BYTES_MAX);
    assert!(
        matches!(b.finish(), Err(BatchError::TooLarge { limit, .. }) if limit == BATCH_BYTES_MAX - HEADER_LEN)
    );

    // Compressed, the same bytes fit: the limit is on what goes on the wire.
    let mut z = BatchBuilder::new(Compression::Zstd);
    z.push(0, None, &value, &[]);
    let batch = z.finish().unwrap();
    assert!(batch.len() < BATCH_BYTES_MAX);
    let view = BatchView::new(&batch).unwrap();
    let records = view.validate_full().unwrap();
    assert_eq!(records.get(0).unwrap().value().len(), BATCH_BYTES_MAX);
}
