//! `rill consume`: assign partitions, seek, poll, print.
//!
//! `--exit-at-end` reads the partitions' log end offsets once at start and
//! stops when every partition's position reaches its end (records written
//! later are not printed), like `kcat -e`. Ctrl-C stops cleanly: what was
//! printed stays printed and the exit code is 0. A closed stdout (`| head`)
//! also ends the command quietly.
//!
//! With `--group G` the command is a member of consumer group G (see
//! [`run_group`]): the broker assigns the partitions, reading starts at
//! the group's committed offsets (the oldest record of a partition the
//! group has never committed), and offsets are committed every
//! [`GROUP_AUTO_COMMIT_INTERVAL`] and once more on the way out.
//!
//! JSON output carries keys, header values and values as strings when they
//! are valid UTF-8 and as `{"base64": "..."}` (standard alphabet, padded)
//! when they are not, so any bytes round-trip.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use base64::Engine;
use rill_client::{
    AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, GroupConsumer, GroupConsumerConfig,
    OffsetSpec, SeekTo,
};
use serde_json::{json, Value};

use crate::cli::{ConsumeArgs, OutputFormat};
use crate::error::CliError;
use crate::topic;

/// How long one poll waits before the loop checks Ctrl-C and the end
/// condition again.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);
/// How often a group member commits what it has printed: Kafka's default.
pub const GROUP_AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(5);
/// With `--group --exit-at-end`, a member that has held no partition for
/// this long (the group has more members than the topic has partitions)
/// stops instead of waiting for one.
pub const GROUP_UNASSIGNED_EXIT: Duration = Duration::from_secs(10);

pub async fn run(broker: &str, args: ConsumeArgs) -> Result<(), CliError> {
    if let Some(group) = args.group.clone() {
        return run_group(broker, args, &group).await;
    }
    let admin = topic::connect(broker).await?;
    let description = admin
        .describe_topic(&args.topic)
        .await
        .map_err(|e| CliError::client(format!("cannot read topic {}", args.topic), e))?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) => {
            if !description.partitions.iter().any(|d| d.partition == p) {
                return Err(CliError::Usage(format!(
                    "topic {} has no partition {p} (it has {}); see `rill topic describe {}`",
                    args.topic,
                    description.partitions.len(),
                    args.topic
                )));
            }
            vec![p]
        }
        None => description.partitions.iter().map(|d| d.partition).collect(),
    };
    let ends: Option<HashMap<u32, u64>> = if args.exit_at_end {
        let found = admin
            .list_offsets(&args.topic, &partitions, OffsetSpec::Latest)
            .await
            .map_err(|e| {
                CliError::client(format!("cannot read end offsets of {}", args.topic), e)
            })?;
        Some(found.into_iter().map(|o| (o.partition, o.offset)).collect())
    } else {
        None
    };

    let mut config = ConsumerConfig::new(broker);
    config.client_id = "rill-consume".to_owned();
    let mut consumer = Consumer::new(config)
        .await
        .map_err(|e| CliError::client(format!("cannot reach broker {broker}"), e))?;
    consumer.assign(
        partitions
            .iter()
            .map(|&p| (args.topic.clone(), p))
            .collect(),
    );
    let start = match (args.from_beginning, args.offset, args.timestamp) {
        (true, _, _) => SeekTo::Earliest,
        (_, Some(o), _) => SeekTo::Offset(o),
        (_, _, Some(ts)) => SeekTo::Timestamp(ts),
        _ => SeekTo::Latest,
    };
    for &p in &partitions {
        consumer
            .seek(&args.topic, p, start)
            .await
            .map_err(|e| CliError::client(format!("cannot seek {}-{p}", args.topic), e))?;
    }

    // Unlocked `Stdout` (not a lock guard) so this future stays `Send`.
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut printed: u64 = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    'poll: loop {
        if let Some(ends) = &ends {
            let done = partitions.iter().all(|&p| {
                let end = ends.get(&p).copied().unwrap_or(0);
                consumer
                    .position(&args.topic, p)
                    .is_some_and(|pos| pos >= end)
            });
            if done {
                break;
            }
        }
        let records = tokio::select! {
            _ = &mut ctrl_c => break,
            polled = consumer.poll(POLL_TIMEOUT) => polled
                .map_err(|e| CliError::client(format!("cannot read {}", args.topic), e))?,
        };
        let mut write_error = None;
        for batch in records.batches() {
            let batch =
                batch.map_err(|e| CliError::client(format!("cannot read {}", args.topic), e))?;
            for record in batch.iter() {
                if let Some(ends) = &ends {
                    if record.offset >= ends.get(&record.partition).copied().unwrap_or(0) {
                        continue;
                    }
                }
                if args.max_messages.is_some_and(|max| printed >= max) {
                    break;
                }
                if let Err(e) = write_record(&mut out, &record, args.format) {
                    write_error = Some(e);
                    break;
                }
                printed += 1;
            }
        }
        if let Some(e) = write_error.or_else(|| out.flush().err()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break 'poll;
            }
            return Err(CliError::io("cannot write to stdout", e));
        }
        if args.max_messages.is_some_and(|max| printed >= max) {
            break;
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(CliError::io("cannot write to stdout", e))
        }
        _ => {}
    }
    eprintln!("consumed {printed} records from {}", args.topic);
    Ok(())
}

