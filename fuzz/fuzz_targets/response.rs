//! libFuzzer target `response`: see `rill_fuzz::response` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rill_fuzz::response(data);
});
