//! I/O backends: how segment bytes reach the file and the disk.
//!
//! Every backend is driven by one or more I/O threads ("lanes"), each fed
//! over its own crossbeam channel; all files of one directory (partition)
//! are served by the same lane. A thread drains whatever has queued up, runs the
//! writes of that drain together (one io_uring submission, or a run of
//! `pwrite`s), replies to them, then runs **one** `fdatasync` per file for
//! every sync request in the drain. While a sync is in flight new requests
//! queue up and are covered by the next one: that is group commit, and it
//! needs no timer.
//!
//! Reads and metadata calls (`len`, `set_len`, `read_at`) are synchronous
//! `pread`/`ftruncate` calls on the caller's thread: they hit the page cache
//! and must never queue behind a slow fsync.
//!
//! # Contract of a [`LogFile`]
//! - `write_at` completes once its bytes are readable through `read_at`.
//!   Completions of one file arrive in submission order: when a write's
//!   completion resolves, every write submitted before it to any file of
//!   the same directory has completed too (files of other directories may
//!   be on another lane and are not ordered against it).
//! - Writes of one file take effect in submission order: of two queued
//!   writes to overlapping bytes, the later one wins.
//! - `sync_data` completes once every write that completed before it was
//!   called is durable. A failed sync must not be retried by the caller:
//!   what reached the disk is unknown.
//! - After [`LogFile::close`], writes, syncs and length changes of that file
//!   fail with [`file_closed`]'s error; reads keep working, since a reader
//!   may still hold the file while the log moves on.
//!
//! # Layout
//! - `thread`: the I/O thread shared by the real backends ([`ThreadBackend`]).
//! - `std_backend`: `pwrite` + `fdatasync` executor.
//! - `uring`: io_uring executor (one submission per drain).
//! - `read_only`: segment files opened `O_RDONLY` for a read-only log.
//! - `crash`: [`CrashBackend`], real files plus in-memory "written" and
//!   "durable" images, for crash-consistency tests.

mod crash;
mod direct;
mod read_only;
mod std_backend;
mod thread;
mod uring;

use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::oneshot;

pub use crash::CrashBackend;
pub use direct::DIRECT_ALIGN;
pub use thread::{ThreadBackend, IO_THREADS_MAX};

/// Counters of what a backend really asked of the kernel, for tests and
/// metrics: they count issued calls (or io_uring SQEs), not requests, so
/// the effect of group commit is visible.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IoStats {
    /// `fdatasync` calls (std) or `Fsync` SQEs with `DATASYNC` (io_uring)
    /// completed, successful or not.
    pub data_syncs: u64,
    /// Directory fsyncs (`sync_dir`).
    pub dir_syncs: u64,
    /// Files opened for `O_DIRECT` writes.
    pub direct_files: u64,
}

/// Which backend to use, as chosen in config (`io_backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoBackendChoice {
    /// io_uring where the kernel allows it, else std with a log line.
    #[default]
    Auto,
    Uring,
    Std,
}

impl std::str::FromStr for IoBackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "uring" | "io_uring" => Ok(Self::Uring),
            "std" => Ok(Self::Std),
            other => Err(format!(
                "unknown io_backend {other:?}: expected auto, uring or std"
            )),
        }
    }
}

/// The backend actually running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Uring,
    Std,
    /// Test backend that simulates crashes (see `CrashBackend`).
    Crash,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Uring => "uring",
            BackendKind::Std => "std",
            BackendKind::Crash => "crash",
        }
    }
}

/// Opens files for the log. One backend serves many partitions.
pub trait IoBackend: Send + Sync + fmt::Debug + 'static {
    fn kind(&self) -> BackendKind;
    /// Opens `path` for reading and writing, creating it when missing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn LogFile>>;
    /// Opens an existing `path` for reading only (`O_RDONLY`): for a log on
    /// a read-only data directory. Its writes, syncs and length changes
    /// fail with `ErrorKind::ReadOnlyFilesystem`. The default opens it with
    /// std directly: reads never go through the I/O thread anyway.
    fn open_read_only(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        Ok(Arc::new(read_only::ReadOnlyFile::open(path)?))
    }
    /// Deletes a file (retention, truncation of whole segments).
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (created, removed files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// What this backend has issued so far. Backends that do not count
    /// report zeros.
    fn stats(&self) -> IoStats {
        IoStats::default()
    }
}

