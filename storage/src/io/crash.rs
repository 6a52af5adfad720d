//! A backend that simulates crashes, for crash-consistency tests.
//!
//! [`CrashBackend`] does real I/O (through a std [`ThreadBackend`], so group
//! commit and completion order behave as in production) and also keeps, per
//! file, two images in memory:
//! - **written**: every write and length change applied, in call order —
//!   what the running process sees;
//! - **durable**: the written image as of that file's last `sync_data` call
//!   — what survives a crash.
//!
//! Directory entries are modelled the same way: a file created since the
//! last `sync_dir` of its directory is absent from the durable state, a file
//! removed since then is still present there (with its old contents, even
//! if a new file has been created under the same name).
//!
//! With `crash_at_sync = Some(n)`, the n-th `sync_data` call (1-based,
//! counted across all files) "crashes": it and every later write, sync,
//! length change, open, remove and directory sync fail with a "simulated
//! crash" error, and nothing reaches either image any more. Reads and `len`
//! keep working on the real files. [`CrashBackend::materialize_durable`] then
//! writes out what a machine would find after the crash, and
//! [`CrashBackend::materialize_torn`] what it might find if the unsynced
//! tail of each file was half written.
//!
//! What it does **not** model:
//! - reordering: unsynced writes of a file reach the torn image as an
//!   in-order prefix (byte-granular, the last one cut short); no later write
//!   lands without every earlier one, and no sector is ever garbled;
//! - a sync that was called but had not completed when the crash came: its
//!   snapshot is taken, and counts as durable, at the call;
//! - failed real I/O: a write whose real `pwrite` fails is still in the
//!   images (the caller sees the error and must treat the log as failed);
//! - directories themselves: their creation is assumed durable;
//! - writes racing a `set_len` of the same file: images apply calls in call
//!   order, the real file in completion order, so callers await writes first;
//! - files changed outside the backend after it opened them. A file that
//!   already exists when first opened is taken as fully durable.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use super::{file_closed, BackendKind, Completion, IoBackend, IoStats, LogFile, ThreadBackend};

/// Largest file image kept in memory; a write beyond it fails rather than
/// allocating without bound on a bad position.
const IMAGE_BYTES_MAX: u64 = 1 << 30;

const SIMULATED_CRASH: &str = "simulated crash";

/// The crash-simulating test backend; see the module docs.
pub struct CrashBackend {
    inner: ThreadBackend,
    state: Arc<Mutex<CrashState>>,
}

struct CrashState {
    crash_at_sync: Option<u64>,
    syncs: u64,
    crashed: bool,
    inodes: Vec<Inode>,
    /// Directory entries as the running process sees them.
    names: BTreeMap<PathBuf, usize>,
    /// Directory entries that would survive a crash.
    durable_names: BTreeMap<PathBuf, usize>,
}

#[derive(Default)]
struct Inode {
    written: Vec<u8>,
    durable: Vec<u8>,
    /// Changes since the last sync, in call order; the torn image applies a
    /// prefix of them.
    unsynced: Vec<Change>,
}

enum Change {
    Write { pos: u64, data: Bytes },
    SetLen(u64),
}

fn crash_error() -> io::Error {
    io::Error::other(SIMULATED_CRASH)
}

