//! Shared by the broker tests: start a real broker on 127.0.0.1:0 in a temp
//! dir, and a raw wire client (the real codec over a real TcpStream).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use rill_broker::{Broker, BrokerConfig, BrokerHandle};
use rill_protocol::batch::stamp_base_offset;
use rill_protocol::wire::*;
use rill_protocol::{BatchBuilder, Compression};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The real broker binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_rill-broker");

/// Upper bound on any single wait in these tests; far above what a healthy
/// broker needs, so a hang fails instead of stalling the suite.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

pub fn config(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        metrics_addr: "127.0.0.1:0".parse().expect("literal address"),
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    }
}

pub async fn start(dir: &Path) -> BrokerHandle {
    Broker::start(config(dir)).await.expect("broker starts")
}

/// A batch of `n` records whose values carry `tag`, timestamps `ts_ms`.
pub fn batch(n: usize, tag: &str, ts_ms: i64) -> BytesMut {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..n {
        let value = format!("{tag}-{i}");
        b.push(
            ts_ms,
            Some(tag.as_bytes()),
            value.as_bytes(),
            &[("h", b"v")],
        );
    }
    b.finish_into_mut().expect("batch builds")
}

/// What the broker stores for `sent` when it lands at `base_offset`.
pub fn stamped(sent: &[u8], base_offset: u64) -> Vec<u8> {
    let mut v = sent.to_vec();
    stamp_base_offset(&mut v, base_offset);
    v
}

