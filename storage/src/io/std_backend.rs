//! Ordinary file I/O: `pwrite` and `fdatasync` on the I/O thread.

use std::os::unix::fs::FileExt;

use super::thread::{group_syncs, reply_all, Executor, Op};

pub(crate) struct StdExecutor;

impl Executor for StdExecutor {
    fn run(&mut self, ops: Vec<Op>) {
        let mut syncs = Vec::new();
        for op in ops {
            match op {
                Op::Write {
                    file,
                    pos,
                    data,
                    reply,
                } => {
                    let _ = reply.send(file.write_all_at(&data, pos));
                }
                Op::Sync { file, reply } => syncs.push((file, reply)),
            }
        }
        for (file, replies) in group_syncs(syncs) {
            let result = file.sync_data();
            reply_all(replies, &result);
        }
    }
}
