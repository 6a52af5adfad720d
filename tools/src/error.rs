//! The command line's one error type, and how it reads to a person.
//!
//! Every failure becomes a [`CliError`] whose `Display` is a single line:
//! what the command tried, why it failed, and (for the failures a person can
//! fix) what to do next. The binary prints that line and exits with
//! [`CliError::exit_code`]; nothing panics or prints a backtrace for a
//! mistake of the user's.

use rill_client::ClientError;
use rill_protocol::wire::ErrorCode;

/// Exit code of operating failures: the broker refused, a connection broke,
/// a bench run did not verify.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code after Ctrl-C stopped a command that cannot stop cleanly
/// midway (the shell convention: 128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;
/// Exit code of usage mistakes and of features not built yet (clap's code
/// for bad flags, so every usage error exits the same way).
pub const EXIT_USAGE: i32 = 2;

/// Anything a `rill` command can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A client call failed; `action` says what was being done.
    #[error("{action}: {source}{}", hint_suffix(source))]
    Client {
        action: String,
        #[source]
        source: ClientError,
    },
    /// A flag value or a combination of flags cannot work.
    #[error("{0}")]
    Usage(String),
    /// The command exists in the plan but not in this build.
    #[error("{what} is not yet supported: {why}")]
    NotYet { what: String, why: &'static str },
    /// Reading input or writing output failed.
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    /// The embedded broker of `rill bench` did not start.
    #[error("cannot start the embedded broker: {source}; pass --broker ADDR to use a running one")]
    EmbeddedBroker {
        #[source]
        source: rill_broker::BrokerError,
    },
    /// Ctrl-C stopped the command before it finished.
    #[error("interrupted: {0}")]
    Interrupted(&'static str),
    /// Records were refused by the broker, or did not all come back.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// Wraps a client error with what was being attempted.
    pub fn client(action: impl Into<String>, source: ClientError) -> Self {
        CliError::Client {
            action: action.into(),
            source,
        }
    }

    pub fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        CliError::Io {
            action: action.into(),
            source,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) | CliError::NotYet { .. } => EXIT_USAGE,
            CliError::Interrupted(_) => EXIT_INTERRUPTED,
            _ => EXIT_FAILURE,
        }
    }

    /// The error as exactly one line: multi-line messages (from the broker
    /// or the OS) are folded so a script can read stderr line by line.
    pub fn one_line(&self) -> String {
        let text = self.to_string();
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// What a person can do about a client error, when there is something.
fn hint(e: &ClientError) -> Option<&'static str> {
    match e {
        ClientError::Connect { .. } => Some(
            "is a broker running there? start one with `rill-broker`, or point --broker / RILL_BROKER at one",
        ),
        ClientError::UnknownTopic(_) => {
            Some("check the name with `rill topic list`, or create it with `rill topic create`")
        }
        ClientError::Timeout { .. } | ClientError::Io(_) | ClientError::ConnectionClosed => {
            Some("the broker stopped or is overloaded; check it is up and retry")
        }
        ClientError::Broker { code, .. } => match code {
            ErrorCode::UnknownTopicOrPartition => Some(
                "check the name and partition with `rill topic describe`, or create the topic with `rill topic create`",
            ),
            ErrorCode::TopicAlreadyExists => {
                Some("pick another name, or delete it first with `rill topic delete`")
            }
            ErrorCode::InvalidTopic => Some(
                "topic names are 1-249 characters of a-z, A-Z, 0-9, '.', '_' and '-', not starting with '__'",
            ),
            ErrorCode::InvalidConfig | ErrorCode::InvalidPartitions => {
                Some("fix the value and retry; `rill topic create --help` lists the settings")
            }
            ErrorCode::MessageTooLarge | ErrorCode::RecordListTooLarge => Some(
                "lower --batch-size, or raise the topic's max.message.bytes (`rill topic create --max-message-bytes`)",
            ),
            ErrorCode::NonEmptyGroup => Some(
                "stop the group's consumers first (`rill group describe GROUP` lists them)",
            ),
            ErrorCode::GroupIdNotFound => Some("`rill group list` shows the groups there are"),
            ErrorCode::InvalidGroupId => Some("group ids are non-empty and free of NUL bytes"),
            ErrorCode::OffsetOutOfRange => {
                Some("`rill topic describe` shows the offsets the log holds")
            }
            _ => None,
        },
        ClientError::RecordTooLarge { .. } => Some("send smaller records or raise the producer's limits"),
        _ => None,
    }
}

fn hint_suffix(e: &ClientError) -> String {
    hint(e).map_or_else(String::new, |h| format!(" ({h})"))
}
