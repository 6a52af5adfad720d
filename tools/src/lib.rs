//! The `rill` command line and `rill bench`.
//!
//! This crate owns everything a person types: topic and consumer-group
//! administration, console produce and consume, and the load tool. It adds no protocol or
//! storage logic of its own: every request goes through `rill-client`, and
//! `rill bench` without `--broker` runs `rill-broker`'s library in process so
//! that one command measures a fresh machine.
//!
//! Errors are typed ([`CliError`]) and rendered by the binary as one line on
//! stderr — what failed, why, what to do — with exit code 1 for operating
//! failures and 2 for usage mistakes and features that are not built yet.
//!
//! # Layout
//! - [`cli`]: the clap definitions of every command and flag.
//! - [`error`]: [`CliError`], its hints and exit codes.
//! - [`topic`]: `rill topic create|list|describe|delete|alter`.
//! - [`group`]: `rill group list|describe|reset-offsets|delete`.
//! - [`produce`]: `rill produce`: lines from stdin or a file, through the
//!   producer, by key or pinned to one partition.
//! - [`consume`]: `rill consume`: seek, poll, print as value, kv or json;
//!   with `--group`, as a committing member of a consumer group.
//! - [`bench`]: `rill bench`: the embedded broker, producer, consumer and
//!   group-member actors, statistics, verification, the report, CSV and
//!   SVG chart.

pub mod bench;
pub mod cli;
pub mod consume;
pub mod error;
pub mod group;
pub mod produce;
pub mod topic;

pub use cli::{Cli, Command};
pub use error::CliError;

/// Runs one parsed command line to completion.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    // An empty RILL_BROKER means "not set", as in most tools.
    let broker = cli.broker.filter(|b| !b.trim().is_empty());
    match cli.command {
        Command::Topic(cmd) => topic::run(&cli::broker_or_default(broker), cmd).await,
        Command::Produce(args) => produce::run(&cli::broker_or_default(broker), args).await,
        Command::Consume(args) => consume::run(&cli::broker_or_default(broker), args).await,
        Command::Bench(args) => bench::run(broker, args).await,
        Command::Group(cmd) => group::run(&cli::broker_or_default(broker), cmd).await,
        Command::Cluster(cli::ClusterCommand::Status) => {
            topic::cluster_status(&cli::broker_or_default(broker)).await
        }
    }
}
