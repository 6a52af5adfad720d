//! Read-only segment files: what a log opened on a read-only data directory
//! reads through. Opened `O_RDONLY` with std, outside any I/O thread, since
//! nothing is ever queued: every write, sync and length change is refused.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Completion, LogFile};

/// A segment file opened for reading only. `file` is `None` for a segment
/// that does not exist on disk (an empty log in a directory that cannot be
/// written): it reads as an empty file.
#[derive(Debug)]
pub(crate) struct ReadOnlyFile {
    file: Option<File>,
    path: PathBuf,
}

impl ReadOnlyFile {
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        Ok(ReadOnlyFile {
            file: Some(File::open(path)?),
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn absent(path: &Path) -> Self {
        ReadOnlyFile {
            file: None,
            path: path.to_path_buf(),
        }
    }
}

fn refused(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::ReadOnlyFilesystem,
        format!("{} is opened read-only", path.display()),
    )
}

impl LogFile for ReadOnlyFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> io::Result<u64> {
        match &self.file {
            Some(f) => Ok(f.metadata()?.len()),
            None => Ok(0),
        }
    }

    fn write_at(&self, _pos: u64, _data: bytes::Bytes) -> Completion {
        Completion::ready(Err(refused(&self.path)))
    }

    fn sync_data(&self) -> Completion {
        Completion::ready(Err(refused(&self.path)))
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        match &self.file {
            Some(f) => f.read_exact_at(buf, pos),
            None if buf.is_empty() => Ok(()),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} does not exist (empty read-only segment)",
                    self.path.display()
                ),
            )),
        }
    }

    fn set_len(&self, _len: u64) -> io::Result<()> {
        Err(refused(&self.path))
    }
}
