//! `rill topic`: create, list, describe and delete topics through
//! [`rill_client::Admin`].
//!
//! `alter` is parsed but refused: the protocol has no request that changes
//! a topic's settings yet.

use rill_client::{Admin, AdminConfig};
use rill_protocol::wire::create_topics::topic_config;

use crate::cli::{TopicCommand, TopicSettings};
use crate::error::CliError;

pub async fn run(broker: &str, cmd: TopicCommand) -> Result<(), CliError> {
    if let TopicCommand::Alter(args) = &cmd {
        return Err(CliError::NotYet {
            what: format!("rill topic alter {}", args.name),
            why: "the protocol has no request to change topic settings yet; recreate the topic with the settings you need",
        });
    }
    let admin = connect(broker).await?;
    match cmd {
        TopicCommand::Create(args) => {
            let configs = settings_to_configs(&args.settings);
            let borrowed: Vec<(&str, &str)> = configs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            admin
                .create_topic(&args.name, args.partitions, &borrowed)
                .await
                .map_err(|e| CliError::client(format!("cannot create topic {}", args.name), e))?;
            println!(
                "created topic {} with {} partition{}",
                args.name,
                args.partitions,
                if args.partitions == 1 { "" } else { "s" }
            );
        }
        TopicCommand::List => {
            let names = admin
                .list_topics()
                .await
                .map_err(|e| CliError::client("cannot list topics", e))?;
            for name in names {
                println!("{name}");
            }
        }
        TopicCommand::Describe { name } => {
            let d = admin
                .describe_topic(&name)
                .await
                .map_err(|e| CliError::client(format!("cannot describe topic {name}"), e))?;
            println!("topic {} ({} partitions)", d.name, d.partitions.len());
            println!(
                "{:>9}  {:>6}  {:>16}  {:>16}  {:>12}",
                "PARTITION", "LEADER", "LOG_START_OFFSET", "LOG_END_OFFSET", "RECORDS"
            );
            for p in &d.partitions {
                println!(
                    "{:>9}  {:>6}  {:>16}  {:>16}  {:>12}",
                    p.partition,
                    p.leader,
                    p.log_start_offset,
                    p.log_end_offset,
                    p.log_end_offset.saturating_sub(p.log_start_offset)
                );
            }
            println!("(partition sizes in bytes: not reported by the protocol yet)");
        }
        TopicCommand::Delete { name } => {
            admin
                .delete_topic(&name)
                .await
                .map_err(|e| CliError::client(format!("cannot delete topic {name}"), e))?;
            println!("deleted topic {name}");
        }
        TopicCommand::Alter(_) => {}
    }
    Ok(())
}

pub async fn connect(broker: &str) -> Result<Admin, CliError> {
    Admin::connect(AdminConfig::new(broker))
        .await
        .map_err(|e| CliError::client(format!("cannot reach broker {broker}"), e))
}

/// The named flags as Kafka config keys, then the free-form `--config`s.
pub fn settings_to_configs(s: &TopicSettings) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            out.push((k.to_owned(), v));
        }
    };
    put(
        topic_config::RETENTION_MS,
        s.retention_ms.map(|v| v.to_string()),
    );
    put(
        topic_config::RETENTION_BYTES,
        s.retention_bytes.map(|v| v.to_string()),
    );
    put(
        topic_config::SEGMENT_BYTES,
        s.segment_bytes.map(|v| v.to_string()),
    );
    put(
        topic_config::SEGMENT_MS,
        s.segment_ms.map(|v| v.to_string()),
    );
    put(topic_config::FLUSH_POLICY, s.fsync.clone());
    put(
        topic_config::MAX_MESSAGE_BYTES,
        s.max_message_bytes.map(|v| v.to_string()),
    );
    out.extend(s.configs.iter().cloned());
    out
}
