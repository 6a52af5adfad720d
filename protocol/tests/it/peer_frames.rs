//! The inter-broker frame codec: every frame round-trips exactly, and every
//! malformed input (cut short, oversized, unknown tags, bad magic, bytes
//! left over) is refused with its own error, never a panic.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rill_protocol::limits::PEER_FRAME_BYTES_MAX;
use rill_protocol::peer::*;

pub fn group() -> impl Strategy<Value = GroupId> {
    prop_oneof![
        Just(GroupId::Controller),
        ("[a-z0-9._-]{1,40}", any::<u32>())
            .prop_map(|(topic, partition)| GroupId::Partition { topic, partition }),
    ]
}

pub fn peer_frame() -> impl Strategy<Value = PeerFrame> {
    let rpc = prop_oneof![
        Just(PeerRpc::AppendEntries),
        Just(PeerRpc::Vote),
        Just(PeerRpc::Snapshot),
        Just(PeerRpc::TransferLeader),
        Just(PeerRpc::Propose),
    ];
    let reason = prop_oneof![
        Just(RefusedReason::OtherCluster),
        Just(RefusedReason::WrongNode),
        Just(RefusedReason::Version),
        Just(RefusedReason::Malformed),
        Just(RefusedReason::UnknownNode),
    ];
    let payload = proptest::collection::vec(any::<u8>(), 0..256).prop_map(Bytes::from);
    prop_oneof![
        (any::<u16>(), any::<[u8; 16]>(), any::<u64>(), any::<u64>()).prop_map(
            |(version, cluster_id, from, to)| PeerFrame::Hello {
                version,
                cluster_id,
                from,
                to
            }
        ),
        (any::<u64>(), group(), rpc, payload.clone()).prop_map(
            |(correlation_id, group, rpc, payload)| PeerFrame::Request {
                correlation_id,
                group,
                rpc,
                payload
            }
        ),
        (any::<u64>(), any::<bool>(), payload).prop_map(|(correlation_id, ok, payload)| {
            PeerFrame::Response {
                correlation_id,
                ok,
                payload,
            }
        }),
        (reason, ".{0,60}").prop_map(|(reason, message)| PeerFrame::Refused { reason, message }),
    ]
}

fn encoded(frame: &PeerFrame) -> BytesMut {
    let mut out = BytesMut::new();
    frame.encode(&mut out).expect("encodes");
    out
}

fn body(frame: &BytesMut) -> Bytes {
    Bytes::copy_from_slice(&frame[PEER_LENGTH_PREFIX_BYTES..])
}