/// `rill consume --group G`: subscribe, poll, print, commit.
///
/// What is committed is exactly what was printed: auto-commit runs at the
/// start of a poll, when the previous poll's records are all printed; on
/// the way out (end reached, `--max-messages`, Ctrl-C, closed stdout) each
/// partition whose last poll was not printed in full is first sought back
/// to its first unprinted record, then the positions are committed and the
/// member leaves the group, so its partitions move to the others at once.
///
/// `--exit-at-end` stops once every partition held is caught up: after a
/// poll that brought nothing, each held position is at least the log end
/// offset the broker reports then.
pub async fn run_group(broker: &str, args: ConsumeArgs, group: &str) -> Result<(), CliError> {
    let admin = topic::connect(broker).await?;
    // A clear error for a missing topic, instead of a member that waits
    // forever for partitions.
    admin
        .describe_topic(&args.topic)
        .await
        .map_err(|e| CliError::client(format!("cannot read topic {}", args.topic), e))?;
    let mut config = GroupConsumerConfig::new(broker, group);
    config.client_id = "rill-consume".to_owned();
    config.auto_commit = Some(GROUP_AUTO_COMMIT_INTERVAL);
    // As kafka-console-consumer: a partition the group never committed
    // starts at its newest record unless --from-beginning asks for the
    // oldest; committed offsets always win.
    config.auto_offset_reset = if args.from_beginning {
        AutoOffsetReset::Earliest
    } else {
        AutoOffsetReset::Latest
    };
    let mut consumer = GroupConsumer::new(config)
        .await
        .map_err(|e| CliError::client(format!("cannot join group {group} at {broker}"), e))?;
    consumer
        .subscribe([args.topic.clone()])
        .map_err(|e| CliError::client(format!("cannot subscribe to {}", args.topic), e))?;

    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut printed: u64 = 0;
    // Partition -> first offset polled but not printed (the rewind point).
    let mut unprinted: HashMap<u32, u64> = HashMap::new();
    let mut unassigned_since = tokio::time::Instant::now();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let outcome: Result<(), CliError> = async {
        loop {
            let records = tokio::select! {
                _ = &mut ctrl_c => return Ok(()),
                polled = consumer.poll(POLL_TIMEOUT) => polled
                    .map_err(|e| CliError::client(format!("cannot read {} in group {group}", args.topic), e))?,
            };
            let held = consumer.assignment();
            if !held.is_empty() {
                unassigned_since = tokio::time::Instant::now();
            }
            if records.is_empty() {
                if args.exit_at_end {
                    if held.is_empty() {
                        if unassigned_since.elapsed() >= GROUP_UNASSIGNED_EXIT {
                            eprintln!(
                                "no partition of {} was assigned to this member of {group} for {} s; stopping",
                                args.topic,
                                GROUP_UNASSIGNED_EXIT.as_secs()
                            );
                            return Ok(());
                        }
                    } else if caught_up(&admin, &consumer, &args.topic, &held).await? {
                        return Ok(());
                    }
                }
                continue;
            }
            let mut write_error = None;
            for batch in records.batches() {
                let batch = batch
                    .map_err(|e| CliError::client(format!("cannot read {}", args.topic), e))?;
                for record in batch.iter() {
                    let full = args.max_messages.is_some_and(|max| printed >= max);
                    if full || write_error.is_some() {
                        let first = unprinted.entry(record.partition).or_insert(record.offset);
                        *first = (*first).min(record.offset);
                        continue;
                    }
                    if let Err(e) = write_record(&mut out, &record, args.format) {
                        // The failed record counts as unprinted too.
                        unprinted.entry(record.partition).or_insert(record.offset);
                        write_error = Some(e);
                        continue;
                    }
                    printed += 1;
                }
            }
            if let Some(e) = write_error.or_else(|| out.flush().err()) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(CliError::io("cannot write to stdout", e));
            }
            if args.max_messages.is_some_and(|max| printed >= max) {
                return Ok(());
            }
        }
    }
    .await;
    let _ = out.flush();
    // Leave the group whatever happened, committing only what was printed.
    let mut left = Ok(());
    for (partition, offset) in &unprinted {
        if let Err(e) = consumer
            .seek(&args.topic, *partition, SeekTo::Offset(*offset))
            .await
        {
            left = Err(CliError::client(
                format!("cannot rewind {}-{partition} before committing", args.topic),
                e,
            ));
        }
    }
    if left.is_ok() {
        left = consumer
            .commit()
            .await
            .map_err(|e| CliError::client(format!("cannot commit offsets of group {group}"), e));
    }
    let closed = consumer
        .close()
        .await
        .map_err(|e| CliError::client(format!("cannot leave group {group}"), e));
    outcome?;
    left?;
    closed?;
    eprintln!(
        "consumed {printed} records from {} (group {group})",
        args.topic
    );
    Ok(())
}

