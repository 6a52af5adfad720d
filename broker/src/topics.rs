//! The topic registry: which topics exist, their settings, their partition
//! logs, and how all of that survives a restart.
//!
//! On disk (under `data_dir`):
//! ```text
//! __meta/topics/<name>.toml    name, partition count, per-topic overrides
//! <name>-<partition>/          one PartitionLog directory per partition
//! ```
//! A metadata file is written as tmp + fsync + rename + fsync(dir), so a
//! crash leaves either the old or the new file, never half of one. The
//! metadata file is the truth: a topic exists iff its file does. Creation
//! writes it before opening the logs (a crash in between reopens them on
//! start); deletion removes it before the logs (a crash in between leaves
//! orphan directories, which a later creation of the same name removes
//! before opening, so old data never reappears under a new topic).
//!
//! Settings: a topic stores only its overrides (Kafka config strings such as
//! `retention.ms`), applied on top of the broker's current defaults each
//! time it is opened.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rill_storage::io::IoBackend;
use rill_storage::PartitionLog;
use serde::{Deserialize, Serialize};

use crate::metrics;
use crate::partition::Partition;
pub use crate::topic_config::{
    validate_topic_name, TopicConfig, INDEX_INTERVAL_BYTES, PARTITIONS_MAX, TOPIC_NAME_BYTES_MAX,
};

/// Prefix of the broker's internal topics (Kafka's convention); clients
/// cannot create topics with it.
pub const INTERNAL_TOPIC_PREFIX: &str = "__";
/// Where metadata lives under `data_dir`. Topic names cannot collide with
/// it: partition directories always carry a `-<n>` suffix.
pub(crate) const META_DIR: &str = "__meta";
const META_TOPICS_DIR: &str = "topics";
const META_EXT: &str = "toml";
const META_TMP_EXT: &str = "toml.tmp";
/// The marker `PartitionLog::close` leaves; its absence at open means the
/// log recovers (scans its active segment).
pub use rill_storage::CLEAN_SHUTDOWN_MARKER;

