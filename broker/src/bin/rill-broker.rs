//! `rill-broker`: runs one broker until SIGINT or SIGTERM, then shuts down
//! gracefully (in-flight requests answered, logs closed with their
//! clean-shutdown markers) and exits 0.
//!
//! On start it prints one line on stdout,
//! `rill-broker listening on <addr> metrics on <addr>`, so scripts and tests
//! that asked for port 0 learn the real ports.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use rill_broker::{Broker, BrokerConfig, ConfigError};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let config = match BrokerConfig::load(std::env::args_os()) {
        Ok(c) => c,
        // --help, --version and flag errors print themselves and exit.
        Err(ConfigError::Cli(e)) => e.exit(),
        Err(e) => return Err(e).context("loading configuration"),
    };
    if config.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    rill_broker::raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rill-broker")
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: BrokerConfig) -> anyhow::Result<()> {
    let broker = Broker::start(config).await.context("starting the broker")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "rill-broker listening on {} metrics on {}",
            broker.local_addr(),
            broker.metrics_addr()
        )?;
        out.flush()?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    tracing::info!("signal received; shutting down");
    broker.shutdown().await;
    Ok(())
}