fn lock(state: &Mutex<CrashState>) -> MutexGuard<'_, CrashState> {
    // A panic while holding the lock leaves the images as they were between
    // two calls; the state is still meaningful, so keep going.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CrashBackend {
    /// A backend that crashes at the `crash_at_sync`-th `sync_data` call,
    /// or never with `None`. Fails only if the I/O thread cannot start.
    pub fn new(crash_at_sync: Option<u64>) -> io::Result<Self> {
        Ok(CrashBackend {
            inner: ThreadBackend::std()?,
            state: Arc::new(Mutex::new(CrashState {
                crash_at_sync,
                syncs: 0,
                crashed: false,
                inodes: Vec::new(),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
            })),
        })
    }

    /// `sync_data` calls so far, up to and including the crashing one.
    pub fn syncs(&self) -> u64 {
        lock(&self.state).syncs
    }

    pub fn crashed(&self) -> bool {
        lock(&self.state).crashed
    }

    /// Whether `e` is the error of an operation refused after the crash.
    pub fn is_crash_error(e: &io::Error) -> bool {
        e.kind() == io::ErrorKind::Other && e.to_string() == SIMULATED_CRASH
    }

    /// The durable contents of `path`, `None` when it would not exist after
    /// a crash.
    pub fn durable_image(&self, path: &Path) -> Option<Vec<u8>> {
        let key = std::path::absolute(path).ok()?;
        let state = lock(&self.state);
        let id = *state.durable_names.get(&key)?;
        state.inodes.get(id).map(|i| i.durable.clone())
    }

    /// The contents of `path` as the running process sees them.
    pub fn written_image(&self, path: &Path) -> Option<Vec<u8>> {
        let key = std::path::absolute(path).ok()?;
        let state = lock(&self.state);
        let id = *state.names.get(&key)?;
        state.inodes.get(id).map(|i| i.written.clone())
    }

    /// Writes the durable image of every file under `source_root` into
    /// `target_dir`, at the same relative path (creating directories).
    pub fn materialize_durable(&self, target_dir: &Path, source_root: &Path) -> io::Result<()> {
        self.materialize(target_dir, source_root, |inode| inode.durable.clone())
    }

    /// Like [`Self::materialize_durable`], plus, per file, a prefix of the
    /// changes not yet synced, cut at a byte chosen from `seed`: the image
    /// of a crash in the middle of writing the tail.
    pub fn materialize_torn(
        &self,
        target_dir: &Path,
        source_root: &Path,
        seed: u64,
    ) -> io::Result<()> {
        let mut rng = SplitMix64(seed);
        self.materialize(target_dir, source_root, |inode| torn_image(inode, &mut rng))
    }

    fn materialize(
        &self,
        target_dir: &Path,
        source_root: &Path,
        mut image: impl FnMut(&Inode) -> Vec<u8>,
    ) -> io::Result<()> {
        let root = std::path::absolute(source_root)?;
        let state = lock(&self.state);
        for (path, &id) in &state.durable_names {
            let Ok(rel) = path.strip_prefix(&root) else {
                continue;
            };
            let Some(inode) = state.inodes.get(id) else {
                continue;
            };
            let dest = target_dir.join(rel);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&dest, image(inode))?;
        }
        Ok(())
    }
}

impl fmt::Debug for CrashBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("CrashBackend")
            .field("crash_at_sync", &state.crash_at_sync)
            .field("syncs", &state.syncs)
            .field("crashed", &state.crashed)
            .field("files", &state.names.len())
            .finish()
    }
}

impl IoBackend for CrashBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Crash
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        let key = std::path::absolute(path)?;
        let mut state = lock(&self.state);
        if state.crashed {
            return Err(crash_error());
        }
        let existed = path.try_exists()?;
        let inner = self.inner.open(path)?;
        let id = match state.names.get(&key) {
            Some(&id) => id,
            None => {
                let id = state.inodes.len();
                if existed && !state.durable_names.contains_key(&key) {
                    // Already there before this backend: taken as durable.
                    let contents = std::fs::read(path)?;
                    state.inodes.push(Inode {
                        written: contents.clone(),
                        durable: contents,
                        unsynced: Vec::new(),
                    });
                    state.durable_names.insert(key.clone(), id);
                } else {
                    // Created by this open: not in the durable directory
                    // until its directory is synced (a durable entry under
                    // this name is an older, removed file).
                    state.inodes.push(Inode::default());
                }
                state.names.insert(key.clone(), id);
                id
            }
        };
        Ok(Arc::new(CrashFile {
            inner,
            inode: id,
            state: self.state.clone(),
            closed: AtomicBool::new(false),
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let key = std::path::absolute(path)?;
        let mut state = lock(&self.state);
        if state.crashed {
            return Err(crash_error());
        }
        self.inner.remove(path)?;
        state.names.remove(&key);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = std::path::absolute(dir)?;
        let mut state = lock(&self.state);
        if state.crashed {
            return Err(crash_error());
        }
        self.inner.sync_dir(&dir)?;
        let CrashState {
            names,
            durable_names,
            ..
        } = &mut *state;
        durable_names.retain(|p, _| p.parent() != Some(dir.as_path()));
        for (p, &id) in names.iter() {
            if p.parent() == Some(dir.as_path()) {
                durable_names.insert(p.clone(), id);
            }
        }
        Ok(())
    }

    fn stats(&self) -> IoStats {
        self.inner.stats()
    }
}

struct CrashFile {
    inner: Arc<dyn LogFile>,
    inode: usize,
    state: Arc<Mutex<CrashState>>,
    closed: AtomicBool,
}

impl fmt::Debug for CrashFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrashFile")
            .field("path", &self.inner.path())
            .field("inode", &self.inode)
            .finish()
    }
}

