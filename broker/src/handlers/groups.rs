//! The eight consumer group APIs (keys 10..=17), handed to the broker's
//! [`GroupCoordinator`], and the [`TopicView`] the coordinator sees the
//! topics through.
//!
//! The coordinator answers every request itself (error codes included);
//! this module only routes, supplies the topics, and counts the error
//! codes of the answers in `rill_request_errors_total`.

use std::collections::BTreeMap;

use rill_protocol::wire::{ApiKey, ErrorCode, Request, Response};

use super::{api_name, count_error};
use crate::coordinator::TopicView;
use crate::server::Shared;
use crate::topics::TopicRegistry;

impl TopicView for TopicRegistry {
    fn partition_counts(&self) -> BTreeMap<String, u32> {
        self.list()
            .iter()
            .map(|t| {
                let count = u32::try_from(t.partitions.len()).unwrap_or(u32::MAX);
                (t.name.clone(), count)
            })
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

/// The answer to a group request; `None` for any other request.
/// `client_id` is the request header's (describe output shows it).
pub(crate) async fn handle(shared: &Shared, client_id: &str, request: Request) -> Option<Response> {
    let groups = &shared.groups;
    let topics: &TopicRegistry = &shared.registry;
    let response = match request {
        Request::ConsumerGroupHeartbeat(r) => {
            let resp = groups.heartbeat(client_id, r, topics);
            count(ApiKey::ConsumerGroupHeartbeat, [resp.error]);
            Response::ConsumerGroupHeartbeat(resp)
        }
        Request::LeaveGroup(r) => {
            let resp = groups.leave(r, topics);
            count(ApiKey::LeaveGroup, [resp.error]);
            Response::LeaveGroup(resp)
        }
        Request::OffsetCommit(r) => {
            let resp = groups.commit(r, topics).await;
            count(
                ApiKey::OffsetCommit,
                resp.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error)),
            );
            Response::OffsetCommit(resp)
        }
        Request::OffsetFetch(r) => {
            let resp = groups.fetch(r);
            count(ApiKey::OffsetFetch, [resp.error]);
            Response::OffsetFetch(resp)
        }
        Request::ListGroups(_) => {
            let resp = groups.list();
            count(ApiKey::ListGroups, [resp.error]);
            Response::ListGroups(resp)
        }
        Request::DescribeGroups(r) => {
            let resp = groups.describe(r, topics);
            count(ApiKey::DescribeGroups, resp.groups.iter().map(|g| g.error));
            Response::DescribeGroups(resp)
        }
        Request::DeleteGroups(r) => {
            let resp = groups.delete(r).await;
            count(ApiKey::DeleteGroups, resp.results.iter().map(|g| g.error));
            Response::DeleteGroups(resp)
        }
        Request::ResetOffsets(r) => {
            let resp = groups.reset(r, topics).await;
            count(ApiKey::ResetOffsets, [resp.error]);
            Response::ResetOffsets(resp)
        }
        _ => return None,
    };
    Some(response)
}

fn count(api: ApiKey, codes: impl IntoIterator<Item = ErrorCode>) {
    let api = api_name(api);
    for code in codes {
        count_error(api, code);
    }
}
