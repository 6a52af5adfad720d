//! Direct I/O (`O_DIRECT`) for segment files: writes skip the page cache.
//!
//! Why: a buffered write copies every byte into a freshly allocated
//! page-cache page, and later the kernel writes the dirty pages back. On a
//! virtual machine that hands freed memory back to its host, that copy costs
//! about a second of CPU per GB, and once dirty pages pile up to the
//! writeback threshold single `pwrite`s stall for tens of milliseconds. A
//! direct write goes from one of our reused buffers to the device, so
//! neither happens (Redpanda writes its log the same way).
//!
//! What it costs: `O_DIRECT` needs the offset, the length and the buffer
//! address aligned to [`DIRECT_ALIGN`]. Appends land anywhere, so the I/O
//! thread keeps a *shadow* of each file: its logical length and the bytes of
//! its last, partial block. An append is staged into an aligned buffer that
//! starts with that partial block, carries the new bytes and is padded with
//! zeros to the next block; consecutive appends of one drain are coalesced
//! into one buffer and one write. The file is also grown with `fallocate`
//! ahead of its data, so the file on disk is longer than its logical length.
//! [`LogFile::len`](super::LogFile::len) reports the logical length, reads
//! stop there, and `trim` (run when a segment is sealed, by the log's clean
//! close, and when a file is dropped) cuts the rest off. After a crash,
//! recovery cuts it like any torn tail: zeros never parse as a batch.
//!
//! Writes that are not appends (the log never issues them, but the
//! [`LogFile`](super::LogFile) contract allows them) wait for every earlier
//! write of the drain and go through the ordinary, buffered descriptor; the
//! kernel keeps the page cache and direct writes coherent.
//!
//! Reads are copied from the file's *recent window* (its newest written
//! buffers, kept after their write) when it holds them, so a consumer
//! tailing the log reads memory; older bytes are read from the device with
//! `O_DIRECT` too (a direct write leaves nothing in the page cache, and
//! filling fresh page-cache pages would cost what the write side saves).
//!
//! The lane holds a file's shadow lock (which readers take) only to stage
//! an append, never across an `fallocate`, `ftruncate` or `fdatasync`; the
//! rare length changes (`set_len`: rollback, truncation) and non-append
//! writes hold it across their own syscall.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use super::thread::{Executor, Op, Request};
use super::{Completion, Reply};

/// Alignment of direct writes: offset, length and buffer address. 4 KiB is
/// the page size and a multiple of every logical block size in use.
pub const DIRECT_ALIGN: usize = 4096;

/// Most bytes one coalesced write carries (a single larger append goes
/// alone); a longer run of appends goes out as several writes, which the
/// executors order, as they overlap in the shared partial block.
const RUN_BYTES_MAX: usize = 2 << 20;

/// Staging buffers a lane keeps for reuse: fresh memory costs as much as
/// the page-cache copy this module avoids.
const POOL_BUFFERS_MAX: usize = 64;

/// Staging buffers are at least this large, so small runs share sizes.
const POOL_BUFFER_MIN: usize = 64 << 10;

/// Larger buffers (one oversized batch) are freed, not pooled.
const POOL_BUFFER_KEEP_MAX: usize = RUN_BYTES_MAX + 2 * DIRECT_ALIGN;

/// Bytes of staging buffers each file keeps after they were written (its
/// "recent window"): reads of the newest data, a tailing consumer's, are
/// copied from memory instead of going to the device. Counted by buffer
/// capacity.
pub const RECENT_BYTES_MAX: usize = 32 << 20;

/// Bytes of recent windows all files of one backend keep together: a file
/// that appends while the total is above this keeps only its newest buffer.
/// So the windows are bounded by this plus one buffer per file that took
/// appends since it was opened (at most one run, 2 MiB, or one larger
/// batch, each), until such files are sealed or closed; each lane's pool
/// adds at most 64 buffers (`POOL_BUFFERS_MAX`) of at most 2 MiB.
pub const RECENT_BYTES_TOTAL_MAX: usize = 256 << 20;

/// What the recent windows of one backend's files hold together.
#[derive(Debug, Default)]
pub(crate) struct RecentBudget {
    used: AtomicUsize,
}

const _: () = assert!(DIRECT_ALIGN.is_power_of_two());

/// Largest cold-read buffer a thread keeps for reuse (a fetch's reads are
/// up to its `max_bytes`, 1 MiB by default; larger ones get a buffer of
/// their own).
const COLD_READ_BUF_KEEP_MAX: usize = 4 << 20;

