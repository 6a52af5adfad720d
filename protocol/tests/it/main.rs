//! rill-protocol integration tests: one binary, one module per concern.

mod batch_builder_payload;
mod batch_common;
mod batch_control;
mod batch_errors;
mod batch_fuzz;
mod batch_golden;
mod batch_iter;
mod batch_producer;
mod batch_roundtrip;
mod fuzz_corpus;
mod wire_codes;
mod wire_common;
mod wire_errors;
mod wire_fuzz;
mod wire_groups;
mod wire_roundtrip;