/// One open file. See the module docs for the ordering contract.
pub trait LogFile: Send + Sync + fmt::Debug {
    fn path(&self) -> &Path;
    fn len(&self) -> io::Result<u64>;
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Queues a write of `data` at `pos`.
    fn write_at(&self, pos: u64, data: Bytes) -> Completion;
    /// Queues an fdatasync covering every write completed before this call.
    fn sync_data(&self) -> Completion;
    /// Reads exactly `buf.len()` bytes at `pos` (page cache read).
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Once every write queued before it has landed, makes the file's size
    /// on disk its `len()` again (direct I/O pads the last block and grows
    /// the file ahead, see `direct`); with `durable`, every such cut so far
    /// is synced too. Others have nothing to do, which the default says.
    fn trim(&self, durable: bool) -> Completion {
        let _ = durable;
        Completion::ready(Ok(()))
    }
    /// Refuses every later write, sync and length change of this file (they
    /// fail with [`file_closed`]'s error); writes queued before still
    /// complete. The default does nothing: a wrapper must forward it.
    fn close(&self) {}
}

/// An empty read-only file at `path` that does not exist on disk: the
/// active segment of an empty log that cannot be created.
pub(crate) fn absent_read_only(path: &Path) -> Arc<dyn LogFile> {
    Arc::new(read_only::ReadOnlyFile::absent(path))
}

/// The error of a write, sync or length change on a closed [`LogFile`].
pub fn file_closed(path: &Path) -> io::Error {
    io::Error::other(format!("{} is closed", path.display()))
}

/// Opens the backend the config asks for. With `Auto`, a refused io_uring
/// setup (old kernel, seccomp in a container, locked-memory limit) falls back
/// to std with a warning that says why.
pub fn open_backend(choice: IoBackendChoice) -> io::Result<Arc<dyn IoBackend>> {
    open_backend_with(choice, 1, false)
}

/// As [`open_backend`], with `threads` I/O threads (1..=[`IO_THREADS_MAX`];
/// each partition's files are served by one of them) and, with `direct`,
/// segment files written with `O_DIRECT` (see `direct`).
pub fn open_backend_with(
    choice: IoBackendChoice,
    threads: usize,
    direct: bool,
) -> io::Result<Arc<dyn IoBackend>> {
    let backend = match choice {
        IoBackendChoice::Std => ThreadBackend::std_threads(threads)?,
        IoBackendChoice::Uring => ThreadBackend::uring_threads(threads)?,
        IoBackendChoice::Auto => match ThreadBackend::uring_threads(threads) {
            Ok(b) => {
                tracing::info!(backend = "uring", "storage I/O backend selected");
                b
            }
            Err(e) => {
                tracing::warn!(error = %e, backend = "std", "io_uring unavailable; falling back to std file I/O");
                ThreadBackend::std_threads(threads)?
            }
        },
    };
    Ok(Arc::new(backend.with_direct_io(direct)))
}

/// Resolves when a queued write or sync has finished.
#[must_use = "a completion does nothing unless awaited or waited on"]
pub struct Completion(CompletionInner);

enum CompletionInner {
    Pending(oneshot::Receiver<io::Result<()>>),
    Ready(Option<io::Result<()>>),
}

/// The sending half handed to the I/O thread.
pub(crate) type Reply = oneshot::Sender<io::Result<()>>;

/// Finishes a [`Completion::pending`]. Dropping it unused resolves the
/// completion with the "I/O thread has stopped" error.
#[derive(Debug)]
pub struct CompletionHandle(Reply);

impl CompletionHandle {
    pub fn complete(self, result: io::Result<()>) {
        // The waiter may be gone (its future dropped); nothing to tell then.
        let _ = self.0.send(result);
    }
}

impl Completion {
    pub(crate) fn channel() -> (Reply, Completion) {
        let (tx, rx) = oneshot::channel();
        (tx, Completion(CompletionInner::Pending(rx)))
    }

    pub fn ready(result: io::Result<()>) -> Self {
        Completion(CompletionInner::Ready(Some(result)))
    }

    /// A completion finished later through its handle: how a [`LogFile`]
    /// implemented outside this crate (a wrapper that delays or fails
    /// operations) completes asynchronously.
    pub fn pending() -> (CompletionHandle, Completion) {
        let (reply, completion) = Self::channel();
        (CompletionHandle(reply), completion)
    }

    /// Blocks the calling thread until done. For start-up, recovery and
    /// tests; async code awaits instead.
    pub fn wait(self) -> io::Result<()> {
        pollster::block_on(self)
    }
}

/// A copy of `e` for one more waiter (`io::Error` is not `Clone`): the OS
/// error code survives, since callers act on it (`ENOSPC` rolls back).
pub(crate) fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

fn io_thread_gone() -> io::Error {
    io::Error::other("storage I/O thread has stopped")
}

impl Future for Completion {
    type Output = io::Result<()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            CompletionInner::Pending(rx) => match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(r)) => Poll::Ready(r),
                Poll::Ready(Err(_)) => Poll::Ready(Err(io_thread_gone())),
                Poll::Pending => Poll::Pending,
            },
            CompletionInner::Ready(r) => {
                Poll::Ready(r.take().unwrap_or_else(|| {
                    Err(io::Error::other("completion polled after it finished"))
                }))
            }
        }
    }
}
