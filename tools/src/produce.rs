//! `rill produce`: one record per input line.
//!
//! Records go through [`rill_client::Producer`] (batching, retries): by
//! key hash, or with `--partition N` all to partition N through
//! [`rill_client::Producer::send_to_partition`]; either way the records of
//! one partition are written in input order.
//!
//! The summary (records, bytes, first and last offset per partition) goes
//! to stderr so stdout stays free for pipelines.

use std::collections::{BTreeMap, VecDeque};

use rill_client::{
    Acks, ClientError, DeliveryFuture, Producer, ProducerConfig, ProducerStats, RecordMetadata,
};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::cli::ProduceArgs;
use crate::error::CliError;

/// Deliveries awaited in order once this many are outstanding, so memory
/// stays bounded however long the input is (the producer's own buffer
/// bounds the bytes; this bounds the futures).
const PENDING_DELIVERIES_MAX: usize = 65_536;
/// Longest input line accepted, so a file without newlines cannot grow
/// one record without bound.
const LINE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// How long `rill produce` waits for an unknown topic to appear.
const METADATA_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(3);

/// What was written to one partition.
#[derive(Debug, Default, Clone, Copy)]
struct PartitionSummary {
    records: u64,
    first_offset: Option<u64>,
    last_offset: Option<u64>,
}

#[derive(Debug, Default)]
struct Summary {
    records: u64,
    bytes: u64,
    failed: u64,
    first_error: Option<ClientError>,
    partitions: BTreeMap<u32, PartitionSummary>,
    producer: ProducerStats,
}

impl Summary {
    fn delivered(&mut self, partition: u32, offset: Option<u64>) {
        let p = self.partitions.entry(partition).or_default();
        p.records += 1;
        if let Some(o) = offset {
            p.first_offset = Some(p.first_offset.map_or(o, |f| f.min(o)));
            p.last_offset = Some(p.last_offset.map_or(o, |l| l.max(o)));
        }
    }

    fn failed(&mut self, e: ClientError) {
        self.failed += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }

    fn print(&self, topic: &str, acks: Acks) {
        let delivered: u64 = self.partitions.values().map(|p| p.records).sum();
        eprintln!(
            "produced {delivered} of {} records ({} bytes) to {topic}{}",
            self.records,
            self.bytes,
            if self.failed > 0 {
                format!(", {} failed", self.failed)
            } else {
                String::new()
            }
        );
        let p = &self.producer;
        if p.batches_resent > 0 || p.epoch_bumps > 0 {
            eprintln!(
                "  retries: {} batches resent, {} duplicates suppressed by the broker, {} epoch bumps",
                p.batches_resent, p.duplicates_suppressed, p.epoch_bumps
            );
        }
        for (partition, p) in &self.partitions {
            match (p.first_offset, p.last_offset) {
                (Some(first), Some(last)) => eprintln!(
                    "  partition {partition}: {} records, offsets {first}..={last}",
                    p.records
                ),
                _ => eprintln!(
                    "  partition {partition}: {} records, offsets unknown{}",
                    p.records,
                    if acks == Acks::None {
                        " (acks=none)"
                    } else {
                        ""
                    }
                ),
            }
        }
    }
}

/// One parsed input line.
struct Line {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
}

pub async fn run(broker: &str, args: ProduceArgs) -> Result<(), CliError> {
    let input: Box<dyn AsyncBufRead + Unpin + Send> = match &args.file {
        Some(path) => {
            let file = tokio::fs::File::open(path).await.map_err(|e| {
                CliError::io(format!("cannot open input file {}", path.display()), e)
            })?;
            Box::new(BufReader::new(file))
        }
        None => Box::new(BufReader::new(tokio::io::stdin())),
    };
    let acks = args.acks.to_client();
    let headers: Vec<(String, Vec<u8>)> = args
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    let mut reader = LineReader {
        input,
        separator: args.key_separator.clone().map(String::into_bytes),
        line_number: 0,
        buf: Vec::new(),
    };
    let mut summary = Summary::default();
    let result = produce_all(broker, &args, &headers, &mut reader, &mut summary).await;
    if summary.records > 0 || result.is_ok() {
        summary.print(&args.topic, acks);
    }
    result?;
    if let Some(e) = summary.first_error {
        return Err(CliError::Failed(format!(
            "{} of {} records were not delivered to {}: {e}",
            summary.failed, summary.records, args.topic
        )));
    }
    Ok(())
}