/// Whether every held partition's position has reached the log end offset.
async fn caught_up(
    admin: &rill_client::Admin,
    consumer: &GroupConsumer,
    topic: &str,
    held: &[(String, u32)],
) -> Result<bool, CliError> {
    let partitions: Vec<u32> = held
        .iter()
        .filter(|(t, _)| t == topic)
        .map(|&(_, p)| p)
        .collect();
    let ends = admin
        .list_offsets(topic, &partitions, OffsetSpec::Latest)
        .await
        .map_err(|e| CliError::client(format!("cannot read end offsets of {topic}"), e))?;
    Ok(partitions.iter().all(|&p| {
        let end = ends
            .iter()
            .find(|o| o.partition == p)
            .map_or(u64::MAX, |o| o.offset);
        consumer.position(topic, p).is_some_and(|pos| pos >= end)
    }))
}

fn write_record(
    out: &mut impl Write,
    record: &ConsumerRecord<'_>,
    format: OutputFormat,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Value => {
            out.write_all(record.value)?;
            out.write_all(b"\n")
        }
        OutputFormat::Kv => {
            out.write_all(record.key.unwrap_or_default())?;
            out.write_all(b"\t")?;
            out.write_all(record.value)?;
            out.write_all(b"\n")
        }
        OutputFormat::Json => {
            serde_json::to_writer(&mut *out, &record_json(record))?;
            out.write_all(b"\n")
        }
    }
}

/// A record as the JSON object `--format json` prints.
pub fn record_json(record: &ConsumerRecord<'_>) -> Value {
    let headers: Vec<Value> = record
        .headers()
        .map(|(name, value)| json!({ "name": name, "value": bytes_json(value) }))
        .collect();
    json!({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": record.key.map_or(Value::Null, bytes_json),
        "headers": headers,
        "value": bytes_json(record.value),
    })
}

/// UTF-8 bytes as a JSON string, anything else as `{"base64": ...}`.
pub fn bytes_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    }
}