thread_local! {
    // Per reader thread (tokio workers), so cold reads reuse warm memory.
    static COLD_READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn align_down(x: u64) -> u64 {
    x & !(DIRECT_ALIGN as u64 - 1)
}

fn align_up(x: usize) -> usize {
    x.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN
}

/// The direct side of one open file: its `O_DIRECT` descriptor and shadow.
#[derive(Debug)]
pub(crate) struct DirectFile {
    /// Opened with `O_DIRECT`; only aligned writes go through it.
    pub(crate) fd: Arc<File>,
    /// The ordinary descriptor of the same file (reads, unaligned writes,
    /// length changes).
    pub(crate) buffered: Arc<File>,
    shadow: Mutex<Shadow>,
    budget: Arc<RecentBudget>,
}

impl Drop for DirectFile {
    fn drop(&mut self) {
        self.shadow().forget_recent(&self.budget);
    }
}

#[derive(Debug)]
struct Shadow {
    /// Logical length: what the file holds once every staged write landed.
    len: u64,
    /// Bytes `[align_down(len), len)`: the head of the next append's buffer.
    tail: Vec<u8>,
    /// Size on disk as far as staging knows: at least `len`; more after
    /// padding and growth.
    size: u64,
    /// A trim cut the file and no durable trim has synced it since.
    cut_unsynced: bool,
    /// The newest staged buffers, oldest first, by file position.
    recent: VecDeque<Recent>,
    /// Capacity of the buffers in `recent`.
    recent_bytes: usize,
}

/// One staged buffer kept for reads: file bytes `[start, end)` are
/// `data[..end - start]` (the rest is padding).
#[derive(Debug)]
struct Recent {
    start: u64,
    end: u64,
    data: Bytes,
    capacity: usize,
}

impl Shadow {
    fn forget_recent(&mut self, budget: &RecentBudget) {
        self.recent.clear();
        budget.used.fetch_sub(self.recent_bytes, Ordering::Relaxed);
        self.recent_bytes = 0;
    }

    /// Keeps `recent`, then lets the oldest go while this file holds more
    /// than [`RECENT_BYTES_MAX`] or all files together more than
    /// [`RECENT_BYTES_TOTAL_MAX`]; the newest buffer always stays.
    fn remember(&mut self, recent: Recent, budget: &RecentBudget) {
        self.recent_bytes += recent.capacity;
        budget.used.fetch_add(recent.capacity, Ordering::Relaxed);
        self.recent.push_back(recent);
        while self.recent.len() > 1
            && (self.recent_bytes > RECENT_BYTES_MAX
                || budget.used.load(Ordering::Relaxed) > RECENT_BYTES_TOTAL_MAX)
        {
            if let Some(old) = self.recent.pop_front() {
                self.recent_bytes -= old.capacity;
                budget.used.fetch_sub(old.capacity, Ordering::Relaxed);
            }
        }
    }

    /// The pieces of `recent` that together hold `[pos, end)`, with the
    /// offset into each and the length to copy; `None` unless all of it is
    /// there.
    fn recent_pieces(&self, pos: u64, end: u64) -> Option<Vec<(Bytes, usize, usize)>> {
        let first = self.recent.front()?;
        if pos < first.start || end > self.len {
            return None;
        }
        let mut pieces = Vec::new();
        let mut cursor = pos;
        for r in &self.recent {
            if cursor == end {
                break;
            }
            if r.end <= cursor {
                continue;
            }
            if r.start > cursor {
                return None;
            }
            let upto = end.min(r.end);
            pieces.push((
                r.data.clone(),
                (cursor - r.start) as usize,
                (upto - cursor) as usize,
            ));
            cursor = upto;
        }
        (cursor == end).then_some(pieces)
    }
}

impl DirectFile {
    /// Wraps an open file; the shadow starts from what is on disk.
    pub(crate) fn new(
        fd: File,
        buffered: Arc<File>,
        budget: Arc<RecentBudget>,
    ) -> io::Result<Self> {
        let len = buffered.metadata()?.len();
        let tail = read_tail(&buffered, len)?;
        Ok(DirectFile {
            fd: Arc::new(fd),
            buffered,
            shadow: Mutex::new(Shadow {
                len,
                tail,
                size: len,
                cut_unsynced: false,
                recent: VecDeque::new(),
                recent_bytes: 0,
            }),
            budget,
        })
    }

    fn shadow(&self) -> MutexGuard<'_, Shadow> {
        self.shadow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn len(&self) -> u64 {
        self.shadow().len
    }

    /// Reads within the logical length only (the padding is not data);
    /// from the recent window when it holds the bytes.
    pub(crate) fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        let pieces = {
            let shadow = self.shadow();
            let len = shadow.len;
            let end = match pos.checked_add(buf.len() as u64) {
                Some(end) if end <= len => end,
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("read of {} bytes at {pos} past the end ({len})", buf.len()),
                    ))
                }
            };
            shadow.recent_pieces(pos, end)
        };
        let Some(pieces) = pieces else {
            return self.read_cold(pos, buf);
        };
        // Copied outside the lock: the lane stages under it.
        let mut at = 0usize;
        for (data, from, n) in pieces {
            let (Some(dst), Some(src)) = (buf.get_mut(at..at + n), data.get(from..from + n)) else {
                return Err(io::Error::other("recent window out of step with the file"));
            };
            dst.copy_from_slice(src);
            at += n;
        }
        Ok(())
    }

    /// Reads bytes older than the recent window: with `O_DIRECT` into a
    /// reused aligned buffer of this thread, then copied out. Through the
    /// page cache they would first be copied into freshly allocated pages
    /// (what direct I/O avoids on the write side), at about half the speed
    /// on our VM. Bytes up to the logical length are settled on disk: a
    /// write in flight to the shared last block rewrites them unchanged.
    fn read_cold(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = align_down(pos);
        let skip = (pos - start) as usize;
        let want = align_up(skip + buf.len());
        let result = COLD_READ_BUF.with(|cell| {
            let mut owned;
            let mut cached = cell.borrow_mut();
            let scratch: &mut Vec<u8> = if want + DIRECT_ALIGN <= COLD_READ_BUF_KEEP_MAX {
                &mut cached
            } else {
                owned = Vec::new();
                &mut owned
            };
            if scratch.len() < want + DIRECT_ALIGN {
                scratch.resize(want + DIRECT_ALIGN, 0);
            }
            let offset = scratch.as_ptr().align_offset(DIRECT_ALIGN);
            let aligned = scratch
                .get_mut(offset..offset + want)
                .ok_or_else(|| io::Error::other("cold read buffer too small"))?;
            let mut got = 0usize;
            while got < skip + buf.len() {
                let rest = aligned.get_mut(got..).unwrap_or_default();
                match self.fd.read_at(rest, start + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            let src = aligned
                .get(skip..skip + buf.len())
                .filter(|_| got >= skip + buf.len())
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than its length")
                })?;
            buf.copy_from_slice(src);
            Ok(())
        });
        match result {
            // A file system that takes O_DIRECT writes but not this read
            // (alignment it wants larger): the page cache still serves it.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.buffered.read_exact_at(buf, pos)
            }
            other => other,
        }
    }

    /// Truncates or extends the file; the shadow follows.
    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        let mut shadow = self.shadow();
        shadow.forget_recent(&self.budget);
        self.buffered.set_len(len)?;
        shadow.tail = read_tail(&self.buffered, len)?;
        shadow.len = len;
        shadow.size = len;
        // The next durable trim (a clean close) syncs this length too.
        shadow.cut_unsynced = true;
        Ok(())
    }

    /// Cuts what lies past the logical length off (the caller has run
    /// every earlier write); with `durable`, also makes every cut so far
    /// durable, so a clean restart finds the logical length. Also drops the
    /// recent window: trim runs when the file takes no more appends (a
    /// sealed segment, a closing log, a dropped handle).
    fn trim(&self, durable: bool) -> io::Result<()> {
        let len = {
            let mut shadow = self.shadow();
            shadow.forget_recent(&self.budget);
            shadow.len
        };
        // The size on disk, not the shadow's: a failed `fallocate` may have
        // grown the file part of the way.
        if self.buffered.metadata()?.len() > len {
            self.buffered.set_len(len)?;
            let mut shadow = self.shadow();
            shadow.cut_unsynced = true;
            if shadow.len == len {
                shadow.size = len;
            }
        }
        if durable && self.shadow().cut_unsynced {
            self.buffered.sync_data()?;
            self.shadow().cut_unsynced = false;
        }
        Ok(())
    }
}

