//! [`ErrorCode`]: the stable numeric error codes carried in responses.
//!
//! One macro table below is the single source of the numbers, names,
//! retriability and meanings, so the enum, its conversions and the rendered
//! doc table cannot drift apart. Codes are forever: a gap is a retired code
//! and is never reused. Where Kafka has a code with the same meaning we use
//! Kafka's number; Rill's own codes start above 1000.

macro_rules! error_codes {
    ($( $name:ident = $code:literal, retriable = $retriable:literal, $meaning:literal; )*) => {
        /// A response's error code (`i16` on the wire).
        ///
        /// "Retriable" means the same request may succeed if sent again
        /// later (usually after refreshing metadata); a client backs off and
        /// retries those, and surfaces the others to the application.
        ///
        /// | code | name | retriable | meaning |
        /// |---:|---|---|---|
        $( #[doc = concat!("| ", stringify!($code), " | `", stringify!($name), "` | ",
                           stringify!($retriable), " | ", $meaning, " |")] )*
        ///
        /// A code this build does not know (sent by a newer peer) decodes to
        /// [`ErrorCode::Unknown`] carrying the number, and is not retriable.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i16)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( #[doc = $meaning] $name = $code, )*
            /// A code not in the table above; only [`ErrorCode::from_i16`]
            /// produces it, for numbers it does not know. Its own
            /// discriminant is internal; [`ErrorCode::code`] returns the
            /// carried number.
            Unknown(i16) = i16::MIN,
        }

        impl ErrorCode {
            /// Every known code, in table order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$name, )* ];

            /// The number sent on the wire.
            pub const fn code(self) -> i16 {
                match self {
                    $( ErrorCode::$name => $code, )*
                    ErrorCode::Unknown(code) => code,
                }
            }

            /// Maps a wire number to its code; never fails, unknown numbers
            /// become [`ErrorCode::Unknown`].
            pub const fn from_i16(code: i16) -> Self {
                match code {
                    $( $code => ErrorCode::$name, )*
                    other => ErrorCode::Unknown(other),
                }
            }

            /// Whether the same request may succeed if retried later.
            pub const fn is_retriable(self) -> bool {
                match self {
                    $( ErrorCode::$name => $retriable, )*
                    ErrorCode::Unknown(_) => false,
                }
            }

            /// The code's name as in the table, for logs and tools.
            pub const fn name(self) -> &'static str {
                match self {
                    $( ErrorCode::$name => stringify!($name), )*
                    ErrorCode::Unknown(_) => "Unknown",
                }
            }

            /// What the code means, as in the table.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $( ErrorCode::$name => $meaning, )*
                    ErrorCode::Unknown(_) => "a code this build does not know",
                }
            }
        }
    };
}

