//! Output for people (text) or for programs (`--output json`). A closed pipe
//! (`rkm status | head`) ends the output quietly instead of panicking.

use std::io::Write as _;

use serde::Serialize;

/// How a command prints what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Writes `text` to standard output.
///
/// # Errors
/// Standard output fails for a reason other than a closed pipe.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}

/// Prints `value` as pretty JSON on standard output.
///
/// # Errors
/// The value cannot be serialised or standard output fails.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    emit(&text)
}
