//! Integration tests of rill-storage, one binary (see STYLE.md).

mod crash_window;
mod io_conformance;
mod io_crash;
mod io_fallback;
mod log_append;
mod log_direct;
mod log_durability;
mod log_full_disk;
mod log_producers;
mod log_read_crc;
mod log_read_only;
mod log_recovery;
mod log_regressions;
mod log_replica;
mod log_support;
