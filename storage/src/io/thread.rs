//! The I/O threads shared by both real backends: each drains its requests,
//! hands a drain to an [`Executor`] and replies. Backends differ only in the
//! executor.
//!
//! A backend may run several I/O threads ("lanes"), each with its own
//! executor (and ring). All files of one directory — one partition — go to
//! the same lane, so a partition's writes and syncs keep the single-thread
//! ordering and group commit, while different partitions' drains run in
//! parallel: a drain waits for all of its writes, and with one lane a large
//! write to one partition held back every other partition's writes. Lanes
//! are dealt to directories round robin in the order they are first opened.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use super::direct::{BufferPool, DirectFile, RecentBudget, Stager};

type DirectRegistry = HashMap<(u64, u64), (Weak<DirectFile>, Sender<Request>)>;
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

/// What a lane's channel carries: plain ops for the executor, and the
/// requests of direct-I/O files, which the lane stages into plain ops (see
/// `direct`).
pub(crate) enum Request {
    Plain(Op),
    DirectWrite {
        file: Arc<DirectFile>,
        pos: u64,
        data: Bytes,
        reply: Reply,
    },
    Trim {
        file: Arc<DirectFile>,
        durable: bool,
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
    direct_files: AtomicU64,
}

impl IoCounters {
    fn snapshot(&self) -> IoStats {
        IoStats {
            data_syncs: self.data_syncs.load(Ordering::Relaxed),
            dir_syncs: self.dir_syncs.load(Ordering::Relaxed),
            direct_files: self.direct_files.load(Ordering::Relaxed),
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

/// Most I/O threads one backend runs.
pub const IO_THREADS_MAX: usize = 64;

/// A backend whose writes and syncs run on dedicated threads (see the
/// module docs for how files are dealt to them).
#[derive(Debug)]
pub struct ThreadBackend {
    kind: BackendKind,
    /// One request channel per lane; emptied on drop so the threads end.
    lanes: Vec<Sender<Request>>,
    threads: Vec<JoinHandle<()>>,
    counters: Arc<IoCounters>,
    /// The lane of each directory seen so far, and the next lane to deal.
    dealt: Mutex<(HashMap<PathBuf, usize>, usize)>,
    /// Open files with `O_DIRECT` for writes (see `direct`).
    direct: bool,
    /// Set once a file system refused `O_DIRECT` (logged once).
    direct_refused: AtomicBool,
    /// Direct files open now, by (device, inode), with the lane serving
    /// them: a second handle on a file, under any path, must share its
    /// shadow (logical length, last block) and its lane, or it would see
    /// the padding, or write the shared last block from two threads.
    direct_open: Mutex<DirectRegistry>,
    /// Memory the direct files' recent windows hold together.
    recent_budget: Arc<RecentBudget>,
}

impl ThreadBackend {
    /// The ordinary file I/O backend, one I/O thread.
    pub fn std() -> io::Result<Self> {
        Self::std_threads(1)
    }

    /// The ordinary file I/O backend with `threads` I/O threads.
    pub fn std_threads(threads: usize) -> io::Result<Self> {
        Self::spawn(BackendKind::Std, threads, || {
            Ok(super::std_backend::StdExecutor)
        })
    }

    /// The io_uring backend, one I/O thread; fails when the kernel refuses
    /// a ring.
    pub fn uring() -> io::Result<Self> {
        Self::uring_threads(1)
    }

    /// The io_uring backend with `threads` I/O threads, each with its own
    /// ring; fails when the kernel refuses a ring.
    pub fn uring_threads(threads: usize) -> io::Result<Self> {
        Self::spawn(
            BackendKind::Uring,
            threads,
            super::uring::UringExecutor::new,
        )
    }

    fn spawn<E: Executor>(
        kind: BackendKind,
        threads: usize,
        make: impl Fn() -> io::Result<E>,
    ) -> io::Result<Self> {
        if threads == 0 || threads > IO_THREADS_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("io threads must be in 1..={IO_THREADS_MAX}, not {threads}"),
            ));
        }
        // Every executor is made before any thread starts, so a refused
        // ring fails the whole backend (the fallback signal) at once.
        let executors = (0..threads)
            .map(|_| make())
            .collect::<io::Result<Vec<E>>>()?;
        let counters = Arc::new(IoCounters::default());
        let mut lanes = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for (lane, exec) in executors.into_iter().enumerate() {
            let (tx, rx): (Sender<Request>, Receiver<Request>) =
                crossbeam_channel::bounded(QUEUE_DEPTH);
            let name = if threads == 1 {
                format!("rill-io-{}", kind.as_str())
            } else {
                format!("rill-io-{}-{lane}", kind.as_str())
            };
            handles.push(run_lane(name, exec, rx, Arc::clone(&counters))?);
            lanes.push(tx);
        }
        Ok(ThreadBackend {
            kind,
            lanes,
            threads: handles,
            counters,
            dealt: Mutex::new((HashMap::new(), 0)),
            direct: false,
            direct_refused: AtomicBool::new(false),
            direct_open: Mutex::new(HashMap::new()),
            recent_budget: Arc::default(),
        })
    }

