//! io_uring: a drain's writes become one submission.

use std::io;

use super::thread::{Executor, Op};

pub(crate) struct UringExecutor {}

impl UringExecutor {
    pub(crate) fn new() -> io::Result<Self> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "io_uring backend not built yet"))
    }
}

impl Executor for UringExecutor {
    fn run(&mut self, _ops: Vec<Op>) {}
}
