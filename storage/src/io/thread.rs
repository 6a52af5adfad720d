//! The I/O thread shared by both real backends: it drains requests, hands a
//! drain to an [`Executor`] and replies. Backends differ only in the executor.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use super::{file_closed, BackendKind, Completion, IoBackend, IoStats, LogFile, Reply};

/// Most requests one drain takes before it runs them: bounds the latency
/// the first request in a drain pays for the ones behind it.
pub(crate) const DRAIN_OPS_MAX: usize = 256;

/// Depth of the request channel; a full channel blocks the submitter, which
/// is the backpressure of the whole storage layer.
const QUEUE_DEPTH: usize = 4096;

pub(crate) enum Op {
    Write {
        file: Arc<File>,
        pos: u64,
        data: Bytes,
        reply: Reply,
    },
    Sync {
        file: Arc<File>,
        reply: Reply,
    },
}

/// Runs one drain of requests. Implementations must reply to every op, reply
/// to writes in order, and issue at most one fdatasync per distinct file for
/// the syncs of a drain, after all its writes have completed.
pub(crate) trait Executor: Send + 'static {
    fn run(&mut self, ops: Vec<Op>);
}

/// What one backend has issued; shared by the backend (which reads it) and
/// its I/O thread (which counts).
#[derive(Debug, Default)]
pub(crate) struct IoCounters {
    data_syncs: AtomicU64,
    dir_syncs: AtomicU64,
}

impl IoCounters {
    fn snapshot(&self) -> IoStats {
        IoStats {
            data_syncs: self.data_syncs.load(Ordering::Relaxed),
            dir_syncs: self.dir_syncs.load(Ordering::Relaxed),
        }
    }
}

thread_local! {
    // Every executor reports the outcome of each fdatasync through
    // `reply_all`, once per sync issued; counting there, against the
    // counters of the backend that owns this I/O thread, counts the real
    // syncs of every executor at one place.
    static THREAD_COUNTERS: RefCell<Option<Arc<IoCounters>>> = const { RefCell::new(None) };
}

fn count_data_sync() {
    THREAD_COUNTERS.with(|c| {
        if let Some(counters) = c.borrow().as_ref() {
            counters.data_syncs.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// A backend whose writes and syncs run on one dedicated thread.
#[derive(Debug)]
pub struct ThreadBackend {
    kind: BackendKind,
    tx: Option<Sender<Op>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<IoCounters>,
}

impl ThreadBackend {
    /// The ordinary file I/O backend.
    pub fn std() -> io::Result<Self> {
        Self::spawn(BackendKind::Std, super::std_backend::StdExecutor)
    }

    /// The io_uring backend; fails when the kernel refuses a ring.
    pub fn uring() -> io::Result<Self> {
        let exec = super::uring::UringExecutor::new()?;
        Self::spawn(BackendKind::Uring, exec)
    }

    fn spawn(kind: BackendKind, mut exec: impl Executor) -> io::Result<Self> {
        let (tx, rx): (Sender<Op>, Receiver<Op>) = crossbeam_channel::bounded(QUEUE_DEPTH);
        let counters = Arc::new(IoCounters::default());
        let thread_counters = counters.clone();
        let thread = std::thread::Builder::new()
            .name(format!("rill-io-{}", kind.as_str()))
            .spawn(move || {
                THREAD_COUNTERS.with(|c| *c.borrow_mut() = Some(thread_counters));
                while let Ok(first) = rx.recv() {
                    let mut ops = Vec::with_capacity(16);
                    ops.push(first);
                    while ops.len() < DRAIN_OPS_MAX {
                        match rx.try_recv() {
                            Ok(op) => ops.push(op),
                            Err(_) => break,
                        }
                    }
                    exec.run(ops);
                }
            })?;
        Ok(ThreadBackend {
            kind,
            tx: Some(tx),
            thread: Some(thread),
            counters,
        })
    }

    fn sender(&self) -> Sender<Op> {
        self.tx.clone().expect("sender lives until drop")
    }
}

impl Drop for ThreadBackend {
    fn drop(&mut self) {
        // Closing the channel ends the thread once open files drop their
        // senders too; do not join here, a file may outlive the backend.
        self.tx.take();
        self.thread.take();
    }
}

impl IoBackend for ThreadBackend {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(ThreadFile {
            file: Arc::new(file),
            path: path.to_path_buf(),
            tx: self.sender(),
            closed: AtomicBool::new(false),
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let result = File::open(dir)?.sync_all();
        self.counters.dir_syncs.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn stats(&self) -> IoStats {
        self.counters.snapshot()
    }
}

#[derive(Debug)]
struct ThreadFile {
    file: Arc<File>,
    path: PathBuf,
    tx: Sender<Op>,
    closed: AtomicBool,
}

impl ThreadFile {
    fn submit(&self, make: impl FnOnce(Reply) -> Op) -> Completion {
        if self.closed.load(Ordering::Acquire) {
            return Completion::ready(Err(file_closed(&self.path)));
        }
        let (reply, completion) = Completion::channel();
        if self.tx.send(make(reply)).is_err() {
            return Completion::ready(Err(super::io_thread_gone()));
        }
        completion
    }
}

impl LogFile for ThreadFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn write_at(&self, pos: u64, data: Bytes) -> Completion {
        let file = self.file.clone();
        self.submit(|reply| Op::Write {
            file,
            pos,
            data,
            reply,
        })
    }

    fn sync_data(&self) -> Completion {
        let file = self.file.clone();
        self.submit(|reply| Op::Sync { file, reply })
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, pos)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(file_closed(&self.path));
        }
        self.file.set_len(len)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// Groups the sync requests of a drain by file, so each file gets one
/// fdatasync. Returns (file, replies) pairs in first-request order.
pub(crate) fn group_syncs(syncs: Vec<(Arc<File>, Reply)>) -> Vec<(Arc<File>, Vec<Reply>)> {
    let mut groups: Vec<(Arc<File>, Vec<Reply>)> = Vec::new();
    for (file, reply) in syncs {
        match groups.iter_mut().find(|(f, _)| Arc::ptr_eq(f, &file)) {
            Some((_, replies)) => replies.push(reply),
            None => groups.push((file, vec![reply])),
        }
    }
    groups
}

/// Sends the outcome of one fdatasync to every sync request it covered (and
/// counts that sync); `io::Error` is not `Clone`, so errors are rebuilt from
/// their kind and message.
pub(crate) fn reply_all(replies: Vec<Reply>, result: &io::Result<()>) {
    count_data_sync();
    for reply in replies {
        let r = match result {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        let _ = reply.send(r);
    }
}
