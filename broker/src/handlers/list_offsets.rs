//! ListOffsets: the earliest offset (-2), the latest (-1, the log end), or
//! the first offset whose batch holds a record at or after a timestamp.

use rill_protocol::wire::list_offsets::{EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, NO_TIMESTAMP};
use rill_protocol::wire::{
    ErrorCode, ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse,
    ListOffsetsTopicResponse,
};

use super::count_error;
use crate::error::{partition_error_code, storage_error_code};
use crate::shared::Shared;

const API: &str = "list_offsets";

pub(crate) fn handle(shared: &Shared, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = lookup(shared, &topic.name, p.partition, p.timestamp);
                    count_error(API, answer.error);
                    answer
                })
                .collect();
            ListOffsetsTopicResponse {
                name: topic.name,
                partitions,
            }
        })
        .collect();
    ListOffsetsResponse { topics }
}

fn lookup(
    shared: &Shared,
    topic: &str,
    partition: u32,
    timestamp: i64,
) -> ListOffsetsPartitionResponse {
    let answer = |error, timestamp, offset| ListOffsetsPartitionResponse {
        partition,
        error,
        timestamp,
        offset,
    };
    let Some(log) = shared.registry.partition(topic, partition) else {
        return answer(ErrorCode::UnknownTopicOrPartition, NO_TIMESTAMP, 0);
    };
    if let Err(e) = log.check_leader() {
        return answer(partition_error_code(&e), NO_TIMESTAMP, 0);
    }
    match timestamp {
        EARLIEST_TIMESTAMP => answer(ErrorCode::None, NO_TIMESTAMP, log.log_start_offset()),
        LATEST_TIMESTAMP => answer(ErrorCode::None, NO_TIMESTAMP, log.high_watermark()),
        ts if ts >= 0 => match log.offset_for_timestamp(ts) {
            Ok(Some(offset)) => answer(ErrorCode::None, ts, offset),
            // No record that new yet: the next one will be, so the log end
            // is where a consumer starting "from ts" begins.
            Ok(None) => answer(ErrorCode::None, NO_TIMESTAMP, log.high_watermark()),
            Err(e) => {
                tracing::warn!(topic, partition, error = %e, "offset lookup by timestamp failed");
                answer(storage_error_code(&e), NO_TIMESTAMP, 0)
            }
        },
        _ => answer(ErrorCode::InvalidRequest, NO_TIMESTAMP, 0),
    }
}
