//! `rill group`: list, describe, reset and delete consumer groups through
//! [`rill_client::Admin`].
//!
//! The broker owns the rules (a group with members cannot be reset or
//! deleted, so that no running consumer has its offsets moved under it);
//! this module only turns flags into calls and answers into tables. Lag is
//! the broker's: log end offset minus committed offset, per partition.

use rill_client::{GroupDescription, ResetTo};

use crate::cli::{GroupCommand, GroupResetArgs};
use crate::error::CliError;
use crate::topic;

/// Milliseconds in a day, for `--to-datetime`.
const MS_PER_DAY: i64 = 24 * 60 * 60 * 1000;
/// Milliseconds in a minute, for `--to-datetime` hours, minutes and zones.
const MS_PER_MINUTE: i64 = 60 * 1000;

pub async fn run(broker: &str, cmd: GroupCommand) -> Result<(), CliError> {
    // Flag mistakes are reported before a connection is attempted.
    let reset_to = match &cmd {
        GroupCommand::ResetOffsets(args) => Some(reset_target(args)?),
        _ => None,
    };
    let admin = topic::connect(broker).await?;
    match cmd {
        GroupCommand::List => {
            let groups = admin
                .list_groups()
                .await
                .map_err(|e| CliError::client("cannot list groups", e))?;
            println!("{:<32}  {:<12}  {:>7}", "GROUP", "STATE", "MEMBERS");
            for g in groups {
                println!("{:<32}  {:<12}  {:>7}", g.group_id, g.state, g.members);
            }
        }
        GroupCommand::Describe { group } => {
            let d = admin
                .describe_group(&group)
                .await
                .map_err(|e| CliError::client(format!("cannot describe group {group}"), e))?;
            print!("{}", describe_text(&d));
        }
        GroupCommand::ResetOffsets(args) => {
            let to = reset_to.ok_or_else(|| CliError::Usage("no reset target".to_owned()))?;
            let partitions = (!args.partition.is_empty()).then_some(args.partition.as_slice());
            let moved = admin
                .reset_offsets(&args.group, &args.topic, partitions, to, args.dry_run)
                .await
                .map_err(|e| {
                    CliError::client(
                        format!(
                            "cannot reset offsets of group {} on {}",
                            args.group, args.topic
                        ),
                        e,
                    )
                })?;
            println!(
                "{:>9}  {:>16}  {:>16}",
                "PARTITION", "OLD_OFFSET", "NEW_OFFSET"
            );
            for m in &moved {
                println!(
                    "{:>9}  {:>16}  {:>16}",
                    m.partition,
                    m.old.map_or_else(|| "-".to_owned(), |o| o.to_string()),
                    m.new
                );
            }
            if args.dry_run {
                println!(
                    "dry run: group {} would move {} partition{} of {}; nothing changed",
                    args.group,
                    moved.len(),
                    plural(moved.len()),
                    args.topic
                );
            } else {
                println!(
                    "reset group {} on {} partition{} of {}",
                    args.group,
                    moved.len(),
                    plural(moved.len()),
                    args.topic
                );
            }
        }
        GroupCommand::Delete { group } => {
            admin
                .delete_group(&group)
                .await
                .map_err(|e| CliError::client(format!("cannot delete group {group}"), e))?;
            println!("deleted group {group}");
        }
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The reset target the flags name (clap makes sure exactly one is given).
fn reset_target(args: &GroupResetArgs) -> Result<ResetTo, CliError> {
    if args.to_earliest {
        return Ok(ResetTo::Earliest);
    }
    if args.to_latest {
        return Ok(ResetTo::Latest);
    }
    if let Some(o) = args.to_offset {
        return Ok(ResetTo::Offset(o));
    }
    if let Some(ms) = args.to_timestamp {
        return Ok(ResetTo::Timestamp(ms));
    }
    if let Some(text) = &args.to_datetime {
        return parse_datetime_ms(text).map(ResetTo::Timestamp).ok_or_else(|| {
            CliError::Usage(format!(
                "--to-datetime {text:?} is not a date-time; write YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS[.mmm]] (UTC) or add Z / +HH:MM"
            ))
        });
    }
    Err(CliError::Usage(
        "say where to: --to-earliest, --to-latest, --to-offset N, --to-datetime or --to-timestamp"
            .to_owned(),
    ))
}

/// The group as `rill group describe` prints it: a header line, the
/// members with their partitions, then one row per partition with the
/// committed offset, log end, lag and owner, and the total lag.
pub fn describe_text(d: &GroupDescription) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "group {}: state {}, assignor {}, epoch {}, {} member{}",
        d.group_id,
        d.state,
        d.assignor,
        d.group_epoch,
        d.members.len(),
        plural(d.members.len())
    );
    if !d.members.is_empty() {
        let _ = writeln!(
            out,
            "{:<40}  {:<24}  {:>5}  ASSIGNMENT",
            "MEMBER", "CLIENT", "EPOCH"
        );
        for m in &d.members {
            let mut assignment = partition_list(&m.assignment);
            if !m.pending_revocation.is_empty() {
                let _ = write!(
                    assignment,
                    " (revoking {})",
                    partition_list(&m.pending_revocation)
                );
            }
            let _ = writeln!(
                out,
                "{:<40}  {:<24}  {:>5}  {}",
                m.member_id, m.client_id, m.member_epoch, assignment
            );
        }
    }
    let _ = writeln!(
        out,
        "{:<24}  {:>9}  {:>16}  {:>16}  {:>12}  OWNER",
        "TOPIC", "PARTITION", "COMMITTED_OFFSET", "LOG_END_OFFSET", "LAG"
    );
    let mut total_lag: u64 = 0;
    let mut unknown_lag = 0usize;
    for (topic, o) in &d.offsets {
        let owner = d
            .members
            .iter()
            .find(|m| {
                m.assignment
                    .iter()
                    .any(|(t, p)| t == topic && *p == o.partition)
            })
            .map_or("-", |m| m.member_id.as_str());
        match o.lag {
            Some(l) => total_lag = total_lag.saturating_add(l),
            None => unknown_lag += 1,
        }
        let _ = writeln!(
            out,
            "{:<24}  {:>9}  {:>16}  {:>16}  {:>12}  {}",
            topic,
            o.partition,
            o.committed
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            o.log_end_offset,
            o.lag.map_or_else(|| "-".to_owned(), |l| l.to_string()),
            owner
        );
    }
    let _ = write!(out, "total lag: {total_lag}");
    if unknown_lag > 0 {
        let _ = write!(
            out,
            " ({unknown_lag} partition{} without a committed offset)",
            plural(unknown_lag)
        );
    }
    out.push('\n');
    out
}

