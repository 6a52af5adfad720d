//! libFuzzer target `batch_iter`: see `rill_fuzz::batch_iter` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rill_fuzz::batch_iter(data);
});
