//! libFuzzer target `batch`: see `rill_fuzz::batch` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rill_fuzz::batch(data);
});
