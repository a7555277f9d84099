//! Operators' notes in the audit log ("the HSM was moved", "drill postponed"):
//! not a ceremony, but a state change of the log, so its rules live here with
//! the other actions rather than in the API. A note needs no `Services`: the
//! audit API holds only the log.

use super::CeremonyError;
use crate::audit::{AuditLog, Event};
use rkm_proto::audit_entry::action;

/// Longest operator note, in bytes.
pub use rkm_proto::access::limits::MAX_NOTE_LEN;

/// Checks that a note says something and fits.
fn check_note(message: &str) -> Result<(), CeremonyError> {
    if message.trim().is_empty() {
        return Err(CeremonyError::InvalidArgument(
            "the note is empty; say what happened".to_owned(),
        ));
    }
    if message.len() > MAX_NOTE_LEN {
        return Err(CeremonyError::InvalidArgument(format!(
            "the note is {} bytes; notes hold at most {MAX_NOTE_LEN}",
            message.len()
        )));
    }
    Ok(())
}

/// Records `actor`'s note about `subject`; returns its index in the log.
///
/// # Errors
/// An empty or too long note (not audited: nothing was asked of rkmd), or
/// the entry cannot be written.
pub async fn record_note(
    log: &AuditLog,
    actor: String,
    subject: String,
    message: String,
) -> Result<u64, CeremonyError> {
    check_note(&message)?;
    let event = Event::ok(actor, action::AUDIT_NOTE)
        .subject(subject)
        .detail("message", message);
    Ok(log.record(event).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_must_say_something_and_fit() {
        assert!(
            check_note("  \n")
                .unwrap_err()
                .to_string()
                .contains("the note is empty")
        );
        check_note(&"a".repeat(MAX_NOTE_LEN)).unwrap();
        let long = check_note(&"a".repeat(MAX_NOTE_LEN + 1))
            .unwrap_err()
            .to_string();
        assert!(long.contains("notes hold at most 4096"), "{long}");
    }
}
