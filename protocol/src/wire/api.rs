//! [`ApiKey`] and the table of supported versions ([`SUPPORTED_APIS`]).
//!
//! The numbers are stable: a gap is a retired key and is never reused. The
//! table is the one place that says which API versions this build speaks;
//! the broker's ApiVersions response is this table.

use std::ops::RangeInclusive;

use super::WireError;

/// Identifies the API of a request (`u16` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum ApiKey {
    ApiVersions = 0,
    Metadata = 1,
    CreateTopics = 2,
    DeleteTopics = 3,
    ListOffsets = 4,
    Produce = 5,
    Fetch = 6,
    // 7..=9 unassigned.
    /// Consumer group membership, heartbeats and assignments (KIP-848 style).
    ConsumerGroupHeartbeat = 10,
    /// A member leaves its group.
    LeaveGroup = 11,
    /// Commit consumed offsets.
    OffsetCommit = 12,
    /// Read committed offsets.
    OffsetFetch = 13,
    /// List consumer groups.
    ListGroups = 14,
    /// Describe consumer groups: members, assignments, offsets, lag.
    DescribeGroups = 15,
    /// Delete empty consumer groups.
    DeleteGroups = 16,
    /// Reset an empty group's offsets.
    ResetOffsets = 17,
    /// Get a producer id and epoch for an idempotent producer, or bump the
    /// epoch of one (KIP-360), which fences the older session.
    InitProducerId = 18,
    /// Which broker coordinates a consumer group.
    FindCoordinator = 19,
}

impl ApiKey {
    /// Every defined key, in numeric order.
    pub const ALL: &'static [ApiKey] = &[
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
        ApiKey::ListOffsets,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ConsumerGroupHeartbeat,
        ApiKey::LeaveGroup,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::ListGroups,
        ApiKey::DescribeGroups,
        ApiKey::DeleteGroups,
        ApiKey::ResetOffsets,
        ApiKey::InitProducerId,
        ApiKey::FindCoordinator,
    ];

    /// The number sent on the wire.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// Maps a wire number to its key.
    pub const fn from_u16(code: u16) -> Result<Self, WireError> {
        Ok(match code {
            0 => ApiKey::ApiVersions,
            1 => ApiKey::Metadata,
            2 => ApiKey::CreateTopics,
            3 => ApiKey::DeleteTopics,
            4 => ApiKey::ListOffsets,
            5 => ApiKey::Produce,
            6 => ApiKey::Fetch,
            10 => ApiKey::ConsumerGroupHeartbeat,
            11 => ApiKey::LeaveGroup,
            12 => ApiKey::OffsetCommit,
            13 => ApiKey::OffsetFetch,
            14 => ApiKey::ListGroups,
            15 => ApiKey::DescribeGroups,
            16 => ApiKey::DeleteGroups,
            17 => ApiKey::ResetOffsets,
            18 => ApiKey::InitProducerId,
            19 => ApiKey::FindCoordinator,
            other => return Err(WireError::UnknownApiKey(other)),
        })
    }

    /// The versions of this API this build implements; `None` for a key
    /// listed but not implemented.
    pub fn supported_versions(self) -> Option<RangeInclusive<u16>> {
        SUPPORTED_APIS
            .iter()
            .find(|range| range.key == self.code())
            .map(|range| range.min..=range.max)
    }

    /// `Ok` if `version` of this API is implemented, else the typed error
    /// the broker turns into [`super::ErrorCode::UnsupportedVersion`].
    pub fn check_version(self, version: u16) -> Result<(), WireError> {
        match self.supported_versions() {
            Some(range) if range.contains(&version) => Ok(()),
            _ => Err(WireError::UnsupportedVersion { key: self, version }),
        }
    }
}

/// One row of the ApiVersions table: an API and the versions spoken.
///
/// `key` stays a raw `u16` so that a client can read the table of a newer
/// broker that lists keys this build does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiVersionRange {
    pub key: u16,
    pub min: u16,
    pub max: u16,
}

impl ApiVersionRange {
    /// The row's key, if this build knows it.
    pub fn api_key(&self) -> Result<ApiKey, WireError> {
        ApiKey::from_u16(self.key)
    }
}

/// The implemented APIs and their version ranges.
pub const SUPPORTED_APIS: &[ApiVersionRange] = &[
    supported(ApiKey::ApiVersions, 0, 0),
    supported(ApiKey::Metadata, 0, 0),
    supported(ApiKey::CreateTopics, 0, 0),
    supported(ApiKey::DeleteTopics, 0, 0),
    supported(ApiKey::ListOffsets, 0, 0),
    supported(ApiKey::Produce, 0, 0),
    supported(ApiKey::Fetch, 0, 0),
    supported(ApiKey::ConsumerGroupHeartbeat, 0, 0),
    supported(ApiKey::LeaveGroup, 0, 0),
    supported(ApiKey::OffsetCommit, 0, 0),
    supported(ApiKey::OffsetFetch, 0, 0),
    supported(ApiKey::ListGroups, 0, 0),
    supported(ApiKey::DescribeGroups, 0, 0),
    supported(ApiKey::DeleteGroups, 0, 0),
    supported(ApiKey::ResetOffsets, 0, 0),
    supported(ApiKey::InitProducerId, 0, 0),
    supported(ApiKey::FindCoordinator, 0, 0),
];

const fn supported(key: ApiKey, min: u16, max: u16) -> ApiVersionRange {
    ApiVersionRange {
        key: key.code(),
        min,
        max,
    }
}
