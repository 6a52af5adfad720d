//! io_uring: a drain's writes become one submission, its syncs another.
//!
//! The executor owns one ring on the I/O thread. For a drain it pushes one
//! `Write` SQE per write (up to [`RING_ENTRIES`] in flight), waits for the
//! completions, resubmits the remainder of short writes, and replies to the
//! writes strictly in drain order: a write's reply is sent only once every
//! earlier write of the drain has completed, which is the ordering contract
//! of [`super::LogFile`]. Then it pushes one `Fsync(DATASYNC)` SQE per file
//! that had sync requests in the drain.
//!
//! SQEs of one submission may run in any order in the kernel, so a write is
//! held back while an earlier, unfinished write of the same file overlaps
//! it: overlapping writes take effect in submission order.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::Bytes;
use io_uring::{opcode, squeue, types, IoUring, Probe};

use super::thread::{group_syncs, reply_all, Executor, Op};
use super::Reply;

/// Submission queue size of the ring, and so the most operations in flight
/// at once. The completion queue is twice as large, so it cannot overflow.
/// Equal to the drain size, so one drain's writes usually go in one
/// submission.
const RING_ENTRIES: u32 = 256;

/// Most bytes one write SQE carries. The SQE length is a `u32` and Linux
/// caps one write below 2 GiB; a longer write goes out as a run of SQEs,
/// exactly like a short write's remainder.
const SQE_WRITE_BYTES_MAX: usize = 1 << 30;

const _: () = assert!(RING_ENTRIES as usize >= super::thread::DRAIN_OPS_MAX);
const _: () = assert!(SQE_WRITE_BYTES_MAX <= u32::MAX as usize);

pub(crate) struct UringExecutor {
    ring: IoUring,
    sqe_write_bytes_max: usize,
    /// Set when the ring itself failed (`io_uring_enter` returned an error
    /// other than a retryable one); every later operation fails with it,
    /// since what the kernel still holds is unknown.
    broken: Option<(io::ErrorKind, String)>,
    /// Files and buffers of SQEs that may still be in the kernel when the
    /// ring broke. Kept for as long as the ring exists (declared after it,
    /// so dropped after it) so the kernel never sees freed memory.
    orphans: Vec<(Arc<File>, Option<Bytes>)>,
}

impl UringExecutor {
    /// Sets up the ring. The error is the fallback signal: the kernel (or a
    /// seccomp policy, or the locked-memory limit) refuses io_uring.
    pub(crate) fn new() -> io::Result<Self> {
        Self::with_sqe_write_bytes_max(SQE_WRITE_BYTES_MAX)
    }

