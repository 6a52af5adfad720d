//! Stability: the error code table (number, name, retriable) and the API
//! key numbers are pinned here by hand, so renumbering or renaming fails.

use rill_protocol::wire::{ApiKey, ErrorCode, WireError, SUPPORTED_APIS};

#[rustfmt::skip]
const ERROR_CODES: &[(i16, &str, bool)] = &[
    (-1, "UnknownServerError", false),
    (0, "None", false),
    (1, "OffsetOutOfRange", false),
    (2, "CorruptMessage", true),
    (3, "UnknownTopicOrPartition", true),
    (4, "InvalidFetchSize", false),
    (5, "LeaderNotAvailable", true),
    (6, "NotLeaderOrFollower", true),
    (7, "RequestTimedOut", true),
    (10, "MessageTooLarge", false),
    (13, "NetworkException", true),
    (14, "CoordinatorLoadInProgress", true),
    (15, "CoordinatorNotAvailable", true),
    (16, "NotCoordinator", true),
    (17, "InvalidTopic", false),
    (18, "RecordListTooLarge", false),
    (19, "NotEnoughReplicas", true),
    (21, "InvalidRequiredAcks", false),
    (22, "IllegalGeneration", false),
    (24, "InvalidGroupId", false),
    (25, "UnknownMemberId", false),
    (26, "InvalidSessionTimeout", false),
    (27, "RebalanceInProgress", false),
    (35, "UnsupportedVersion", false),
    (36, "TopicAlreadyExists", false),
    (37, "InvalidPartitions", false),
    (38, "InvalidReplicationFactor", false),
    (40, "InvalidConfig", false),
    (41, "NotController", true),
    (42, "InvalidRequest", false),
    (45, "OutOfOrderSequenceNumber", false),
    (46, "DuplicateSequenceNumber", false),
    (47, "InvalidProducerEpoch", false),
    (56, "StorageError", true),
    (59, "UnknownProducerId", false),
    (68, "NonEmptyGroup", false),
    (69, "GroupIdNotFound", false),
    (74, "FencedLeaderEpoch", true),
    (87, "InvalidRecord", false),
    (89, "ThrottlingQuotaExceeded", true),
    (110, "FencedMemberEpoch", false),
    (113, "StaleMemberEpoch", false),
    (1001, "FrameTooLarge", false),
    (1002, "UnknownApi", false),
    (1003, "LogFailed", false),
];

#[test]
fn wire_error_code_table_is_pinned() {
    assert_eq!(
        ErrorCode::ALL.len(),
        ERROR_CODES.len(),
        "a code was added or removed"
    );
    for (&(code, name, retriable), &listed) in ERROR_CODES.iter().zip(ErrorCode::ALL) {
        let decoded = ErrorCode::from_i16(code);
        assert_eq!(decoded, listed, "code {code}");
        assert_eq!(decoded.code(), code, "{name}");
        assert_eq!(decoded.name(), name, "code {code}");
        assert_eq!(format!("{decoded:?}"), name);
        assert_eq!(decoded.is_retriable(), retriable, "{name}");
        assert_eq!(decoded.is_error(), code != 0);
        assert!(!decoded.meaning().is_empty());
    }
    assert_eq!(ErrorCode::default(), ErrorCode::None);
}

#[test]
fn wire_unknown_error_codes_are_kept_not_panicked_on() {
    let known: Vec<i16> = ERROR_CODES.iter().map(|row| row.0).collect();
    for code in [i16::MIN, -2, 8, 9, 999, 1000, 1004, i16::MAX] {
        assert!(!known.contains(&code));
        let decoded = ErrorCode::from_i16(code);
        assert_eq!(decoded, ErrorCode::Unknown(code));
        assert_eq!(decoded.code(), code);
        assert!(!decoded.is_retriable());
        assert!(decoded.is_error());
        assert_eq!(decoded.to_string(), format!("Unknown ({code})"));
    }
}

#[test]
fn wire_api_keys_are_pinned() {
    #[rustfmt::skip]
    let keys: &[(u16, ApiKey)] = &[
        (0, ApiKey::ApiVersions), (1, ApiKey::Metadata), (2, ApiKey::CreateTopics),
        (3, ApiKey::DeleteTopics), (4, ApiKey::ListOffsets), (5, ApiKey::Produce),
        (6, ApiKey::Fetch), (10, ApiKey::ConsumerGroupHeartbeat), (11, ApiKey::LeaveGroup),
        (12, ApiKey::OffsetCommit), (13, ApiKey::OffsetFetch), (14, ApiKey::ListGroups),
        (15, ApiKey::DescribeGroups), (16, ApiKey::DeleteGroups), (17, ApiKey::ResetOffsets),
        (18, ApiKey::InitProducerId), (19, ApiKey::FindCoordinator),
    ];
    assert_eq!(ApiKey::ALL.len(), keys.len());
    for (&(code, key), &listed) in keys.iter().zip(ApiKey::ALL) {
        assert_eq!(key, listed);
        assert_eq!(key.code(), code);
        assert_eq!(ApiKey::from_u16(code), Ok(key));
    }
    for code in (0..=u16::MAX).filter(|c| !keys.iter().any(|k| k.0 == *c)) {
        assert_eq!(ApiKey::from_u16(code), Err(WireError::UnknownApiKey(code)));
    }
    let implemented: Vec<(u16, u16, u16)> = SUPPORTED_APIS
        .iter()
        .map(|a| (a.key, a.min, a.max))
        .collect();
    assert_eq!(
        implemented,
        [
            (0, 0, 0),
            (1, 0, 0),
            (2, 0, 0),
            (3, 0, 0),
            (4, 0, 0),
            (5, 0, 0),
            (6, 0, 0),
            (10, 0, 0),
            (11, 0, 0),
            (12, 0, 0),
            (13, 0, 0),
            (14, 0, 0),
            (15, 0, 0),
            (16, 0, 0),
            (17, 0, 0),
            (18, 0, 0),
            (19, 0, 0)
        ]
    );
}