struct LineReader {
    input: Box<dyn AsyncBufRead + Unpin + Send>,
    separator: Option<Vec<u8>>,
    line_number: u64,
    buf: Vec<u8>,
}

impl LineReader {
    /// The next record, `None` at the end of input.
    async fn next(&mut self) -> Result<Option<Line>, CliError> {
        self.buf.clear();
        let n = (&mut self.input)
            .take(LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .await
            .map_err(|e| CliError::io("cannot read input", e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line_number += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        } else if self.buf.len() > LINE_BYTES_MAX {
            return Err(CliError::Usage(format!(
                "input line {} is longer than {LINE_BYTES_MAX} bytes",
                self.line_number
            )));
        }
        let Some(sep) = &self.separator else {
            return Ok(Some(Line {
                key: None,
                value: self.buf.clone(),
            }));
        };
        match find(&self.buf, sep) {
            Some(at) => Ok(Some(Line {
                key: Some(self.buf.get(..at).unwrap_or_default().to_vec()),
                value: self.buf.get(at + sep.len()..).unwrap_or_default().to_vec(),
            })),
            None => Err(CliError::Usage(format!(
                "input line {} has no key separator {:?}; write KEY{}VALUE or drop --key-separator",
                self.line_number,
                String::from_utf8_lossy(sep),
                String::from_utf8_lossy(sep)
            ))),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn produce_all(
    broker: &str,
    args: &ProduceArgs,
    headers: &[(String, Vec<u8>)],
    reader: &mut LineReader,
    summary: &mut Summary,
) -> Result<(), CliError> {
    let mut config = ProducerConfig::new(broker);
    // A mistyped topic name should say so in seconds, not Kafka's minute.
    config.max_block = METADATA_WAIT_MAX;
    config.acks = args.acks.to_client();
    config.compression = args.compression.to_client();
    config.enable_idempotence = args.enable_idempotence;
    config.client_id = "rill-produce".to_owned();
    let producer = Producer::new(config)
        .await
        .map_err(|e| CliError::client(format!("cannot reach broker {broker}"), e))?;
    let header_refs: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let outcome = async {
        while let Some(line) = reader.next().await? {
            let key = line.key.as_deref();
            let sent = match args.partition {
                Some(p) => {
                    producer
                        .send_to_partition(&args.topic, p, key, &line.value, &header_refs)
                        .await
                }
                None => {
                    producer
                        .send(&args.topic, key, &line.value, &header_refs)
                        .await
                }
            };
            let delivery =
                sent.map_err(|e| CliError::client(format!("cannot produce to {}", args.topic), e))?;
            summary.records += 1;
            summary.bytes += (line.value.len() + line.key.as_ref().map_or(0, Vec::len)) as u64;
            pending.push_back(delivery);
            if pending.len() >= PENDING_DELIVERIES_MAX {
                if let Some(d) = pending.pop_front() {
                    settle(summary, d.await);
                }
            }
        }
        Ok::<(), CliError>(())
    }
    .await;
    // Whatever was buffered is still delivered (or fails) before we report.
    let _ = producer.flush().await;
    for d in pending {
        settle(summary, d.await);
    }
    let _ = producer.close().await;
    summary.producer = producer.stats();
    outcome
}

fn settle(summary: &mut Summary, result: Result<RecordMetadata, ClientError>) {
    match result {
        Ok(meta) => summary.delivered(meta.partition, meta.offset),
        Err(e) => summary.failed(e),
    }
}