    /// Writes segment files with `O_DIRECT` (see `direct`'s module docs);
    /// a file system that refuses it gets ordinary writes, with a warning.
    pub fn with_direct_io(mut self, direct: bool) -> Self {
        self.direct = direct;
        self
    }

    /// The direct side of `file` (just opened at `path`, to be served by
    /// `tx`'s lane) and the lane to use: the ones already open for the same
    /// inode, or new ones; `None` where the file system refuses `O_DIRECT`.
    fn direct_file(
        &self,
        path: &Path,
        file: &Arc<File>,
        tx: &Sender<Request>,
    ) -> io::Result<Option<(Arc<DirectFile>, Sender<Request>)>> {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata()?;
        // An open inode cannot be freed, so its number is not reused while
        // the entry's file is alive.
        let key = (meta.dev(), meta.ino());
        let mut open = self
            .direct_open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((weak, lane)) = open.get(&key) {
            if let Some(existing) = weak.upgrade() {
                return Ok(Some((existing, lane.clone())));
            }
        }
        let Some(fd) = self.open_direct(path)? else {
            return Ok(None);
        };
        let direct = Arc::new(DirectFile::new(
            fd,
            Arc::clone(file),
            Arc::clone(&self.recent_budget),
        )?);
        open.retain(|_, (w, _)| w.strong_count() > 0);
        open.insert(key, (Arc::downgrade(&direct), tx.clone()));
        self.counters.direct_files.fetch_add(1, Ordering::Relaxed);
        Ok(Some((direct, tx.clone())))
    }

