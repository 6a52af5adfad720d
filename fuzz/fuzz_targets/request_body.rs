//! libFuzzer target `request_body`: see `rill_fuzz::request_body` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rill_fuzz::request_body(data);
});