proptest! {
    #[test]
    fn peer_frames_round_trip_exactly(frame in peer_frame()) {
        let bytes = encoded(&frame);
        let prefix: [u8; PEER_LENGTH_PREFIX_BYTES] =
            bytes[..PEER_LENGTH_PREFIX_BYTES].try_into().expect("prefix");
        let len = decode_peer_frame_length(prefix, PEER_FRAME_BYTES_MAX).expect("length");
        prop_assert_eq!(len, bytes.len() - PEER_LENGTH_PREFIX_BYTES);
        prop_assert_eq!(PeerFrame::decode(body(&bytes)).expect("decodes"), frame);
    }

    #[test]
    fn a_split_frame_is_the_whole_frame_in_two_parts(frame in peer_frame()) {
        let mut head = BytesMut::new();
        let payload = frame.encode_split(&mut head).expect("encodes");
        let mut joined = head.to_vec();
        joined.extend_from_slice(&payload);
        prop_assert_eq!(&joined[..], &encoded(&frame)[..]);
    }

    #[test]
    fn peer_frames_cut_short_are_refused_or_shorter_payloads(frame in peer_frame(), cut in any::<prop::sample::Index>()) {
        let bytes = body(&encoded(&frame));
        let at = cut.index(bytes.len());
        match PeerFrame::decode(bytes.slice(..at)) {
            // Requests and responses end in their payload: a cut inside it
            // is a shorter payload, never anything else.
            Ok(PeerFrame::Request { payload, .. }) | Ok(PeerFrame::Response { payload, .. }) => {
                let framed = matches!(frame, PeerFrame::Request { .. } | PeerFrame::Response { .. });
                prop_assert!(framed, "a cut {:?} decoded with a payload", frame);
                prop_assert!(payload.len() < bytes.len());
            }
            Ok(other) => prop_assert!(false, "cut frame decoded as {other:?}"),
            Err(_) => {}
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_peer_decoder(data in proptest::collection::vec(any::<u8>(), 0..128)) {
        if let Ok(frame) = PeerFrame::decode(Bytes::from(data.clone())) {
            prop_assert_eq!(&body(&encoded(&frame))[..], &data[..]);
        }
    }
}

#[test]
fn peer_decoder_refuses_each_malformed_shape() {
    let hello = PeerFrame::Hello {
        version: PEER_PROTOCOL_VERSION,
        cluster_id: [7; CLUSTER_ID_BYTES],
        from: 1,
        to: 2,
    };
    let good = body(&encoded(&hello));
    let mut bad_magic = good.to_vec();
    bad_magic[1] ^= 0xff;
    assert!(matches!(
        PeerFrame::decode(Bytes::from(bad_magic)),
        Err(PeerError::BadMagic(_))
    ));
    let mut trailing = good.to_vec();
    trailing.push(0);
    assert_eq!(
        PeerFrame::decode(Bytes::from(trailing)),
        Err(PeerError::TrailingBytes(1))
    );
    assert!(matches!(
        PeerFrame::decode(good.slice(..good.len() - 1)),
        Err(PeerError::Truncated { .. })
    ));
    assert_eq!(
        PeerFrame::decode(Bytes::from_static(&[9])),
        Err(PeerError::UnknownKind(9))
    );
    assert!(matches!(
        PeerFrame::decode(Bytes::new()),
        Err(PeerError::Truncated { .. })
    ));
    // A request: kind 1, correlation id, then a group tag of 7.
    let mut unknown_group = vec![1u8];
    unknown_group.extend_from_slice(&[0; 8]);
    unknown_group.push(7);
    assert_eq!(
        PeerFrame::decode(Bytes::from(unknown_group)),
        Err(PeerError::UnknownGroup(7))
    );
    let mut unknown_rpc = vec![1u8];
    unknown_rpc.extend_from_slice(&[0; 8]);
    unknown_rpc.extend_from_slice(&[0, 99]);
    assert_eq!(
        PeerFrame::decode(Bytes::from(unknown_rpc)),
        Err(PeerError::UnknownRpc(99))
    );
    let mut bad_status = vec![2u8];
    bad_status.extend_from_slice(&[0; 8]);
    bad_status.push(5);
    assert_eq!(
        PeerFrame::decode(Bytes::from(bad_status)),
        Err(PeerError::UnknownStatus(5))
    );
    // A partition group whose topic is not UTF-8.
    let mut bad_utf8 = vec![1u8];
    bad_utf8.extend_from_slice(&[0; 8]);
    bad_utf8.extend_from_slice(&[1, 1, 0, 0xff]);
    bad_utf8.extend_from_slice(&[0; 4]);
    bad_utf8.push(1);
    assert_eq!(
        PeerFrame::decode(Bytes::from(bad_utf8)),
        Err(PeerError::BadUtf8)
    );
    assert_eq!(
        PeerFrame::decode(Bytes::from_static(&[3, 42, 0, 0, 0])),
        Err(PeerError::UnknownReason(42))
    );
}

#[test]
fn peer_length_prefix_over_the_limit_is_refused_before_allocating() {
    let over = u32::try_from(PEER_FRAME_BYTES_MAX + 1).expect("fits");
    assert_eq!(
        decode_peer_frame_length(over.to_le_bytes(), PEER_FRAME_BYTES_MAX),
        Err(PeerError::FrameTooLarge {
            len: PEER_FRAME_BYTES_MAX + 1,
            max: PEER_FRAME_BYTES_MAX
        })
    );
}

#[test]
fn peer_encoder_refuses_what_the_decoder_could_not_take() {
    let mut out = BytesMut::from(&b"kept"[..]);
    let long_topic = PeerFrame::Request {
        correlation_id: 1,
        group: GroupId::Partition {
            topic: "t".repeat(usize::from(u16::MAX) + 1),
            partition: 0,
        },
        rpc: PeerRpc::Vote,
        payload: Bytes::new(),
    };
    assert!(matches!(
        long_topic.encode(&mut out),
        Err(PeerError::StringTooLong { .. })
    ));
    let huge = PeerFrame::Response {
        correlation_id: 1,
        ok: true,
        payload: Bytes::from(vec![0u8; PEER_FRAME_BYTES_MAX]),
    };
    assert!(matches!(
        huge.encode(&mut out),
        Err(PeerError::FrameTooLarge { .. })
    ));
    assert_eq!(
        &out[..],
        b"kept",
        "a failed encode leaves the buffer as it was"
    );
}