impl CrashFile {
    /// Locks the state for a mutating call, refusing it after a crash or a
    /// close. The lock is held across the real call too, so the images and
    /// the real file see calls in the same order.
    fn lock_for_change(&self) -> io::Result<MutexGuard<'_, CrashState>> {
        let state = lock(&self.state);
        if state.crashed {
            return Err(crash_error());
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(file_closed(self.inner.path()));
        }
        Ok(state)
    }
}

impl LogFile for CrashFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn write_at(&self, pos: u64, data: Bytes) -> Completion {
        let mut state = match self.lock_for_change() {
            Ok(s) => s,
            Err(e) => return Completion::ready(Err(e)),
        };
        let Some(inode) = state.inodes.get_mut(self.inode) else {
            return Completion::ready(Err(io::Error::other("crash backend lost a file's image")));
        };
        if let Err(e) = apply_write(&mut inode.written, pos, &data) {
            return Completion::ready(Err(e));
        }
        inode.unsynced.push(Change::Write {
            pos,
            data: data.clone(),
        });
        self.inner.write_at(pos, data)
    }

    fn sync_data(&self) -> Completion {
        let mut state = match self.lock_for_change() {
            Ok(s) => s,
            Err(e) => return Completion::ready(Err(e)),
        };
        state.syncs += 1;
        if state.crash_at_sync == Some(state.syncs) {
            state.crashed = true;
            tracing::info!(sync = state.syncs, "crash backend: simulated crash");
            return Completion::ready(Err(crash_error()));
        }
        if let Some(inode) = state.inodes.get_mut(self.inode) {
            inode.durable = inode.written.clone();
            inode.unsynced.clear();
        }
        self.inner.sync_data()
    }

    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(pos, buf)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.lock_for_change()?;
        let new_len = image_len(len)?;
        self.inner.set_len(len)?;
        if let Some(inode) = state.inodes.get_mut(self.inode) {
            inode.written.resize(new_len, 0);
            inode.unsynced.push(Change::SetLen(len));
        }
        Ok(())
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.inner.close();
    }
}

fn image_len(len: u64) -> io::Result<usize> {
    if len > IMAGE_BYTES_MAX {
        return Err(io::Error::other(format!(
            "crash backend keeps file images up to {IMAGE_BYTES_MAX} bytes, asked for {len}"
        )));
    }
    usize::try_from(len).map_err(|_| io::Error::other("file image length does not fit in memory"))
}

fn apply_write(image: &mut Vec<u8>, pos: u64, data: &[u8]) -> io::Result<()> {
    let end = image_len(pos.saturating_add(data.len() as u64))?;
    let start = end - data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    if let Some(dst) = image.get_mut(start..end) {
        dst.copy_from_slice(data);
    }
    Ok(())
}

/// The durable image plus the unsynced changes cut after a random number of
/// units: each written byte is a unit, each length change one more.
fn torn_image(inode: &Inode, rng: &mut SplitMix64) -> Vec<u8> {
    let units: u64 = inode
        .unsynced
        .iter()
        .map(|c| match c {
            Change::Write { data, .. } => data.len() as u64,
            Change::SetLen(_) => 1,
        })
        .sum();
    let mut budget = rng.below(units + 1);
    let mut image = inode.durable.clone();
    for change in &inode.unsynced {
        if budget == 0 {
            break;
        }
        match change {
            Change::Write { pos, data } => {
                let take = usize::try_from(budget)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                let part = data.get(..take).unwrap_or_default();
                // The write was applied to the written image already, so it
                // fits within IMAGE_BYTES_MAX.
                let _ = apply_write(&mut image, *pos, part);
                budget -= take as u64;
            }
            Change::SetLen(len) => {
                if let Ok(len) = image_len(*len) {
                    image.resize(len, 0);
                }
                budget -= 1;
            }
        }
    }
    image
}

/// Seeded generator for torn images: reproducible from the seed alone, and
/// keeps `rand` out of the library's dependencies.
struct SplitMix64(u64);

impl SplitMix64 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    const MIX_1: u64 = 0xBF58_476D_1CE4_E5B9;
    const MIX_2: u64 = 0x94D0_49BB_1331_11EB;

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(Self::GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(Self::MIX_1);
        z = (z ^ (z >> 27)).wrapping_mul(Self::MIX_2);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}