error_codes! {
    UnknownServerError = -1, retriable = false,
        "The broker hit an unexpected error; its log says more.";
    None = 0, retriable = false,
        "Success.";
    OffsetOutOfRange = 1, retriable = false,
        "The requested offset is outside the partition's `log_start_offset..=log_end_offset`.";
    CorruptMessage = 2, retriable = true,
        "A record batch failed its CRC or structure check (possibly damaged in transit).";
    UnknownTopicOrPartition = 3, retriable = true,
        "This broker does not host the topic or partition (metadata may be stale).";
    InvalidFetchSize = 4, retriable = false,
        "A fetch asked for a negative or zero size where one is required.";
    LeaderNotAvailable = 5, retriable = true,
        "The partition has no leader right now (an election is under way); refresh metadata and retry.";
    NotLeaderOrFollower = 6, retriable = true,
        "This broker does not lead the partition (a follower, or not a replica): refresh metadata and send to the leader.";
    RequestTimedOut = 7, retriable = true,
        "The request did not complete within its timeout.";
    MessageTooLarge = 10, retriable = false,
        "A record batch is larger than the broker or topic allows.";
    NetworkException = 13, retriable = true,
        "The connection failed before a response was received.";
    CoordinatorLoadInProgress = 14, retriable = true,
        "The group coordinator is still loading group state.";
    CoordinatorNotAvailable = 15, retriable = true,
        "The group coordinator is not available.";
    NotCoordinator = 16, retriable = true,
        "This broker is not the coordinator of the group.";
    InvalidTopic = 17, retriable = false,
        "The topic name is invalid (empty, too long or with illegal characters).";
    RecordListTooLarge = 18, retriable = false,
        "The records of one partition in a produce request exceed the size limit.";
    NotEnoughReplicas = 19, retriable = true,
        "The leader has not heard from a majority of the replicas within the election timeout; the write was not taken.";
    InvalidRequiredAcks = 21, retriable = false,
        "The produce request's `acks` is not one of the supported levels.";
    IllegalGeneration = 22, retriable = false,
        "The group generation in the request is not the current one.";
    InvalidGroupId = 24, retriable = false,
        "The group id is empty or invalid.";
    UnknownMemberId = 25, retriable = false,
        "The member id is not known to the coordinator.";
    InvalidSessionTimeout = 26, retriable = false,
        "The session timeout is outside the broker's allowed range.";
    RebalanceInProgress = 27, retriable = false,
        "The group is rebalancing; the member must rejoin.";
    UnsupportedVersion = 35, retriable = false,
        "The broker does not support this API version.";
    TopicAlreadyExists = 36, retriable = false,
        "A topic with this name already exists.";
    InvalidPartitions = 37, retriable = false,
        "The partition count is invalid (zero or over the limit).";
    InvalidReplicationFactor = 38, retriable = false,
        "The replication factor is below 1 or above the number of brokers.";
    InvalidConfig = 40, retriable = false,
        "A topic config key is unknown or its value is invalid.";
    NotController = 41, retriable = true,
        "This broker is not the controller and could not reach it.";
    InvalidRequest = 42, retriable = false,
        "The request is malformed (bad lengths, bad UTF-8, trailing bytes, bad values).";
    OutOfOrderSequenceNumber = 45, retriable = false,
        "An idempotent batch's sequence does not follow the last one this partition holds from its producer (a gap): nothing was written. The producer resends from the expected sequence, or starts a new epoch.";
    DuplicateSequenceNumber = 46, retriable = false,
        "An idempotent batch is older than the recent batches this partition remembers from its producer: it was written before and is not written again, but its offsets are no longer known.";
    InvalidProducerEpoch = 47, retriable = false,
        "An idempotent batch carries an older producer epoch than this partition has seen for its producer id: a newer session of that producer fenced this one.";
    StorageError = 56, retriable = true,
        "The broker's storage failed for this partition (disk error); may recover.";
    UnknownProducerId = 59, retriable = false,
        "This partition holds no state for the batch's producer id (it expired, or was never seen) and the batch does not start a sequence: the producer starts a new epoch and resends.";
    NonEmptyGroup = 68, retriable = false,
        "The group still has members and cannot be deleted.";
    GroupIdNotFound = 69, retriable = false,
        "The group does not exist.";
    FencedLeaderEpoch = 74, retriable = true,
        "The request named an older leader epoch than the partition's: refresh metadata and retry.";
    InvalidRecord = 87, retriable = false,
        "A record batch is well formed but not allowed here (such as a control batch sent by a producer: only the replication layer writes those).";
    ThrottlingQuotaExceeded = 89, retriable = true,
        "The request was refused by a rate quota; retry after backing off.";
    FencedMemberEpoch = 110, retriable = false,
        "The member epoch is fenced; the member must rejoin with epoch 0.";
    StaleMemberEpoch = 113, retriable = false,
        "The member epoch is stale (older than the current one) for this request.";
    FrameTooLarge = 1001, retriable = false,
        "The request frame exceeded the broker's frame size limit; the broker closes the connection.";
    UnknownApi = 1002, retriable = false,
        "The API key is not known to this broker.";
    LogFailed = 1003, retriable = false,
        "The partition's log hit an unrecoverable I/O error (such as a failed fsync) and refuses writes until the broker restarts.";
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// Success, as in a freshly built response.
impl Default for ErrorCode {
    fn default() -> Self {
        ErrorCode::None
    }
}

impl ErrorCode {
    /// True for every code but [`ErrorCode::None`].
    pub const fn is_error(self) -> bool {
        !matches!(self, ErrorCode::None)
    }
}
