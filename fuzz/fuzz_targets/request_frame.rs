//! libFuzzer target `request_frame`: see `rill_fuzz::request_frame` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rill_fuzz::request_frame(data);
});
