//! Helpers shared by the batch tests: sample batches and in-place header edits.

use rill_protocol::batch::header::{OFFSET_BATCH_LENGTH, OFFSET_CRC, OFFSET_PAYLOAD_LENGTH};
use rill_protocol::batch::{compute_crc, BatchBuilder, Compression, HEADER_LEN};

/// A small batch with keys, no key, headers and growing timestamps.
pub fn sample_batch(compression: Compression, records: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(compression);
    for i in 0..records {
        let key = format!("key-{i}");
        let value = format!("value-{i}-{}", "x".repeat(i % 7));
        let key = (i % 3 != 0).then_some(key.as_bytes());
        b.push(
            1_700_000_000_000 + i as i64,
            key,
            value.as_bytes(),
            &[("trace", format!("t{i}").as_bytes())],
        );
    }
    b.finish().expect("sample batch builds").to_vec()
}

/// Recomputes and writes the CRC of a whole batch, so a test can reach the
/// checks that come after the CRC.
pub fn fix_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Replaces the payload of a valid batch, fixing both lengths and the CRC.
pub fn with_payload(batch: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = batch[..HEADER_LEN].to_vec();
    out.extend_from_slice(payload);
    let total = out.len() as u32;
    let payload_len = payload.len() as u32;
    out[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4].copy_from_slice(&total.to_le_bytes());
    out[OFFSET_PAYLOAD_LENGTH..OFFSET_PAYLOAD_LENGTH + 4]
        .copy_from_slice(&payload_len.to_le_bytes());
    fix_crc(&mut out);
    out
}

pub fn put_u32(batch: &mut [u8], at: usize, v: u32) {
    batch[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