/// What failed in a topic operation; each maps to one wire error code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    #[error("invalid topic name: {0}")]
    InvalidName(String),
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("invalid topic config: {0}")]
    InvalidConfig(String),
    #[error("topic {0:?} already exists")]
    AlreadyExists(String),
    #[error("topic {0:?} does not exist")]
    Unknown(String),
    #[error("topic metadata I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt topic metadata {path}: {reason}")]
    BadMeta { path: PathBuf, reason: String },
    #[error("storage: {0}")]
    Storage(#[from] rill_storage::StorageError),
    /// The broker runs on a read-only data directory.
    #[error("data directory {dir} is read-only: topics cannot be created or deleted")]
    ReadOnly { dir: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TopicError + '_ {
    move |source| TopicError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `__meta/topics/<name>.toml` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicMeta {
    name: String,
    partitions: u32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

/// One topic: its settings and the partitions this broker hosts, in id
/// order (every partition on a lone broker; in cluster mode those this
/// broker has a replica of).
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub config: TopicConfig,
    pub overrides: BTreeMap<String, String>,
    /// How many partitions the topic has, hosted here or not.
    pub partition_count: u32,
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    /// Why a request for `partition` finds no partition here: it exists
    /// but another broker hosts it (cluster mode), or it does not exist.
    pub fn absent_code(&self, partition: u32) -> rill_protocol::wire::ErrorCode {
        if partition < self.partition_count {
            rill_protocol::wire::ErrorCode::NotLeaderOrFollower
        } else {
            rill_protocol::wire::ErrorCode::UnknownTopicOrPartition
        }
    }

    pub fn partition(&self, partition: u32) -> Option<&Arc<Partition>> {
        let i = self
            .partitions
            .binary_search_by_key(&partition, |p| p.id())
            .ok()?;
        self.partitions.get(i)
    }
}

/// All topics of this broker.
#[derive(Debug)]
pub struct TopicRegistry {
    data_dir: PathBuf,
    meta_dir: PathBuf,
    defaults: TopicConfig,
    default_partitions: u32,
    backend: Arc<dyn IoBackend>,
    /// Opened on a read-only data directory: logs are read-only and topics
    /// can be neither created nor deleted.
    read_only: bool,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serializes create and delete so two of them never race on one name's
    /// files; lookups never take it.
    admin: tokio::sync::Mutex<()>,
}

impl TopicRegistry {
    /// Opens every topic found under `data_dir` (recovering its logs).
    /// Blocking: call from `spawn_blocking` or before the runtime is busy.
    pub fn open(
        data_dir: &Path,
        defaults: TopicConfig,
        default_partitions: u32,
        backend: Arc<dyn IoBackend>,
    ) -> Result<TopicRegistry, TopicError> {
        Self::open_in(data_dir, defaults, default_partitions, backend, false)
    }

    /// [`TopicRegistry::open`] for a read-only data directory: every log is
    /// opened with `PartitionLog::open_read_only`, nothing on disk changes,
    /// and `create`/`delete` answer [`TopicError::ReadOnly`].
    pub fn open_read_only(
        data_dir: &Path,
        defaults: TopicConfig,
        default_partitions: u32,
        backend: Arc<dyn IoBackend>,
    ) -> Result<TopicRegistry, TopicError> {
        Self::open_in(data_dir, defaults, default_partitions, backend, true)
    }

    fn open_in(
        data_dir: &Path,
        defaults: TopicConfig,
        default_partitions: u32,
        backend: Arc<dyn IoBackend>,
        read_only: bool,
    ) -> Result<TopicRegistry, TopicError> {
        let meta_dir = data_dir.join(META_DIR).join(META_TOPICS_DIR);
        if !read_only {
            std::fs::create_dir_all(&meta_dir).map_err(io_err(&meta_dir))?;
        }
        let registry = TopicRegistry {
            data_dir: data_dir.to_path_buf(),
            meta_dir,
            defaults,
            default_partitions,
            backend,
            read_only,
            topics: RwLock::new(HashMap::new()),
            admin: tokio::sync::Mutex::new(()),
        };
        if read_only && !registry.meta_dir.exists() {
            // Never written: no topics.
            return Ok(registry);
        }
        let entries = std::fs::read_dir(&registry.meta_dir).map_err(io_err(&registry.meta_dir))?;
        let mut opened = HashMap::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&registry.meta_dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(&format!(".{META_TMP_EXT}")) && read_only {
                // Never existed (see below); removing it is a write.
                continue;
            }
            if name.ends_with(&format!(".{META_TMP_EXT}")) {
                // A creation that crashed before its rename: never existed.
                tracing::info!(path = %path.display(), "removing unfinished topic metadata");
                std::fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some(META_EXT) {
                continue;
            }
            let meta = read_meta(&path)?;
            let topic = registry.open_topic(meta, false)?;
            tracing::info!(topic = %topic.name, partitions = topic.partitions.len(), "topic opened");
            opened.insert(topic.name.clone(), Arc::new(topic));
        }
        *registry.write_topics() = opened;
        Ok(registry)
    }

    fn read_topics(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Topic>>> {
        // A poisoned lock means a panic while holding it; the map itself is
        // only ever replaced whole or edited by one insert/remove, so it is
        // still consistent.
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_topics(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Topic>>> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the registry was opened on a read-only data directory.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn check_writable(&self) -> Result<(), TopicError> {
        if self.read_only {
            return Err(TopicError::ReadOnly {
                dir: self.data_dir.clone(),
            });
        }
        Ok(())
    }

    /// Where a lone broker kept topic `name`'s metadata file.
    pub(crate) fn lone_topic_meta_path(&self, name: &str) -> PathBuf {
        self.meta_path(name)
    }

    /// The data directory this registry's logs live in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The I/O backend every log of this registry uses.
    pub fn backend(&self) -> Arc<dyn IoBackend> {
        Arc::clone(&self.backend)
    }

    pub fn default_partitions(&self) -> u32 {
        self.default_partitions
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.read_topics().get(name).cloned()
    }

    pub fn partition(&self, name: &str, partition: u32) -> Option<Arc<Partition>> {
        self.read_topics()
            .get(name)
            .and_then(|t| t.partition(partition).cloned())
    }

    /// All topics, sorted by name (stable Metadata answers).
    pub fn list(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.read_topics().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn partition_dir(&self, name: &str, partition: u32) -> PathBuf {
        self.data_dir.join(format!("{name}-{partition}"))
    }

    fn meta_path(&self, name: &str) -> PathBuf {
        self.meta_dir.join(format!("{name}.{META_EXT}"))
    }

    /// Opens (creating when missing) every partition log of `meta`. With
    /// `fresh`, leftover directories of an earlier topic of the same name
    /// are removed first.
    fn open_topic(&self, meta: TopicMeta, fresh: bool) -> Result<Topic, TopicError> {
        validate_topic_name(&meta.name).map_err(TopicError::InvalidName)?;
        if meta.partitions == 0 || meta.partitions > PARTITIONS_MAX {
            return Err(TopicError::InvalidPartitions(format!(
                "{} has {} partitions; allowed 1..={PARTITIONS_MAX}",
                meta.name, meta.partitions
            )));
        }
        let config = self
            .defaults
            .with_overrides(meta.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(TopicError::InvalidConfig)?;
        let mut partitions = Vec::new();
        let topic: Arc<str> = Arc::from(meta.name.as_str());
        for p in 0..meta.partitions {
            let log = self.open_log(&meta.name, p, &config, fresh)?;
            partitions.push(Arc::new(Partition::new(Arc::clone(&topic), p, log)));
        }
        Ok(Topic {
            partition_count: meta.partitions,
            name: meta.name,
            config,
            overrides: meta.configs,
            partitions,
        })
    }

    /// Opens (creating when missing) the log of partition `p` of `name`.
    /// With `fresh`, a leftover directory of an earlier topic of the same
    /// name is removed first. Blocking.
    pub(crate) fn open_log(
        &self,
        name: &str,
        p: u32,
        config: &TopicConfig,
        fresh: bool,
    ) -> Result<PartitionLog, TopicError> {
        let dir = self.partition_dir(name, p);
        if fresh && dir.exists() {
            tracing::warn!(dir = %dir.display(), "removing leftover partition directory of a deleted topic");
            std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let existed = dir.exists();
        let log = if self.read_only {
            PartitionLog::open_read_only(&dir, config.to_log_config(), self.backend.clone())?
        } else {
            PartitionLog::open(&dir, config.to_log_config(), self.backend.clone())?
        };
        let recovery = log.stats().recovery;
        let clean = recovery.clean_shutdown;
        count_recovery(name, p, &recovery);
        if existed && !clean {
            ::metrics::counter!(metrics::LOG_RECOVERIES_TOTAL, "topic" => name.to_owned())
                .increment(1);
            tracing::warn!(
                topic = %name,
                partition = p,
                log_end_offset = log.log_end_offset(),
                "partition log recovered after an unclean shutdown"
            );
        } else {
            tracing::debug!(topic = %name, partition = p, clean, "partition log opened");
        }
        Ok(log)
    }

    /// The directory of partition `p` of `name`.
    pub(crate) fn log_dir(&self, name: &str, p: u32) -> PathBuf {
        self.partition_dir(name, p)
    }

    /// The settings of a topic with `overrides` on this broker's defaults.
    pub fn topic_config(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, TopicError> {
        self.defaults
            .with_overrides(overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(TopicError::InvalidConfig)
    }

    /// Puts `topic` in the registry (cluster mode: the broker's metadata
    /// decides which topics and partitions it hosts, not files here).
    pub(crate) fn install(&self, topic: Topic) {
        self.write_topics()
            .insert(topic.name.clone(), Arc::new(topic));
    }

    /// Takes `name` out of the registry.
    pub(crate) fn uninstall(&self, name: &str) -> Option<Arc<Topic>> {
        self.write_topics().remove(name)
    }

    /// A registry with no topics and no metadata files: cluster mode, where
    /// topics come from the controller's metadata.
    pub fn empty(
        data_dir: &Path,
        defaults: TopicConfig,
        default_partitions: u32,
        backend: Arc<dyn IoBackend>,
    ) -> TopicRegistry {
        TopicRegistry {
            data_dir: data_dir.to_path_buf(),
            meta_dir: data_dir.join(META_DIR).join(META_TOPICS_DIR),
            defaults,
            default_partitions,
            backend,
            read_only: false,
            topics: RwLock::new(HashMap::new()),
            admin: tokio::sync::Mutex::new(()),
        }
    }

    /// Creates a topic. `partitions == 0` asks for the broker default.
    pub async fn create(
        self: &Arc<Self>,
        name: &str,
        partitions: u32,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<(), TopicError> {
        self.check_writable()?;
        validate_topic_name(name).map_err(TopicError::InvalidName)?;
        let partitions = if partitions == 0 {
            self.default_partitions
        } else {
            partitions
        };
        if partitions > PARTITIONS_MAX {
            return Err(TopicError::InvalidPartitions(format!(
                "{partitions} partitions requested; allowed 1..={PARTITIONS_MAX}"
            )));
        }
        let mut overrides = BTreeMap::new();
        for (k, v) in configs {
            if overrides.insert(k.clone(), v.clone()).is_some() {
                return Err(TopicError::InvalidConfig(format!("{k} given twice")));
            }
        }
        self.defaults
            .with_overrides(overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(TopicError::InvalidConfig)?;
        let _admin = self.admin.lock().await;
        if self.get(name).is_some() {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        if validate_only {
            return Ok(());
        }
        let meta = TopicMeta {
            name: name.to_string(),
            partitions,
            configs: overrides,
        };
        let this = self.clone();
        let topic = tokio::task::spawn_blocking(move || -> Result<Topic, TopicError> {
            this.write_meta(&meta)?;
            match this.open_topic(meta.clone(), true) {
                Ok(t) => Ok(t),
                Err(e) => {
                    // Undo: the topic must not half-exist after a failure.
                    let path = this.meta_path(&meta.name);
                    if let Err(rm) = std::fs::remove_file(&path) {
                        tracing::error!(path = %path.display(), error = %rm, "cannot remove metadata of failed topic creation");
                    }
                    Err(e)
                }
            }
        })
        .await
        .map_err(|join| TopicError::Io {
            path: self.meta_path(name),
            source: std::io::Error::other(join.to_string()),
        })??;
        tracing::info!(topic = name, partitions, "topic created");
        self.write_topics()
            .insert(name.to_string(), Arc::new(topic));
        Ok(())
    }

    /// Deletes a topic: metadata first, then its logs and directories.
    pub async fn delete(self: &Arc<Self>, name: &str) -> Result<(), TopicError> {
        self.check_writable()?;
        let _admin = self.admin.lock().await;
        let Some(topic) = self.write_topics().remove(name) else {
            return Err(TopicError::Unknown(name.to_string()));
        };
        let meta_path = self.meta_path(name);
        let meta_dir = self.meta_dir.clone();
        tokio::task::spawn_blocking(move || -> Result<(), TopicError> {
            std::fs::remove_file(&meta_path).map_err(io_err(&meta_path))?;
            sync_dir(&meta_dir)
        })
        .await
        .map_err(|join| TopicError::Io {
            path: self.meta_path(name),
            source: std::io::Error::other(join.to_string()),
        })??;
        let dirs: Vec<PathBuf> = (0..topic.partitions.len())
            .filter_map(|p| u32::try_from(p).ok())
            .map(|p| self.partition_dir(name, p))
            .collect();
        let topic = Arc::try_unwrap(topic);
        if let Ok(topic) = topic {
            for partition in topic.partitions {
                // Requests still holding the log finish against the unlinked
                // files; nothing durable is wanted from a deleted topic.
                if let Ok(partition) = Arc::try_unwrap(partition) {
                    if let Err(e) = partition.close().await {
                        tracing::debug!(topic = name, error = %e, "closing a deleted partition log failed");
                    }
                }
            }
        }
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || -> Result<(), TopicError> {
            for dir in &dirs {
                match std::fs::remove_dir_all(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(dir)(e)),
                }
            }
            sync_dir(&data_dir)
        })
        .await
        .map_err(|join| TopicError::Io {
            path: self.data_dir.clone(),
            source: std::io::Error::other(join.to_string()),
        })??;
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    fn write_meta(&self, meta: &TopicMeta) -> Result<(), TopicError> {
        let path = self.meta_path(&meta.name);
        let tmp = self.meta_dir.join(format!("{}.{META_TMP_EXT}", meta.name));
        let text = toml::to_string(meta).map_err(|e| TopicError::BadMeta {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(&self.meta_dir)
    }

    /// Every partition of every topic.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.list()
            .iter()
            .flat_map(|topic| topic.partitions.iter().cloned())
            .collect()
    }

    /// Closes every partition (flush + clean-shutdown marker). One some
    /// task still holds is flushed instead and will recover on next start.
    pub async fn close_all(&self) {
        let topics: Vec<Arc<Topic>> = self.write_topics().drain().map(|(_, t)| t).collect();
        for topic in topics {
            let partitions = match Arc::try_unwrap(topic) {
                Ok(t) => t.partitions,
                Err(shared) => shared.partitions.clone(),
            };
            for partition in partitions {
                let (name, p) = (partition.topic().to_owned(), partition.id());
                let result = match Arc::try_unwrap(partition) {
                    Ok(partition) => partition.close().await,
                    Err(shared) => {
                        tracing::warn!(topic = %name, partition = p, "partition still in use at shutdown; flushing only (it will recover on next start)");
                        shared.flush().await
                    }
                };
                if let Err(e) = result {
                    tracing::error!(topic = %name, partition = p, error = %e, "closing partition log failed");
                }
            }
        }
    }
}

/// A topic as a lone broker kept it in `__meta/topics`.
#[derive(Debug, Clone)]
pub(crate) struct LoneTopic {
    pub name: String,
    pub partitions: u32,
    pub configs: BTreeMap<String, String>,
}

/// The topics a lone broker kept in `data_dir/__meta/topics` (name,
/// partition count, overrides), for cluster mode to import at a data
/// directory's first start with `--peers`. Blocking.
pub(crate) fn lone_broker_topics(data_dir: &Path) -> Result<Vec<LoneTopic>, TopicError> {
    let dir = data_dir.join(META_DIR).join(META_TOPICS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_err(&dir))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(META_EXT) {
            continue;
        }
        let meta = read_meta(&path)?;
        out.push(LoneTopic {
            name: meta.name,
            partitions: meta.partitions,
            configs: meta.configs,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Counts (and logs) what recovery dropped or rebuilt when a partition log
/// opened: damage found offline must show on `/metrics`, not only in logs.
fn count_recovery(topic: &str, partition: u32, recovery: &rill_storage::RecoveryStats) {
    let counts = [
        (
            metrics::RECOVERY_TRUNCATED_BYTES_TOTAL,
            recovery.bytes_truncated,
        ),
        (
            metrics::RECOVERY_INDEXES_REBUILT_TOTAL,
            recovery.indexes_rebuilt,
        ),
        (
            metrics::RECOVERY_SEGMENTS_DROPPED_TOTAL,
            recovery.segments_dropped,
        ),
    ];
    for (name, n) in counts {
        if n > 0 {
            ::metrics::counter!(name, "topic" => topic.to_owned()).increment(n);
        }
    }
    if recovery.bytes_truncated > 0 || recovery.indexes_rebuilt > 0 || recovery.segments_dropped > 0
    {
        tracing::warn!(
            topic,
            partition,
            bytes_truncated = recovery.bytes_truncated,
            indexes_rebuilt = recovery.indexes_rebuilt,
            segments_dropped = recovery.segments_dropped,
            index_entries_dropped = recovery.index_entries_dropped,
            "recovery dropped or rebuilt data of a partition log"
        );
    }
}

fn read_meta(path: &Path) -> Result<TopicMeta, TopicError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let meta: TopicMeta = toml::from_str(&text).map_err(|e| TopicError::BadMeta {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let expected = path.file_stem().and_then(|s| s.to_str());
    if expected != Some(meta.name.as_str()) {
        return Err(TopicError::BadMeta {
            path: path.to_path_buf(),
            reason: format!("file names topic {:?}", meta.name),
        });
    }
    Ok(meta)
}

fn sync_dir(dir: &Path) -> Result<(), TopicError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}