    fn with_sqe_write_bytes_max(sqe_write_bytes_max: usize) -> io::Result<Self> {
        let ring = IoUring::new(RING_ENTRIES)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::Write::CODE, "Write"),
            (opcode::Fsync::CODE, "Fsync"),
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("io_uring opcode {name} not supported by this kernel"),
                ));
            }
        }
        Ok(UringExecutor {
            ring,
            sqe_write_bytes_max: sqe_write_bytes_max.clamp(1, SQE_WRITE_BYTES_MAX),
            broken: None,
            orphans: Vec::new(),
        })
    }

    fn broken_error(&self) -> Option<io::Error> {
        self.broken
            .as_ref()
            .map(|(kind, msg)| io::Error::new(*kind, msg.clone()))
    }

    /// Submits what is queued and waits for `want` completions. `Ok(false)`
    /// means "interrupted, reap and come back"; an error breaks the ring.
    fn submit_and_wait(&mut self, want: usize) -> io::Result<bool> {
        match self.ring.submit_and_wait(want) {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
                ) =>
            {
                Ok(false)
            }
            Err(e) => {
                tracing::error!(error = %e, "io_uring submission failed; failing all later storage I/O");
                self.broken = Some((e.kind(), format!("io_uring submission failed: {e}")));
                Err(e)
            }
        }
    }

    fn run_writes(&mut self, mut writes: Vec<PendingWrite>) {
        let count = writes.len();
        let mut next_submit = 0;
        let mut next_reply = 0;
        let mut retry: Vec<usize> = Vec::new();
        let mut in_flight = 0usize;
        while next_reply < count {
            if let Some(err) = self.broken_error() {
                self.abandon_writes(&mut writes, &err);
                break;
            }
            self.push_writes(
                &mut writes,
                &mut retry,
                &mut next_submit,
                next_reply,
                &mut in_flight,
            );
            if in_flight == 0 {
                // Nothing in flight and nothing submittable: every write is
                // finished (the loop condition guards the rest).
                break;
            }
            if self.submit_and_wait(in_flight).is_err() {
                continue;
            }
            for cqe in self.ring.completion() {
                let idx = cqe.user_data() as usize;
                let Some(w) = writes.get_mut(idx) else {
                    tracing::error!(
                        user_data = cqe.user_data(),
                        "io_uring completion for an unknown write"
                    );
                    continue;
                };
                in_flight = in_flight.saturating_sub(1);
                if w.complete(cqe.result()) {
                    retry.push(idx);
                }
            }
            next_reply = reply_finished(&mut writes, next_reply);
        }
        let next_reply = reply_finished(&mut writes, next_reply);
        for w in writes.iter_mut().skip(next_reply) {
            // Unreachable unless the loop above lost track of a write; a
            // reply that never comes would hang its caller forever.
            tracing::error!(pos = w.pos, "io_uring write left unfinished");
            w.reply(Err(io::Error::other("io_uring write left unfinished")));
        }
    }

    /// Pushes remainders of short writes, then new writes in drain order
    /// until the ring is full or the next write overlaps an unfinished
    /// earlier one of the same file.
    fn push_writes(
        &mut self,
        writes: &mut [PendingWrite],
        retry: &mut Vec<usize>,
        next_submit: &mut usize,
        next_reply: usize,
        in_flight: &mut usize,
    ) {
        let mut sq = self.ring.submission();
        while *in_flight < RING_ENTRIES as usize && !sq.is_full() {
            let (idx, from_retry) = match retry.last() {
                Some(&idx) => (idx, true),
                None if *next_submit < writes.len() => (*next_submit, false),
                None => break,
            };
            if !from_retry && overlaps_unfinished(writes, next_reply, idx) {
                break;
            }
            let Some(w) = writes.get_mut(idx) else { break };
            if w.remaining() == 0 {
                // Zero-length write: nothing for the kernel to do.
                w.state = WriteState::Done(Ok(()));
            } else {
                let entry = w.entry(self.sqe_write_bytes_max).user_data(idx as u64);
                // SAFETY: the SQE points into `w.data`, a `Bytes` whose heap
                // buffer never moves and is not freed before this write's
                // CQE is reaped: `writes` lives until `run_writes` has reaped
                // every in-flight SQE (or, if the ring breaks, the buffer is
                // moved to `self.orphans`, which outlives the ring). The fd
                // stays open because `w.file` (an `Arc<File>`) is held
                // alongside the buffer for just as long.
                if unsafe { sq.push(&entry) }.is_err() {
                    break;
                }
                w.state = WriteState::InFlight;
                *in_flight += 1;
            }
            if from_retry {
                retry.pop();
            } else {
                *next_submit += 1;
            }
        }
    }

    /// The ring broke: whatever the kernel still holds is kept alive in
    /// `orphans`, and every unfinished write fails.
    fn abandon_writes(&mut self, writes: &mut [PendingWrite], err: &io::Error) {
        for w in writes.iter_mut() {
            match w.state {
                WriteState::InFlight => {
                    self.orphans.push((w.file.clone(), Some(w.data.clone())));
                    w.state = WriteState::Done(Err(super::copy_error(err)));
                }
                WriteState::Queued => w.state = WriteState::Done(Err(super::copy_error(err))),
                WriteState::Done(_) | WriteState::Replied => {}
            }
        }
    }

    fn run_syncs(&mut self, syncs: Vec<(Arc<File>, Reply)>) {
        let groups = group_syncs(syncs);
        let mut groups: Vec<Option<(Arc<File>, Vec<Reply>)>> =
            groups.into_iter().map(Some).collect();
        let mut pending: Vec<usize> = (0..groups.len()).rev().collect();
        let mut in_flight = 0usize;
        loop {
            if let Some(err) = self.broken_error() {
                for group in groups.iter_mut() {
                    if let Some((file, replies)) = group.take() {
                        self.orphans.push((file, None));
                        for reply in replies {
                            let _ = reply.send(Err(super::copy_error(&err)));
                        }
                    }
                }
                return;
            }
            {
                let mut sq = self.ring.submission();
                while in_flight < RING_ENTRIES as usize && !sq.is_full() {
                    let Some(&idx) = pending.last() else { break };
                    let Some(Some((file, _))) = groups.get(idx) else {
                        pending.pop();
                        continue;
                    };
                    let entry = opcode::Fsync::new(types::Fd(file.as_raw_fd()))
                        .flags(types::FsyncFlags::DATASYNC)
                        .build()
                        .user_data(idx as u64);
                    // SAFETY: an fsync SQE carries no buffer; its fd stays
                    // open because the `Arc<File>` in `groups` is held until
                    // the CQE is reaped (or moved to `self.orphans`, which
                    // outlives the ring, if the ring breaks).
                    if unsafe { sq.push(&entry) }.is_err() {
                        break;
                    }
                    pending.pop();
                    in_flight += 1;
                }
            }
            if in_flight == 0 {
                return;
            }
            if self.submit_and_wait(in_flight).is_err() {
                continue;
            }
            for cqe in self.ring.completion() {
                let idx = cqe.user_data() as usize;
                in_flight = in_flight.saturating_sub(1);
                let res = cqe.result();
                if res == -libc::EINTR || res == -libc::EAGAIN {
                    pending.push(idx);
                    continue;
                }
                let Some((_, replies)) = groups.get_mut(idx).and_then(Option::take) else {
                    tracing::error!(
                        user_data = cqe.user_data(),
                        "io_uring completion for an unknown sync"
                    );
                    continue;
                };
                let result = if res < 0 {
                    Err(io::Error::from_raw_os_error(-res))
                } else {
                    Ok(())
                };
                reply_all(replies, &result);
            }
        }
    }
}