pub struct Client {
    pub stream: TcpStream,
    next_correlation_id: u32,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            next_correlation_id: 1,
        }
    }

    /// Sends a request without waiting; returns its correlation id.
    pub async fn send(&mut self, request: Request) -> u32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader {
            api_key: request.api_key(),
            api_version: 0,
            correlation_id,
            client_id: "broker-tests".into(),
        };
        let mut buf = BytesMut::new();
        encode_request_frame(&header, &request, &mut buf).expect("request encodes");
        self.stream.write_all(&buf).await.expect("send request");
        correlation_id
    }

    /// Reads one response frame: (correlation id, body).
    pub async fn recv_raw(&mut self) -> std::io::Result<(u32, Bytes)> {
        let read = async {
            let mut prefix = [0u8; 4];
            self.stream.read_exact(&mut prefix).await?;
            let len = u32::from_le_bytes(prefix) as usize;
            let mut body = vec![0u8; len];
            self.stream.read_exact(&mut body).await?;
            let mut body = Bytes::from(body);
            let header = ResponseHeader::decode(&mut body)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            Ok((header.correlation_id, body))
        };
        tokio::time::timeout(IO_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    }

    pub async fn recv(&mut self, key: ApiKey, expected_correlation_id: u32) -> Response {
        let (correlation_id, mut body) = self.recv_raw().await.expect("response arrives");
        assert_eq!(
            correlation_id, expected_correlation_id,
            "responses in request order"
        );
        Response::decode(key, 0, &mut body).expect("response decodes")
    }

    pub async fn call(&mut self, request: Request) -> Response {
        let key = request.api_key();
        let id = self.send(request).await;
        self.recv(key, id).await
    }

    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: u32,
        configs: &[(&str, &str)],
    ) -> CreatableTopicResult {
        let request = Request::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.into(),
                partitions,
                replication_factor: 0,
                configs: configs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }],
            validate_only: false,
        });
        match self.call(request).await {
            Response::CreateTopics(mut r) => r.topics.pop().expect("one result"),
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn produce_request(topic: &str, partition: u32, acks: Acks, records: BytesMut) -> Request {
        Request::Produce(ProduceRequest {
            acks,
            timeout_ms: 5_000,
            topics: vec![ProduceTopic {
                name: topic.into(),
                partitions: vec![ProducePartition { partition, records }],
            }],
        })
    }

    pub async fn produce(
        &mut self,
        topic: &str,
        partition: u32,
        acks: Acks,
        records: BytesMut,
    ) -> ProducePartitionResponse {
        match self
            .call(Self::produce_request(topic, partition, acks, records))
            .await
        {
            Response::Produce(mut r) => r
                .topics
                .pop()
                .and_then(|mut t| t.partitions.pop())
                .expect("one partition result"),
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn fetch_request(
        topic: &str,
        partition: u32,
        offset: u64,
        max_wait_ms: u32,
        min_bytes: u32,
    ) -> Request {
        Request::Fetch(FetchRequest {
            max_wait_ms,
            min_bytes,
            max_bytes: 16 * 1024 * 1024,
            topics: vec![FetchTopic {
                name: topic.into(),
                partitions: vec![FetchPartition {
                    partition,
                    fetch_offset: offset,
                    partition_max_bytes: 8 * 1024 * 1024,
                }],
            }],
        })
    }

    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_wait_ms: u32,
        min_bytes: u32,
    ) -> FetchPartitionResponse {
        match self
            .call(Self::fetch_request(
                topic,
                partition,
                offset,
                max_wait_ms,
                min_bytes,
            ))
            .await
        {
            Response::Fetch(mut r) => {
                assert_eq!(r.error, ErrorCode::None);
                r.topics
                    .pop()
                    .and_then(|mut t| t.partitions.pop())
                    .expect("one partition result")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: u32,
        timestamp: i64,
    ) -> ListOffsetsPartitionResponse {
        let request = Request::ListOffsets(ListOffsetsRequest {
            topics: vec![ListOffsetsTopic {
                name: topic.into(),
                partitions: vec![ListOffsetsPartition {
                    partition,
                    timestamp,
                }],
            }],
        });
        match self.call(request).await {
            Response::ListOffsets(mut r) => r
                .topics
                .pop()
                .and_then(|mut t| t.partitions.pop())
                .expect("one partition result"),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// True when the broker closed the connection (EOF) without sending
    /// anything more.
    pub async fn closed_by_peer(&mut self) -> bool {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(IO_TIMEOUT, self.stream.read(&mut buf)).await {
            Ok(Ok(0)) => true,
            Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionReset,
            _ => false,
        }
    }
}

/// Splits a run of batches into (base_offset, bytes) per batch.
pub fn batches(mut records: Bytes) -> Vec<(u64, Bytes)> {
    let mut out = Vec::new();
    while !records.is_empty() {
        let header = rill_protocol::BatchHeader::parse(&records).expect("stored batch parses");
        let batch = records.split_to(header.batch_length as usize);
        out.push((header.base_offset, batch));
    }
    assert!(!records.has_remaining());
    out
}

/// `GET /metrics` over a plain TCP connection.
pub async fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("send scrape");
    let mut out = String::new();
    tokio::time::timeout(IO_TIMEOUT, s.read_to_string(&mut out))
        .await
        .expect("scrape in time")
        .expect("read scrape");
    assert!(
        out.starts_with("HTTP/1.1 200 OK"),
        "scrape answered {out:.200}"
    );
    out
}

/// The value of the sample line `name{labels}` in a scrape (0 if absent).
pub fn sample(scrape: &str, name_and_labels: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A `rill-broker` process; killed on drop.
pub struct BrokerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BrokerProcess {
    /// Starts the binary on loopback ports with `extra` flags, defaults
    /// otherwise (the in-flight budgets and connection limit under test).
    pub fn spawn(data_dir: &Path, extra: &[&str]) -> BrokerProcess {
        Self::spawn_with(Command::new(BIN), data_dir, extra)
    }

    /// As [`Self::spawn`], through `command`: the binary itself, or a
    /// wrapper that ends by exec'ing the binary named in its arguments.
    pub fn spawn_with(mut command: Command, data_dir: &Path, extra: &[&str]) -> BrokerProcess {
        let mut child = command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
                "--io-backend",
                "std",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rill-broker");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the start line");
        // "rill-broker listening on <addr> metrics on <addr>"
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words.get(..3),
            Some(&["rill-broker", "listening", "on"][..]),
            "start line {line:?}"
        );
        let addr = words
            .get(3)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("start line {line:?}"));
        let metrics = words
            .get(6)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("start line {line:?}"));
        BrokerProcess {
            child,
            addr,
            metrics,
        }
    }
}