/// The bytes of `file`'s last partial block, given its length.
fn read_tail(file: &File, len: u64) -> io::Result<Vec<u8>> {
    let start = align_down(len);
    let mut tail = vec![0u8; (len - start) as usize];
    file.read_exact_at(&mut tail, start)?;
    Ok(tail)
}

/// Reused, page-aligned staging buffers of one lane.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// An aligned buffer holding exactly `parts` followed by zeros up to the
    /// next multiple of [`DIRECT_ALIGN`].
    fn fill(self: &Arc<Self>, parts: &[&[u8]]) -> (Bytes, usize) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let padded = align_up(len);
        let need = padded + DIRECT_ALIGN;
        let mut vec = {
            let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
            // Best fit, and not far too large: a small run must not hold a
            // large buffer in its file's recent window.
            let too_large = need.saturating_mul(4).max(POOL_BUFFER_MIN);
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= need && v.capacity() <= too_large)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i);
            match best {
                Some(i) => free.swap_remove(i),
                None => Vec::with_capacity(need.max(POOL_BUFFER_MIN)),
            }
        };
        vec.clear();
        // The capacity covers `need`, so nothing below reallocates and the
        // aligned start found here stays put.
        let start = vec.as_ptr().align_offset(DIRECT_ALIGN);
        vec.resize(start, 0);
        for part in parts {
            vec.extend_from_slice(part);
        }
        vec.resize(start + padded, 0);
        let capacity = vec.capacity();
        let bytes = Bytes::from_owner(Pooled {
            vec,
            start,
            pool: Arc::clone(self),
        });
        (bytes, capacity)
    }

    fn give_back(&self, vec: Vec<u8>) {
        if vec.capacity() > POOL_BUFFER_KEEP_MAX {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < POOL_BUFFERS_MAX {
            free.push(vec);
        }
    }
}

