//! What the eight consumer group APIs (keys 10..=17) need besides the
//! broker's [`crate::coordinator::GroupCoordinator`], which answers each of
//! them itself (error codes included; [`super::dispatch`] routes them): the
//! [`TopicView`] the coordinator sees the topics through, and the counting
//! of the answers' codes in `rill_request_errors_total`.

use std::collections::BTreeMap;

use rill_protocol::wire::{ApiKey, ErrorCode};

use super::{api_name, count_error};
use crate::coordinator::TopicView;
use crate::topics::TopicRegistry;

impl TopicView for TopicRegistry {
    fn partition_counts(&self) -> BTreeMap<String, u32> {
        self.list()
            .iter()
            .map(|t| (t.name.clone(), t.partition_count))
            .collect()
    }

    fn log_start_offset(&self, topic: &str, partition: u32) -> Option<u64> {
        self.partition(topic, partition)
            .map(|log| log.log_start_offset())
    }

    fn log_end_offset(&self, topic: &str, partition: u32) -> Option<u64> {
        self.partition(topic, partition)
            .map(|log| log.log_end_offset())
    }

    fn offset_for_timestamp(&self, topic: &str, partition: u32, ts_ms: i64) -> Option<u64> {
        let log = self.partition(topic, partition)?;
        match log.offset_for_timestamp(ts_ms) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(topic, partition, ts_ms, error = %e, "time index lookup failed");
                None
            }
        }
    }
}

/// Counts the error codes of a group API's answer.
pub(crate) fn count(api: ApiKey, codes: impl IntoIterator<Item = ErrorCode>) {
    let api = api_name(api);
    for code in codes {
        count_error(api, code);
    }
}
