//! Well-formed requests with hostile values (random names, partitions,
//! offsets, limits, timestamps, configs, record bytes) are all answered,
//! and the broker keeps serving: handlers never panic on decoded input.

use bytes::BytesMut;
use rill_protocol::wire::*;

use crate::common::{batch, start, Client};

/// Requests sent; each is answered before the next (so a panic shows as a
/// missing answer at the request that caused it).
const REQUESTS: u32 = 300;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn edge_u64(&mut self) -> u64 {
        [
            0,
            1,
            2,
            5,
            1 << 20,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
            self.next(),
        ][self.below(9) as usize]
    }
    fn edge_u32(&mut self) -> u32 {
        [0, 1, 7, 4096, 1 << 20, u32::MAX, self.next() as u32][self.below(7) as usize]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_well_formed_requests_are_all_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(broker.local_addr()).await;
    c.create_topic("fz", 3, &[]).await;
    let names = ["fz", "fz", "nope", "", ".", "a/b", "__x", "fz2", "x.y-z"];
    let keys = [
        "retention.ms",
        "segment.bytes",
        "flush.policy",
        "max.message.bytes",
        "bogus",
    ];
    let values = [
        "-1",
        "0",
        "1",
        "99999999999999999999",
        "abc",
        "interval_ms:5",
        "always",
    ];
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    for i in 0..REQUESTS {
        let topic = rng.pick(&names).to_string();
        let request = match rng.below(7) {
            0 => Request::Metadata(MetadataRequest {
                topics: (rng.below(2) == 0).then(|| vec![topic.clone()]),
            }),
            1 => Request::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: topic.clone(),
                    partitions: rng.below(5) as u32,
                    replication_factor: rng.below(3) as u16,
                    configs: vec![(rng.pick(&keys).into(), rng.pick(&values).into())],
                }],
                validate_only: rng.below(2) == 0,
            }),
            2 => Request::ListOffsets(ListOffsetsRequest {
                topics: vec![ListOffsetsTopic {
                    name: topic.clone(),
                    partitions: vec![ListOffsetsPartition {
                        partition: rng.edge_u32(),
                        timestamp: [-3, -2, -1, 0, i64::MAX, i64::MIN][rng.below(6) as usize],
                    }],
                }],
            }),
            3 | 4 => {
                let records = match rng.below(4) {
                    0 => BytesMut::new(),
                    1 => {
                        let mut b = batch(1 + rng.below(3) as usize, "fz", rng.next() as i64);
                        let at = rng.below(b.len() as u64) as usize;
                        b[at] ^= 1 << rng.below(8);
                        b
                    }
                    2 => {
                        let mut b = batch(2, "fz", 1);
                        b.truncate(rng.below(b.len() as u64) as usize);
                        b
                    }
                    _ => batch(1 + rng.below(3) as usize, "fz", rng.next() as i64),
                };
                let acks = [Acks::Leader, Acks::All][rng.below(2) as usize];
                Client::produce_request(&topic, rng.below(4) as u32, acks, records)
            }
            5 => Request::Fetch(FetchRequest {
                max_wait_ms: rng.below(20) as u32,
                min_bytes: rng.edge_u32(),
                max_bytes: rng.edge_u32(),
                topics: vec![FetchTopic {
                    name: topic.clone(),
                    partitions: vec![FetchPartition {
                        partition: rng.below(4) as u32,
                        fetch_offset: rng.edge_u64(),
                        partition_max_bytes: rng.edge_u32(),
                    }],
                }],
            }),
            _ => Request::DeleteTopics(DeleteTopicsRequest {
                names: vec![if rng.below(4) == 0 {
                    "fz2".into()
                } else {
                    topic.clone()
                }],
            }),
        };
        let key = request.api_key();
        let id = c.send(request).await;
        let response = c.recv(key, id).await;
        assert_eq!(response.api_key(), key, "request {i}");
    }
    // Still serving, and the original topic still works.
    let r = c.produce("fz", 0, Acks::All, batch(1, "end", 1)).await;
    assert!(matches!(
        r.error,
        ErrorCode::None | ErrorCode::UnknownTopicOrPartition
    ));
    broker.shutdown().await;
}