    /// Opens `path` with `O_DIRECT` for writing, or `None` (logged once)
    /// where the file system refuses it.
    fn open_direct(&self, path: &Path) -> io::Result<Option<File>> {
        use std::os::unix::fs::OpenOptionsExt;
        match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                if !self.direct_refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(path = %path.display(), error = %e, "file system refuses O_DIRECT; writing its segments through the page cache");
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The request channel of the lane that serves files of `path`'s
    /// directory.
    fn sender(&self, path: &Path) -> io::Result<Sender<Request>> {
        let dir = path.parent().unwrap_or(path).to_path_buf();
        let lane = {
            let mut dealt = self.dealt.lock().unwrap_or_else(PoisonError::into_inner);
            let (map, next) = &mut *dealt;
            match map.get(&dir) {
                Some(&lane) => lane,
                None => {
                    let lane = *next % self.lanes.len().max(1);
                    *next = next.wrapping_add(1);
                    map.insert(dir, lane);
                    lane
                }
            }
        };
        self.lanes
            .get(lane)
            .cloned()
            .ok_or_else(super::io_thread_gone)
    }
}

/// Starts one I/O thread draining `rx` into `exec`.
fn run_lane(
    name: String,
    mut exec: impl Executor,
    rx: Receiver<Request>,
    counters: Arc<IoCounters>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(move || {
        THREAD_COUNTERS.with(|c| *c.borrow_mut() = Some(counters));
        let pool = Arc::new(BufferPool::default());
        while let Ok(first) = rx.recv() {
            let mut stager = Stager::new(&mut exec, &pool);
            stager.push(first);
            for _ in 1..DRAIN_OPS_MAX {
                match rx.try_recv() {
                    Ok(request) => stager.push(request),
                    Err(_) => break,
                }
            }
            stager.finish();
        }
    })
}

impl Drop for ThreadBackend {
    fn drop(&mut self) {
        // Closing the channels ends the threads once open files drop their
        // senders too; do not join here, a file may outlive the backend.
        self.lanes.clear();
        self.threads.clear();
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
        let file = Arc::new(file);
        let mut tx = self.sender(path)?;
        let mut direct = None;
        if self.direct {
            if let Some((d, lane)) = self.direct_file(path, &file, &tx)? {
                direct = Some(d);
                tx = lane;
            }
        }
        Ok(Arc::new(ThreadFile {
            file,
            direct,
            path: path.to_path_buf(),
            tx,
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
    /// Set when writes go through `O_DIRECT`; then it owns the length.
    direct: Option<Arc<DirectFile>>,
    path: PathBuf,
    tx: Sender<Request>,
    closed: AtomicBool,
}

impl ThreadFile {
    fn submit(&self, make: impl FnOnce(Reply) -> Request) -> Completion {
        if self.closed.load(Ordering::Acquire) {
            return Completion::ready(Err(file_closed(&self.path)));
        }
        self.send(make)
    }

    fn send(&self, make: impl FnOnce(Reply) -> Request) -> Completion {
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
        match &self.direct {
            Some(direct) => Ok(direct.len()),
            None => Ok(self.file.metadata()?.len()),
        }
    }

    fn write_at(&self, pos: u64, data: Bytes) -> Completion {
        match &self.direct {
            Some(direct) => {
                let file = Arc::clone(direct);
                self.submit(|reply| Request::DirectWrite {
                    file,
                    pos,
                    data,
                    reply,
                })
            }
            None => {
                let file = self.file.clone();
                self.submit(|reply| {
                    Request::Plain(Op::Write {
                        file,
                        pos,
                        data,
                        reply,
                    })
                })
            }
        }
    }

    fn sync_data(&self) -> Completion {
        let file = self.file.clone();
        self.submit(|reply| Request::Plain(Op::Sync { file, reply }))
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        match &self.direct {
            Some(direct) => direct.read_at(pos, buf),
            None => self.file.read_exact_at(buf, pos),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(file_closed(&self.path));
        }
        match &self.direct {
            Some(direct) => direct.set_len(len),
            None => self.file.set_len(len),
        }
    }

    fn trim(&self, durable: bool) -> Completion {
        match &self.direct {
            Some(direct) => {
                let file = Arc::clone(direct);
                self.send(|reply| Request::Trim {
                    file,
                    durable,
                    reply,
                })
            }
            None => Completion::ready(Ok(())),
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

impl Drop for ThreadFile {
    fn drop(&mut self) {
        // Whoever opens the file next (another backend, the next process)
        // reads its length from disk: cut what lies past the data, after
        // the writes still queued, and wait for it so the file is settled
        // when the drop returns. Files already unlinked (retention, a
        // rollback, a deleted topic: the drops that happen under the log's
        // lock) are skipped, and so are files with nothing past their data,
        // so the wait is for a live file with room, dropped unclosed.
        use std::os::unix::fs::MetadataExt;
        let Some(direct) = &self.direct else { return };
        // Nothing past the data (an empty or already trimmed file, most
        // drops): nothing to wait for.
        let must_cut = self
            .file
            .metadata()
            .is_ok_and(|m| m.nlink() > 0 && m.len() > direct.len());
        if must_cut {
            if let Err(e) = self.trim(false).wait() {
                tracing::warn!(path = %self.path.display(), error = %e, "could not cut the room past a direct-I/O file's data; recovery will");
            }
        }
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
/// counts that sync); `io::Error` is not `Clone`, so each gets a copy.
pub(crate) fn reply_all(replies: Vec<Reply>, result: &io::Result<()>) {
    count_data_sync();
    for reply in replies {
        let r = match result {
            Ok(()) => Ok(()),
            Err(e) => Err(super::copy_error(e)),
        };
        let _ = reply.send(r);
    }
}
