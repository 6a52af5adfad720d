//! The client's one error type.
//!
//! Every public call returns [`ClientError`]. It is `Clone` because one
//! failure often has many observers: when a produce request fails, every
//! record of every batch in it learns the same error. Sources that are not
//! `Clone` (I/O and codec errors) are kept behind an `Arc` so they stay
//! reachable through `std::error::Error::source`.

use std::sync::Arc;
use std::time::Duration;

use rill_protocol::wire::{ApiKey, ErrorCode, WireError};
use rill_protocol::BatchError;

/// Anything a client call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The broker answered with an error code.
    #[error("broker error {code:?}{}{}", scope_suffix(topic.as_deref(), *partition), message_suffix(message.as_deref()))]
    Broker {
        code: ErrorCode,
        topic: Option<String>,
        partition: Option<u32>,
        message: Option<String>,
    },
    /// Could not open a TCP connection to the broker.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// Reading from or writing to an open connection failed.
    #[error("connection I/O failed: {0}")]
    Io(#[source] Arc<std::io::Error>),
    /// The connection was closed (by the peer, after an earlier failure, or
    /// after a timeout) before the response arrived.
    #[error("connection closed")]
    ConnectionClosed,
    /// No response within the request timeout. The connection is closed:
    /// responses come back in request order, so a stuck one blocks the rest.
    #[error("request timed out after {after:?}")]
    Timeout { after: Duration },
    /// The broker's bytes did not decode.
    #[error("malformed response from broker: {0}")]
    Wire(#[source] Arc<WireError>),
    /// A response carried a correlation id other than the oldest pending
    /// one, which breaks the in-order promise of the protocol.
    #[error("response correlation id {got} does not match the oldest pending request {expected}")]
    CorrelationMismatch { expected: u32, got: u32 },
    /// The broker answered an API with the body of another.
    #[error("unexpected response body for a {expected:?} request")]
    UnexpectedResponse { expected: ApiKey },
    /// Client and broker share no version of an API the client needs.
    #[error(
        "broker supports no common version of {api:?}: client speaks {client_min}..={client_max}, broker {}",
        broker.map_or_else(|| "does not offer it".to_owned(), |(lo, hi)| format!("{lo}..={hi}"))
    )]
    NoCommonVersion {
        api: ApiKey,
        client_min: u16,
        client_max: u16,
        broker: Option<(u16, u16)>,
    },
    /// A fetched or built batch is malformed.
    #[error("bad record batch: {0}")]
    Batch(#[from] BatchError),
    /// A single record is larger than the producer's buffer or batch limits.
    #[error("record of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge { size: usize, max: usize },
    /// A fetch returned bytes for a partition but not one whole batch, even
    /// though the partition limit was honoured: the batch is larger than
    /// `partition_max_bytes` and the broker did not send it whole.
    #[error("partition {topic}-{partition} at offset {offset}: next batch does not fit in {partition_max_bytes} bytes")]
    BatchLargerThanFetch {
        topic: String,
        partition: u32,
        offset: u64,
        partition_max_bytes: u32,
    },
    /// A configuration value is out of range.
    #[error("invalid client config `{field}`: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    /// The producer or consumer was closed.
    #[error("client is closed")]
    Closed,
    /// An idempotent producer was fenced: a partition has seen a newer
    /// epoch of its producer id (another session of the same id). It sends
    /// nothing more; its unsent records fail with this.
    #[error("producer id {producer_id} epoch {epoch} was fenced by a newer session{}", message_suffix(message.as_deref()))]
    ProducerFenced {
        producer_id: i64,
        epoch: i16,
        message: Option<String>,
    },
    /// A record's batch was not acknowledged within `delivery_timeout` of
    /// its creation (retries included). It may or may not have been
    /// written: its last attempt's outcome is unknown.
    #[error("delivery timed out after {after:?} (retries included){}", last_error.as_ref().map_or_else(String::new, |e| format!("; last error: {e}")))]
    DeliveryTimeout {
        after: Duration,
        last_error: Option<Box<ClientError>>,
    },
    /// The consumer was asked about a partition it is not assigned.
    #[error("partition {topic}-{partition} is not assigned to this consumer")]
    NotAssigned { topic: String, partition: u32 },
    /// The topic has no partitions in the broker's metadata.
    #[error("topic {0} not found in metadata")]
    UnknownTopic(String),
    /// A group consumer was assigned a partition its group has no committed
    /// offset for, and its `auto_offset_reset` is `None`.
    #[error("no committed offset for {topic}-{partition} and auto_offset_reset is none")]
    NoCommittedOffset { topic: String, partition: u32 },
}

fn scope_suffix(topic: Option<&str>, partition: Option<u32>) -> String {
    match (topic, partition) {
        (Some(t), Some(p)) => format!(" on {t}-{p}"),
        (Some(t), None) => format!(" on topic {t}"),
        _ => String::new(),
    }
}

fn message_suffix(message: Option<&str>) -> String {
    message.map_or_else(String::new, |m| format!(": {m}"))
}

impl ClientError {
    /// The broker's error code, when the error came back from the broker.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the same call may succeed if tried again: transient broker
    /// conditions (as the broker's error table says) and lost connections.
    /// Codec errors, config errors and a closed client are permanent.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Broker { code, .. } => code.is_retriable(),
            ClientError::Connect { .. }
            | ClientError::Io(_)
            | ClientError::ConnectionClosed
            | ClientError::Timeout { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn broker(code: ErrorCode) -> Self {
        ClientError::Broker {
            code,
            topic: None,
            partition: None,
            message: None,
        }
    }

    pub(crate) fn partition(
        code: ErrorCode,
        topic: &str,
        partition: u32,
        message: Option<String>,
    ) -> Self {
        ClientError::Broker {
            code,
            topic: Some(topic.to_owned()),
            partition: Some(partition),
            message,
        }
    }

    pub(crate) fn topic(code: ErrorCode, topic: &str, message: Option<String>) -> Self {
        ClientError::Broker {
            code,
            topic: Some(topic.to_owned()),
            partition: None,
            message,
        }
    }
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(Arc::new(e))
    }
}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> Self {
        ClientError::Wire(Arc::new(e))
    }
}

/// Shorthand for results of client calls.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