/// A staging buffer lent to an executor; returns to its pool when the
/// write's last reference drops.
struct Pooled {
    vec: Vec<u8>,
    start: usize,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        self.vec.get(self.start..).unwrap_or_default()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.vec));
    }
}

/// One coalesced run of appends to one file.
struct Run {
    file: Arc<DirectFile>,
    /// Aligned file offset of the buffer's first byte.
    start: u64,
    /// The file's partial last block when the run began.
    head: Vec<u8>,
    pieces: Vec<Bytes>,
    bytes: usize,
    replies: Vec<Reply>,
}

/// Lane-side state of a drain: writes for the executor, runs being
/// gathered, and the drain's syncs, which run once at its end (after every
/// write of the drain, one fdatasync per file), however often a trim or a
/// non-append write makes the writes run early.
pub(crate) struct Stager<'a, E: Executor> {
    exec: &'a mut E,
    pool: &'a Arc<BufferPool>,
    ops: Vec<Op>,
    syncs: Vec<Op>,
    runs: Vec<Run>,
}

impl<'a, E: Executor> Stager<'a, E> {
    pub(crate) fn new(exec: &'a mut E, pool: &'a Arc<BufferPool>) -> Self {
        Stager {
            exec,
            pool,
            ops: Vec::new(),
            syncs: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Runs what the drain left: its writes, then its syncs.
    pub(crate) fn finish(mut self) {
        self.run_writes();
        let syncs = std::mem::take(&mut self.syncs);
        if !syncs.is_empty() {
            self.exec.run(syncs);
        }
    }

    /// Takes one request of the drain, in drain order.
    pub(crate) fn push(&mut self, request: Request) {
        match request {
            Request::Plain(op @ Op::Sync { .. }) => self.syncs.push(op),
            Request::Plain(op) => self.ops.push(op),
            Request::DirectWrite {
                file,
                pos,
                data,
                reply,
            } => self.direct_write(file, pos, data, reply),
            Request::Trim {
                file,
                durable,
                reply,
            } => {
                self.run_writes();
                let result = file.trim(durable);
                if let Err(e) = &result {
                    // The caller may not wait for it (a roll does not).
                    tracing::warn!(error = %e, "cutting the padding of direct writes failed; recovery will");
                }
                // Let go of the file before answering (see `run_writes`).
                drop(file);
                let _ = reply.send(result);
            }
        }
    }

    fn direct_write(&mut self, file: Arc<DirectFile>, pos: u64, data: Bytes, reply: Reply) {
        let mut shadow = file.shadow();
        if pos != shadow.len {
            drop(shadow);
            // Not an append: the bytes around it are whatever the earlier
            // writes leave, so run them first and write through the page
            // cache.
            self.run_writes();
            let result = unaligned_write(&file, pos, &data);
            drop(file);
            let _ = reply.send(result);
            return;
        }
        let open = self
            .runs
            .iter()
            .rposition(|r| Arc::ptr_eq(&r.file, &file))
            .filter(|&i| {
                self.runs
                    .get(i)
                    .is_some_and(|r| r.bytes + data.len() <= RUN_BYTES_MAX)
            });
        let run = match open {
            Some(i) => self.runs.get_mut(i),
            None => {
                self.runs.push(Run {
                    file: Arc::clone(&file),
                    start: align_down(shadow.len),
                    head: shadow.tail.clone(),
                    pieces: Vec::new(),
                    bytes: 0,
                    replies: Vec::new(),
                });
                self.runs.last_mut()
            }
        };
        let new_len = shadow.len + data.len() as u64;
        let tail_len = (new_len - align_down(new_len)) as usize;
        if align_down(new_len) == align_down(shadow.len) {
            shadow.tail.extend_from_slice(&data);
        } else {
            shadow.tail.clear();
            shadow
                .tail
                .extend_from_slice(data.get(data.len() - tail_len..).unwrap_or_default());
        }
        shadow.len = new_len;
        drop(shadow);
        if let Some(run) = run {
            run.bytes += data.len();
            run.pieces.push(data);
            run.replies.push(reply);
        }
    }

    /// Hands the writes staged so far to the executor and replies to the
    /// runs' appends (the drain's syncs wait for `finish`).
    fn run_writes(&mut self) {
        let mut fanout = Vec::with_capacity(self.runs.len());
        for run in self.runs.drain(..) {
            let mut parts: Vec<&[u8]> = Vec::with_capacity(run.pieces.len() + 1);
            parts.push(&run.head);
            parts.extend(run.pieces.iter().map(|p| p.as_ref()));
            let (data, capacity) = self.pool.fill(&parts);
            let staged = run.head.len() + run.bytes;
            grow(&run.file, run.start + data.len() as u64);
            let recent = Recent {
                start: run.start,
                end: run.start + staged as u64,
                data: data.clone(),
                capacity,
            };
            let (reply, completion) = Completion::channel();
            self.ops.push(Op::Write {
                file: Arc::clone(&run.file.fd),
                pos: run.start,
                data,
                reply,
            });
            fanout.push((completion, run.file, recent, run.replies));
        }
        // Answered before any fsync of the drain, as the executors do on
        // their own: an acks=leader append must not wait for another
        // partition's fsync.
        let writes = std::mem::take(&mut self.ops);
        if !writes.is_empty() {
            self.exec.run(writes);
        }
        for (completion, file, recent, replies) in fanout {
            // The executor has replied to every op it ran, so this is ready.
            let result = completion.wait();
            if result.is_ok() {
                // Only bytes that reached the file may be served from memory.
                file.shadow().remember(recent, &file.budget);
            }
            // Let go of the file before answering: once its caller has its
            // answer and drops its handles, the shadow must be gone, or a
            // reopen would share it instead of reading the file from disk.
            drop(file);
            for reply in replies {
                let r = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(super::copy_error(e)),
                };
                let _ = reply.send(r);
            }
        }
    }
}

/// Makes room for a write ending at `end`: past the size on disk, the
/// file is grown by [`DIRECT_GROW_BYTES`] at once with `fallocate`, so
/// appends overwrite allocated space within the file's size instead of
/// extending it one write at a time (each extending direct write is a
/// journal transaction of its own, and waits on the journal's commits).
/// Runs outside the shadow lock: only this file's lane grows it.
fn grow(file: &DirectFile, end: u64) {
    use std::os::fd::AsRawFd;
    let size = file.shadow().size;
    if end <= size {
        return;
    }
    let target = end + DIRECT_GROW_BYTES;
    let grown = match (
        libc::off_t::try_from(size),
        libc::off_t::try_from(target - size),
    ) {
        (Ok(offset), Ok(len)) => {
            // SAFETY: a plain syscall on an fd `file.buffered` keeps open;
            // no memory is passed.
            let rc = unsafe { libc::fallocate(file.buffered.as_raw_fd(), 0, offset, len) };
            rc == 0
        }
        _ => false,
    };
    let new_size = if grown {
        target
    } else {
        // No room reserved (full disk, a file system without it): the write
        // extends the file itself and reports its own error. A failed
        // `fallocate` may still have grown the file part of the way.
        file.buffered.metadata().map_or(end, |m| m.len()).max(end)
    };
    let mut shadow = file.shadow();
    shadow.size = shadow.size.max(new_size);
}

/// How far ahead of its appends a direct file is grown: a few `fallocate`s
/// per second at full speed, and at most this much reserved and unused per
/// active segment (cut at roll and close).
pub const DIRECT_GROW_BYTES: u64 = 4 << 20;

/// A write that is not an append, through the page cache; the shadow
/// follows what it changed.
fn unaligned_write(file: &DirectFile, pos: u64, data: &[u8]) -> io::Result<()> {
    let mut shadow = file.shadow();
    shadow.forget_recent(&file.budget);
    file.buffered.write_all_at(data, pos)?;
    let end = pos + data.len() as u64;
    shadow.len = shadow.len.max(end);
    shadow.size = shadow.size.max(end);
    // The write may have touched the partial last block; re-read it.
    shadow.tail = read_tail(&file.buffered, shadow.len)?;
    Ok(())
}
