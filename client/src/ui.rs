//! What rkm shows people while a command runs: progress bars on stderr, the
//! typed confirmation before an irreversible step, and the names it prints
//! for the states of keys and ceremonies.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rkm_proto::v1::{KeyState, RecoveryState};

/// What a progress bar counts.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Bytes,
    Entries,
    /// Signed commands of an artefact, as they arrive.
    Commands,
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub fn progress_bar(len: u64, unit: Unit, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let template = match unit {
        Unit::Bytes => "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        Unit::Entries => "{msg} [{bar:30}] {human_pos}/{human_len} entries, eta {eta}",
        Unit::Commands => {
            "{msg} [{bar:30}] {human_pos}/{human_len} commands, {binary_bytes_per_sec} eta {eta}"
        }
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

/// Asks `question` on the terminal; only a typed "yes" goes on.
///
/// # Errors
/// There is no terminal (`no_terminal` says what to do instead), the answer
/// cannot be read, or it is not "yes" (`declined` says what happened).
pub fn confirm(question: &str, no_terminal: &str, declined: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!("{no_terminal}");
    }
    let mut stderr = std::io::stderr().lock();
    write!(stderr, "{question} Type \"yes\": ")?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading your answer")?;
    if answer.trim() != "yes" {
        bail!("{declined}");
    }
    Ok(())
}

/// A key's state as rkm prints it.
pub fn key_state_name(state: i32) -> &'static str {
    match KeyState::try_from(state) {
        Ok(KeyState::AwaitingReceipts) => "awaiting-receipts",
        Ok(KeyState::Active) => "active",
        _ => "unknown",
    }
}

/// A recovery (or drill) ceremony's state as rkm prints it.
pub fn recovery_state_name(state: i32) -> &'static str {
    match RecoveryState::try_from(state) {
        Ok(RecoveryState::Open) => "open",
        Ok(RecoveryState::Signing) => "signing",
        Ok(RecoveryState::Completed) => "completed",
        Ok(RecoveryState::Cancelled) => "cancelled",
        Ok(RecoveryState::Expired) => "expired",
        Ok(RecoveryState::Failed) => "failed",
        _ => "unknown",
    }
}
