//! `rkm audit show`: entries of the audit log, from a fetched file (offline)
//! or from rkmd, filtered by ceremony, actor, action and time, as a table for
//! people or JSON for programs. Streams: memory stays flat on any log size.

use crate::connect::stubs;
use std::fs::File;
use std::io::{BufReader, Write as _};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use rkm_proto::audit_entry::AuditEntry;
use rkm_proto::audit_file::{AuditFileReader, Record};
use rkm_proto::v1::ListEntriesRequest;
use serde::Serialize;

use super::{READ_BUFFER, file_error};
use crate::connect::Target;
use crate::exit::RpcResultExt as _;
use crate::output::OutputFormat;

/// Show audit entries, filtered, from rkmd or from a fetched file.
///
/// A file is read offline and not verified: run `rkm audit verify` for that.
/// Times are RFC 3339 (`Z` or an offset) or a date (`2026-11-27`, midnight
/// UTC); `--since` is inclusive, `--until` exclusive.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Read this audit file instead of asking rkmd.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Only entries about this ceremony or key id (the entry's subject).
    #[arg(long, visible_alias = "subject", value_name = "ID")]
    pub ceremony: Option<String>,
    /// Only entries by this actor, e.g. `rkmd` or `local:uid=1000`.
    #[arg(long, value_name = "ACTOR")]
    pub actor: Option<String>,
    /// Only entries of this action, e.g. `audit.note`; `audit.*` matches a noun.
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
    /// Only entries at or after this time.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<SystemTime>,
    /// Only entries before this time.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<SystemTime>,
}

/// One entry as `--output json` prints it.
#[derive(Debug, Serialize)]
pub struct ShownEntry {
    pub index: u64,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// Parses `--since`/`--until`: RFC 3339 with `Z` or `±HH:MM`, fractions
/// allowed, or a bare date at midnight UTC.
///
/// # Errors
///
/// Anything else, with the forms accepted.
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let bad = || {
        format!(
            "{text:?} is not a time: use RFC 3339 such as 2026-11-27T04:20:21Z or 2026-11-27T05:20:21+01:00, or a date such as 2026-11-27"
        )
    };
    if text.len() == 10 {
        return humantime::parse_rfc3339(&format!("{text}T00:00:00Z")).map_err(|_| bad());
    }
    let bytes = text.as_bytes();
    let offset_at = text.len().checked_sub(6);
    if let Some(at) = offset_at
        && at > 10
        && matches!(bytes[at], b'+' | b'-')
        && bytes[at + 3] == b':'
    {
        let hours: u64 = text[at + 1..at + 3].parse().map_err(|_| bad())?;
        let minutes: u64 = text[at + 4..].parse().map_err(|_| bad())?;
        if hours > 23 || minutes > 59 {
            return Err(bad());
        }
        let local = humantime::parse_rfc3339(&format!("{}Z", &text[..at])).map_err(|_| bad())?;
        let offset = Duration::from_secs(hours * 3600 + minutes * 60);
        // Local time = UTC + offset, so UTC = local - offset.
        return if bytes[at] == b'+' {
            local.checked_sub(offset)
        } else {
            local.checked_add(offset)
        }
        .ok_or_else(bad);
    }
    humantime::parse_rfc3339(text).map_err(|_| bad())
}

/// The filters, compiled.
struct Filter {
    subject: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
}

impl Filter {
    fn matches(&self, entry: &AuditEntry) -> bool {
        if self.subject.as_ref().is_some_and(|s| *s != entry.subject)
            || self.actor.as_ref().is_some_and(|a| *a != entry.actor)
        {
            return false;
        }
        if let Some(action) = &self.action {
            let matched = match action.strip_suffix('*') {
                Some(prefix) => entry.action.starts_with(prefix),
                None => *action == entry.action,
            };
            if !matched {
                return false;
            }
        }
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Ok(time) = humantime::parse_rfc3339(&entry.time) else {
            // An entry whose time cannot be read matches no time window.
            return false;
        };
        self.since.is_none_or(|since| time >= since) && self.until.is_none_or(|until| time < until)
    }
}

/// Prints entries as they stream in, as a table or a JSON array.
struct Printer {
    output: OutputFormat,
    out: std::io::BufWriter<std::io::Stdout>,
    shown: u64,
    closed: bool,
}

impl Printer {
    fn new(output: OutputFormat) -> Self {
        Printer {
            output,
            out: std::io::BufWriter::new(std::io::stdout()),
            shown: 0,
            closed: false,
        }
    }

