//! Integration tests of rill-storage, one binary (see STYLE.md).

mod io_conformance;
mod io_crash;
mod io_fallback;
mod log_append;
mod log_durability;
mod log_recovery;
mod log_support;
