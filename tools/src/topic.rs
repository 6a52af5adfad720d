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
            let factor = args
                .replication_factor
                .unwrap_or(rill_client::DEFAULT_REPLICATION_FACTOR);
            admin
                .create_replicated_topic(&args.name, args.partitions, factor, &borrowed)
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
                "{:>9}  {:>6}  {:>5}  {:<12}  {:<12}  {:>16}  {:>16}",
                "PARTITION",
                "LEADER",
                "EPOCH",
                "REPLICAS",
                "ISR",
                "LOG_START_OFFSET",
                "HIGH_WATERMARK"
            );
            for p in &d.partitions {
                println!(
                    "{:>9}  {:>6}  {:>5}  {:<12}  {:<12}  {:>16}  {:>16}",
                    p.partition,
                    p.leader,
                    p.leader_epoch,
                    node_list(&p.replicas),
                    node_list(&p.isr),
                    p.log_start_offset,
                    p.log_end_offset,
                );
            }
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

/// Node ids as `1,2,3` (`-` for none).
pub fn node_list(nodes: &[i32]) -> String {
    if nodes.is_empty() {
        return "-".into();
    }
    nodes
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `rill cluster status`.
pub async fn cluster_status(broker: &str) -> Result<(), CliError> {
    let admin = connect(broker).await?;
    let cluster = admin
        .describe_cluster()
        .await
        .map_err(|e| CliError::client("cannot describe the cluster", e))?;
    let topics = admin
        .list_topics()
        .await
        .map_err(|e| CliError::client("cannot list topics", e))?;
    let mut leads: std::collections::BTreeMap<i32, usize> = std::collections::BTreeMap::new();
    let mut hosts: std::collections::BTreeMap<i32, usize> = std::collections::BTreeMap::new();
    let mut under = Vec::new();
    for name in topics {
        let d = admin
            .describe_topic(&name)
            .await
            .map_err(|e| CliError::client(format!("cannot describe topic {name}"), e))?;
        for p in d.partitions {
            *leads.entry(p.leader).or_default() += 1;
            for r in &p.replicas {
                *hosts.entry(*r).or_default() += 1;
            }
            if p.under_replicated() || p.leader < 0 {
                under.push((name.clone(), p));
            }
        }
    }
    println!(
        "controller: {}",
        if cluster.controller_id < 0 {
            "none (election under way)".to_owned()
        } else {
            format!("node {}", cluster.controller_id)
        }
    );
    println!(
        "{:>7}  {:<24}  {:>8}  {:>7}",
        "NODE", "ADDRESS", "REPLICAS", "LEADS"
    );
    for (id, addr) in &cluster.brokers {
        println!(
            "{:>7}  {:<24}  {:>8}  {:>7}",
            id,
            addr,
            hosts.get(id).copied().unwrap_or(0),
            leads.get(id).copied().unwrap_or(0)
        );
    }
    if under.is_empty() {
        println!("under-replicated partitions: none");
    } else {
        println!("under-replicated partitions: {}", under.len());
        for (name, p) in under {
            println!(
                "  {}-{}  leader {}  replicas {}  isr {}",
                name,
                p.partition,
                p.leader,
                node_list(&p.replicas),
                node_list(&p.isr)
            );
        }
    }
    Ok(())
}