    /// Writes, treating a closed pipe as the reader having had enough.
    fn write(&mut self, text: &str) -> anyhow::Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.out.write_all(text.as_bytes()) {
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => Ok(other?),
        }
    }

    fn entry(&mut self, index: u64, entry: AuditEntry) -> anyhow::Result<()> {
        let text = match self.output {
            OutputFormat::Json => {
                let json = serde_json::to_string_pretty(&ShownEntry { index, entry })?;
                let indented = json.replace('\n', "\n  ");
                let separator = if self.shown == 0 { "[\n  " } else { ",\n  " };
                format!("{separator}{indented}")
            }
            OutputFormat::Text => {
                let mut line = String::new();
                if self.shown == 0 {
                    line.push_str(&format!(
                        "{:>7}  {:<24}  {:<16}  {:<20}  {:<12}  {:<8}  {}\n",
                        "INDEX", "TIME", "ACTOR", "ACTION", "SUBJECT", "OUTCOME", "DETAILS"
                    ));
                }
                let details = entry
                    .details
                    .iter()
                    .map(|(name, value)| format!("{name}={}", quote(value)))
                    .collect::<Vec<_>>()
                    .join(" ");
                let subject = if entry.subject.is_empty() {
                    "-"
                } else {
                    &entry.subject
                };
                line.push_str(&format!(
                    "{index:>7}  {:<24}  {:<16}  {:<20}  {:<12}  {:<8}  {details}\n",
                    entry.time, entry.actor, entry.action, subject, entry.outcome
                ));
                line
            }
        };
        self.shown += 1;
        self.write(&text)
    }

    fn finish(mut self) -> anyhow::Result<()> {
        match self.output {
            OutputFormat::Json if self.shown == 0 => self.write("[]\n")?,
            OutputFormat::Json => self.write("\n]\n")?,
            OutputFormat::Text if self.shown == 0 => {
                eprintln!("rkm: no audit entry matches");
            }
            OutputFormat::Text => {}
        }
        match self.out.flush() {
            Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
            _ => Ok(()),
        }
    }
}

/// A detail value as one token: bare if it is, quoted (with escapes) if not.
fn quote(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
    {
        value.to_owned()
    } else {
        format!("{value:?}")
    }
}

/// Shows the matching entries.
///
/// # Errors
///
/// The file cannot be read or is malformed; rkmd cannot be reached; an entry
/// does not decode.
pub async fn run(args: ShowArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let filter = Filter {
        subject: args.ceremony,
        actor: args.actor,
        action: args.action,
        since: args.since,
        until: args.until,
    };
    let mut printer = Printer::new(output);
    match args.file {
        Some(path) => {
            let file =
                File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let mut reader = AuditFileReader::new(BufReader::with_capacity(READ_BUFFER, file))
                .map_err(|error| file_error(&path, error))?;
            loop {
                let record = reader
                    .next_record()
                    .map_err(|error| file_error(&path, error))?;
                let Some(record) = record else { break };
                let Record::Entry { line, index, bytes } = record else {
                    continue;
                };
                let entry = AuditEntry::decode(bytes).with_context(|| {
                    format!(
                        "{} line {line}: entry {index} does not decode",
                        path.display()
                    )
                })?;
                if filter.matches(&entry) {
                    printer.entry(index, entry)?;
                }
            }
        }
        None => {
            let channel = target.connect().await?;
            let mut stream = stubs::audit(channel)
                .list_entries(ListEntriesRequest {
                    start: 0,
                    end: 0,
                    subject: filter.subject.clone().unwrap_or_default(),
                })
                .await
                .rpc("asking rkmd for audit entries")?
                .into_inner();
            while let Some(item) = stream
                .message()
                .await
                .rpc("receiving audit entries from rkmd")?
            {
                let entry = AuditEntry::decode(&item.entry)
                    .with_context(|| format!("entry {} from rkmd does not decode", item.index))?;
                if filter.matches(&entry) {
                    printer.entry(item.index, entry)?;
                }
            }
        }
    }
    printer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_time_accepts_utc_offsets_and_dates() {
        let utc = parse_time("2026-11-27T04:20:21Z").unwrap();
        assert_eq!(parse_time("2026-11-27T05:20:21+01:00").unwrap(), utc);
        assert_eq!(parse_time("2026-11-27T03:20:21-01:00").unwrap(), utc);
        assert_eq!(
            parse_time("2026-11-27").unwrap() + Duration::from_secs(4 * 3600 + 20 * 60 + 21),
            utc
        );
        assert!(parse_time("2026-11-27T04:20:21.123Z").unwrap() > utc);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-11-27T05:20:21+25:00").is_err());
    }

    #[test]
    fn detail_values_with_spaces_are_quoted() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("two words"), "\"two words\"");
        assert_eq!(quote("line\nbreak"), "\"line\\nbreak\"");
        assert_eq!(quote(""), "\"\"");
    }
}