impl Executor for UringExecutor {
    fn run(&mut self, ops: Vec<Op>) {
        let mut writes = Vec::new();
        let mut syncs = Vec::new();
        for op in ops {
            match op {
                Op::Write {
                    file,
                    pos,
                    data,
                    reply,
                } => writes.push(PendingWrite {
                    file,
                    pos,
                    data,
                    written: 0,
                    state: WriteState::Queued,
                    reply: Some(reply),
                }),
                Op::Sync { file, reply } => syncs.push((file, reply)),
            }
        }
        self.run_writes(writes);
        self.run_syncs(syncs);
    }
}

enum WriteState {
    /// Not in the kernel: never submitted, or a short write's remainder.
    Queued,
    InFlight,
    Done(io::Result<()>),
    Replied,
}

struct PendingWrite {
    file: Arc<File>,
    pos: u64,
    data: Bytes,
    /// Bytes of `data` the kernel has written so far.
    written: usize,
    state: WriteState,
    reply: Option<Reply>,
}

impl PendingWrite {
    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.written)
    }

    fn entry(&self, sqe_write_bytes_max: usize) -> squeue::Entry {
        let rest = self.data.get(self.written..).unwrap_or_default();
        let len = rest.len().min(sqe_write_bytes_max);
        // `len` is at most SQE_WRITE_BYTES_MAX, which fits in u32.
        opcode::Write::new(types::Fd(self.file.as_raw_fd()), rest.as_ptr(), len as u32)
            .offset(self.pos.saturating_add(self.written as u64))
            .build()
    }

    /// Applies a CQE result; returns true when the rest must be resubmitted.
    fn complete(&mut self, res: i32) -> bool {
        if res == -libc::EINTR || res == -libc::EAGAIN {
            self.state = WriteState::Queued;
            return true;
        }
        if res < 0 {
            self.state = WriteState::Done(Err(io::Error::from_raw_os_error(-res)));
            return false;
        }
        if res == 0 {
            self.state = WriteState::Done(Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "io_uring write wrote no bytes",
            )));
            return false;
        }
        self.written += res as usize;
        if self.remaining() == 0 {
            self.state = WriteState::Done(Ok(()));
            false
        } else {
            self.state = WriteState::Queued;
            true
        }
    }

    fn reply(&mut self, result: io::Result<()>) {
        self.state = WriteState::Replied;
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(result);
        }
    }

    fn finished(&self) -> bool {
        matches!(self.state, WriteState::Done(_) | WriteState::Replied)
    }
}