/// `topic:0,1,2 other:3`, or `-` for none.
fn partition_list(list: &[(String, u32)]) -> String {
    let mut out = String::new();
    let mut current: Option<&str> = None;
    for (topic, p) in list {
        if current == Some(topic.as_str()) {
            out.push(',');
        } else {
            if current.is_some() {
                out.push(' ');
            }
            out.push_str(topic);
            out.push(':');
            current = Some(topic);
        }
        out.push_str(&p.to_string());
    }
    if out.is_empty() {
        out.push('-');
    }
    out
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.fraction]]` (a space may
/// stand for the `T`) with an optional `Z` or `±HH:MM` zone (UTC when none)
/// into ms since the Unix epoch.
pub fn parse_datetime_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, rest) = match text.find(['T', ' ']) {
        Some(at) => (text.get(..at)?, Some(text.get(at + 1..)?)),
        None => (text, None),
    };
    let mut fields = date.splitn(3, '-');
    let year: i64 = number(fields.next()?, 4)?;
    let month: i64 = number(fields.next()?, 2)?;
    let day: i64 = number(fields.next()?, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day).checked_mul(MS_PER_DAY)?;
    let Some(rest) = rest else {
        return Some(ms);
    };
    // Split the zone off the time of day.
    let (time, offset_minutes) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(at) = rest.rfind(['+', '-']) {
        let zone = rest.get(at + 1..)?;
        let (h, m) = zone.split_once(':')?;
        let minutes = number(h, 2)? * 60 + number(m, 2)?;
        let sign = if rest.get(at..at + 1)? == "-" { -1 } else { 1 };
        (rest.get(..at)?, sign * minutes)
    } else {
        (rest, 0)
    };
    let mut parts = time.splitn(3, ':');
    let hour = number(parts.next()?, 2)?;
    let minute = number(parts.next()?, 2)?;
    let (second, millis) = match parts.next() {
        None => (0, 0),
        Some(s) => match s.split_once('.') {
            None => (number(s, 2)?, 0),
            Some((whole, fraction)) => {
                if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                // Milliseconds: the first three digits, padded.
                let digits: String = fraction.chars().chain("00".chars()).take(3).collect();
                (number(whole, 2)?, digits.parse::<i64>().ok()?)
            }
        },
    };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    ms = ms.checked_add((hour * 60 + minute - offset_minutes) * MS_PER_MINUTE)?;
    ms.checked_add(second * 1000 + millis)
}

/// Exactly `width` ASCII digits as a number.
fn number(s: &str, width: usize) -> Option<i64> {
    if s.len() != width || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_to_epoch_milliseconds() {
        assert_eq!(parse_datetime_ms("1970-01-01"), Some(0));
        assert_eq!(parse_datetime_ms("1970-01-02T00:00"), Some(MS_PER_DAY));
        // 2024-02-29 is a leap day: 19782 days after the epoch.
        assert_eq!(
            parse_datetime_ms("2024-02-29T12:34:56.789Z"),
            Some(19_782 * MS_PER_DAY + ((12 * 60 + 34) * 60 + 56) * 1000 + 789)
        );
        assert_eq!(
            parse_datetime_ms("2024-02-29 12:34:56+02:00"),
            parse_datetime_ms("2024-02-29T10:34:56Z")
        );
        assert_eq!(
            parse_datetime_ms("2024-02-29T00:30-01:00"),
            parse_datetime_ms("2024-02-29T01:30")
        );
        assert_eq!(
            parse_datetime_ms("2024-01-01T00:00:00.5"),
            parse_datetime_ms("2024-01-01").map(|ms| ms + 500)
        );
        for bad in [
            "",
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "2024-01-01T25:00",
            "2024-01-01T10",
            "2024-01-01T10:00:00.",
            "yesterday",
            "2024-01-01T10:00+0200",
        ] {
            assert_eq!(parse_datetime_ms(bad), None, "{bad:?}");
        }
    }
}
