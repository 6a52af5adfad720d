//! A real broker on 127.0.0.1:0 in a temporary data directory.

use std::path::Path;
use std::time::Duration;

use rill_broker::{Broker, BrokerConfig, BrokerHandle};
use rill_client::{Admin, AdminConfig, Consumer, ConsumerConfig, Records};

/// Longest a test waits for records it knows were produced.
pub const CONSUME_DEADLINE: Duration = Duration::from_secs(30);

pub async fn start_broker(data_dir: &Path) -> BrokerHandle {
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        data_dir: data_dir.to_path_buf(),
        ..BrokerConfig::default()
    };
    Broker::start(config).await.expect("broker starts")
}

/// A broker in a fresh tempdir (kept alive by the returned guard).
pub async fn broker() -> (tempfile::TempDir, BrokerHandle, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let handle = start_broker(dir.path()).await;
    let addr = handle.local_addr().to_string();
    (dir, handle, addr)
}

pub async fn create_topic(addr: &str, name: &str, partitions: u32) {
    let admin = Admin::connect(AdminConfig::new(addr)).await.expect("admin");
    admin
        .create_topic(name, partitions, &[])
        .await
        .expect("create topic");
}

/// An owned copy of a consumed record, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub partition: u32,
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

pub fn to_owned(records: &Records) -> Vec<Owned> {
    let mut out = Vec::new();
    records
        .for_each(|r| {
            out.push(Owned {
                partition: r.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.to_vec(),
                headers: r
                    .headers()
                    .map(|(n, v)| (n.to_owned(), v.to_vec()))
                    .collect(),
            })
        })
        .expect("records decode");
    out
}

/// Polls until `want` records arrived (or the deadline passes).
pub async fn consume(consumer: &mut Consumer, want: usize) -> Vec<Owned> {
    let deadline = tokio::time::Instant::now() + CONSUME_DEADLINE;
    let mut out = Vec::new();
    while out.len() < want && tokio::time::Instant::now() < deadline {
        let records = consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("poll");
        out.extend(to_owned(&records));
    }
    out
}

pub fn consumer_config(addr: &str) -> ConsumerConfig {
    ConsumerConfig {
        fetch_max_wait: Duration::from_millis(100),
        ..ConsumerConfig::new(addr)
    }
}