/// Replies to the finished writes from `next_reply` on, stopping at the
/// first unfinished one; returns the new `next_reply`.
fn reply_finished(writes: &mut [PendingWrite], mut next_reply: usize) -> usize {
    while let Some(w) = writes.get_mut(next_reply) {
        let state = std::mem::replace(&mut w.state, WriteState::Replied);
        match state {
            WriteState::Done(result) => w.reply(result),
            WriteState::Replied => {}
            other => {
                w.state = other;
                break;
            }
        }
        next_reply += 1;
    }
    next_reply
}

/// Whether write `idx` overlaps an unfinished earlier write of its file.
fn overlaps_unfinished(writes: &[PendingWrite], next_reply: usize, idx: usize) -> bool {
    let Some(w) = writes.get(idx) else {
        return false;
    };
    let end = w.pos.saturating_add(w.data.len() as u64);
    writes
        .get(next_reply..idx)
        .unwrap_or_default()
        .iter()
        .any(|e| {
            !e.finished()
                && Arc::ptr_eq(&e.file, &w.file)
                && e.pos < end
                && w.pos < e.pos.saturating_add(e.data.len() as u64)
        })
}

#[cfg(test)]
mod tests {
    //! Drives the executor directly with a tiny per-SQE cap, so every write
    //! is split and its remainder resubmitted: the short-write path, run
    //! against a real ring and a real file.
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::io::Completion;

    #[test]
    fn remainders_of_split_writes_land_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(dir.path().join("f"))
                .unwrap(),
        );
        let mut exec = UringExecutor::with_sqe_write_bytes_max(4096).unwrap();
        let chunk = 64 * 1024 + 123;
        let mut completions = Vec::new();
        let mut ops = Vec::new();
        let mut expected = Vec::new();
        for i in 0..8u8 {
            let data: Vec<u8> = (0..chunk).map(|j| (j as u8).wrapping_mul(7) ^ i).collect();
            expected.extend_from_slice(&data);
            let (reply, completion) = Completion::channel();
            completions.push(completion);
            ops.push(Op::Write {
                file: file.clone(),
                pos: (i as u64) * chunk as u64,
                data: Bytes::from(data),
                reply,
            });
        }
        // The same bytes rewritten with other contents: must win over the first.
        let (reply, completion) = Completion::channel();
        completions.push(completion);
        ops.push(Op::Write {
            file: file.clone(),
            pos: 10,
            data: Bytes::from_static(b"overwritten"),
            reply,
        });
        expected[10..21].copy_from_slice(b"overwritten");
        exec.run(ops);
        for c in completions {
            c.wait().unwrap();
        }
        let mut got = vec![0u8; expected.len()];
        file.read_exact_at(&mut got, 0).unwrap();
        assert!(got == expected, "file contents differ from the writes");
    }
}
