//! The `rill` binary: parse, run, and turn any failure into one line on
//! stderr with a meaningful exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use rill_tools::error::{EXIT_FAILURE, EXIT_USAGE};
use rill_tools::Cli;
use tracing_subscriber::EnvFilter;

/// Log filter when `RUST_LOG` is not set: only errors, so that the one-line
/// error stays the only line a failed command prints.
const LOG_FILTER_DEFAULT: &str = "error";

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(LOG_FILTER_DEFAULT));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // `rill bench` may run an embedded broker with many partitions.
    rill_broker::raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit_code(EXIT_FAILURE);
        }
    };
    match runtime.block_on(rill_tools::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.one_line());
            exit_code(e.exit_code())
        }
    }
}

/// `--help` and `--version` print in full; a bad command line is reported
/// as clap's first line plus where to look, not clap's multi-line usage.
fn clap_exit(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                exit_code(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            // clap's message is the part before "Usage:"; fold it into one line.
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let first = message.join(" ");
            let first = if first.starts_with("error:") {
                first
            } else {
                format!("error: {first}")
            };
            eprintln!("{first} (see `rill --help`)");
            exit_code(EXIT_USAGE)
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    u8::try_from(code).map_or(ExitCode::FAILURE, ExitCode::from)
}
