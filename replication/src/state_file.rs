//! The small file beside a partition's log that holds the Raft state the
//! segments cannot: the vote, the committed and last purged log ids,
//! where the entries start (the anchor: which log index the batch at which
//! offset has) and the snapshot the last purge stood on.
//!
//! It lives outside the partition directory, which storage recovery owns
//! (it removes what it does not recognise there). Every write replaces it
//! whole: written to `<path>.tmp`, fsync'd, renamed over the old one, and
//! the directory fsync'd, so a crash leaves either the old or the new file.
//! The content is checksummed (CRC32C) and framed with a magic and a
//! length, so a torn or altered file is detected at open and refused:
//! silently starting from an empty vote could let this node vote twice in
//! a term.
//!
//! Layout: `b"RRST"`, u32 LE length of the body, u32 LE CRC32C of the body,
//! then the body: JSON of [`PersistedState`]. JSON because it is tiny,
//! written rarely next to the data, and readable by an operator.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ReplicationError;
use crate::types::{LogId, PartitionSnapshot, SnapshotMeta, Vote};

const MAGIC: &[u8; 4] = b"RRST";
const FRAME_LEN: usize = 12;
/// Bumped when the body changes incompatibly.
const VERSION: u32 = 1;
/// A state file is a few hundred bytes; anything much larger is not one.
const BODY_MAX: usize = 1024 * 1024;

/// The log index of the batch at one offset: the first entry of the Raft
/// log. Batches below `offset` are partition data no longer in the Raft
/// log (purged); the entries are the batches from `offset` to the log end,
/// in order, with consecutive indexes from `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Anchor {
    pub index: u64,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PersistedState {
    pub version: u32,
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub purged: Option<LogId>,
    /// `None` until the first append or purge.
    pub anchor: Option<Anchor>,
    /// The snapshot the last purge stood on (its last log id is
    /// `purged`): the state machine starts from it after a restart, and
    /// the leader sends it to a replica that lacks the purged entries.
    /// Absent in files written before retention on replicated partitions.
    #[serde(default)]
    pub snapshot: Option<SavedSnapshot>,
}

/// A data partition's snapshot as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedSnapshot {
    pub meta: SnapshotMeta,
    pub data: PartitionSnapshot,
}

impl Default for PersistedState {
    fn default() -> Self {
        PersistedState {
            version: VERSION,
            vote: None,
            committed: None,
            purged: None,
            anchor: None,
            snapshot: None,
        }
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Reads the state file; `None` if there is none.
pub(crate) fn read(path: &Path) -> Result<Option<PersistedState>, ReplicationError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ReplicationError::StateFileIo {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    decode(&bytes)
        .map(Some)
        .map_err(|reason| ReplicationError::StateFileCorrupt {
            path: path.to_path_buf(),
            reason,
        })
}

fn decode(bytes: &[u8]) -> Result<PersistedState, String> {
    let frame = bytes
        .get(..FRAME_LEN)
        .ok_or_else(|| format!("{} bytes, shorter than its frame", bytes.len()))?;
    if &frame[..4] != MAGIC {
        return Err("bad magic: not a raft state file".into());
    }
    let len = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize;
    let crc = u32::from_le_bytes([frame[8], frame[9], frame[10], frame[11]]);
    let body = &bytes[FRAME_LEN..];
    if body.len() != len {
        return Err(format!(
            "frame says {len} bytes of state, file holds {} (torn write?)",
            body.len()
        ));
    }
    let actual = crc32c::crc32c(body);
    if actual != crc {
        return Err(format!(
            "checksum mismatch: frame says {crc:#010x}, bytes give {actual:#010x}"
        ));
    }
    let state: PersistedState =
        serde_json::from_slice(body).map_err(|e| format!("unreadable state: {e}"))?;
    if state.version != VERSION {
        return Err(format!("unsupported state version {}", state.version));
    }
    Ok(state)
}

fn encode(state: &PersistedState) -> Result<Vec<u8>, String> {
    let body = serde_json::to_vec(state).map_err(|e| e.to_string())?;
    if body.len() > BODY_MAX {
        return Err(format!("state of {} bytes is too large", body.len()));
    }
    let mut out = Vec::with_capacity(FRAME_LEN + body.len());
    out.extend_from_slice(MAGIC);
    // Fits: bounded by BODY_MAX above.
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Replaces the state file with `state`, durably. Blocking: run it off the
/// async threads.
pub(crate) fn write(path: &Path, state: &PersistedState) -> Result<(), ReplicationError> {
    let bytes = encode(state).map_err(|reason| ReplicationError::StateFileCorrupt {
        path: path.to_path_buf(),
        reason,
    })?;
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ReplicationError::StateFileIo { path: p, source }
    };
    let tmp = tmp_path(path);
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_every_damage_is_detected() {
        let state = PersistedState {
            committed: Some(LogId::new_term_index(3, 9)),
            anchor: Some(Anchor {
                index: 1,
                offset: 0,
            }),
            ..PersistedState::default()
        };
        let bytes = encode(&state).unwrap();
        assert_eq!(decode(&bytes).unwrap(), state);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            assert!(decode(&bad).is_err(), "flip at {at}");
        }
    }
}
