//! The one text rule for everything a custodian is shown (key labels,
//! custodian names, reasons, incident references, command parameters…), and
//! the one way untrusted text is quoted back in an error.
//!
//! Shown text must not be able to forge a line of what is displayed (control
//! characters, newline included) nor reorder or hide part of it (Unicode
//! bidirectional overrides, isolates and marks, and zero-width characters):
//! a custodian approves what they read, so what they read must be what is
//! signed.

use crate::encoding::field::{FieldError, invalid};

/// Longest excerpt of untrusted text quoted in an error, in characters.
pub const EXCERPT_CHARS: usize = 80;

/// Longest key label, in bytes (the daemon's rule).
pub const MAX_KEY_LABEL_LEN: usize = 64;

/// Why a text to be shown to custodians was refused. The messages are
/// sentence fragments meant to follow the field's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Empty, or only whitespace.
    #[error("it is empty")]
    Empty,
    /// Longer than its limit.
    #[error("it is longer than {max} bytes")]
    TooLong {
        /// The limit, in bytes.
        max: usize,
    },
    /// A control character, which could forge a line of the description.
    #[error("it contains the control character U+{:04X}; write it on one line", u32::from(*.0))]
    Control(char),
    /// A bidirectional or zero-width formatting character, which could
    /// reorder or hide what is displayed.
    #[error("it contains the invisible formatting character U+{:04X}", u32::from(*.0))]
    Invisible(char),
    /// A key label spelled like a key id (`rk-…`): labels and key ids share
    /// one namespace in lookups.
    #[error("it starts with \"rk-\", which is how key ids start")]
    LooksLikeKeyId,
    /// A key label character other than an ASCII letter, digit, `-`, `_`, `.`.
    #[error("it contains {0:?}; use only ASCII letters, digits, '-', '_' and '.'")]
    LabelCharacter(char),
}

/// Whether `c` is a Unicode formatting character that changes the display
/// order of text (bidirectional embeddings, overrides, isolates and marks,
/// the Arabic letter mark) or is invisible (zero-width space, joiners, word
/// joiner and the invisible operators, byte order mark).
pub fn is_invisible_formatting(c: char) -> bool {
    matches!(c,
        '\u{061c}'
        | '\u{200b}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{feff}')
}

/// The text rule: non-blank, at most `max` bytes, no control character and
/// no invisible formatting character ([`is_invisible_formatting`]).
///
/// # Errors
///
/// [`TextError::Empty`], [`TextError::TooLong`], [`TextError::Control`],
/// [`TextError::Invisible`], checked in that order.
pub fn check_shown_text(value: &str, max: usize) -> Result<(), TextError> {
    if value.trim().is_empty() {
        return Err(TextError::Empty);
    }
    if value.len() > max {
        return Err(TextError::TooLong { max });
    }
    if let Some(c) = value.chars().find(|&c| c.is_control()) {
        return Err(TextError::Control(c));
    }
    if let Some(c) = value.chars().find(|&c| is_invisible_formatting(c)) {
        return Err(TextError::Invisible(c));
    }
    Ok(())
}

/// The rule for a new key's label: the text rule, at most
/// [`MAX_KEY_LABEL_LEN`] bytes of ASCII letters, digits, `-`, `_` and `.`,
/// and not starting with `rk-`, because labels and key ids share one
/// namespace in lookups.
///
/// # Errors
///
/// Every error of [`check_shown_text`], then [`TextError::LooksLikeKeyId`]
/// and [`TextError::LabelCharacter`].
pub fn check_key_label(label: &str) -> Result<(), TextError> {
    if label.is_empty() {
        return Err(TextError::Empty);
    }
    check_shown_text(label, MAX_KEY_LABEL_LEN)?;
    if label.starts_with("rk-") {
        return Err(TextError::LooksLikeKeyId);
    }
    match label
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        Some(c) => Err(TextError::LabelCharacter(c)),
        None => Ok(()),
    }
}

/// [`check_shown_text`] of a record's `field`, refused as that field.
pub(crate) fn check_text<E: FieldError>(
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), E> {
    check_shown_text(value, max).map_err(|e| invalid(field, e.to_string()))
}

/// At most [`EXCERPT_CHARS`] characters of untrusted text, escaped, with `…`
/// when cut, so an error can quote its input without being forged by it.
pub fn excerpt(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// `value` as an audit entry records untrusted input: whole when at most
/// `max` bytes; else its escaped start, its length and its SHA-256, so that
/// an oversized or malformed request still leaves a bounded entry that
/// names it.
pub fn bounded_record(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_owned();
    }
    use sha2::Digest as _;
    format!(
        "{} ({} bytes, sha256 {})",
        excerpt(value),
        value.len(),
        hex::encode(sha2::Sha256::digest(value.as_bytes()))
    )
}

/// `message` cut to about `max` bytes by keeping its start and its end
/// (where the hint on what to do is), on character boundaries.
pub fn bounded_message(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_owned();
    }
    let half = max / 2;
    let mut head = half;
    while !message.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = message.len() - half;
    while !message.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{} … ({} bytes cut) … {}",
        &message[..head],
        tail - head,
        &message[tail..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_recorded_by_start_length_and_digest() {
        assert_eq!(bounded_record("alice", 512), "alice");
        let long = "x".repeat(20_000);
        let recorded = bounded_record(&long, 512);
        assert!(recorded.len() < 300, "{recorded}");
        assert!(
            recorded.starts_with(&"x".repeat(EXCERPT_CHARS)),
            "{recorded}"
        );
        assert!(recorded.contains("(20000 bytes, sha256 "), "{recorded}");
    }

    #[test]
    fn long_messages_keep_their_start_and_end_on_char_boundaries() {
        let message = format!(
            "custodian {} is unknown; enrol them first",
            "é".repeat(5000)
        );
        let cut = bounded_message(&message, 1024);
        assert!(cut.len() <= 1024 + 64, "{}", cut.len());
        assert!(cut.starts_with("custodian é"), "{cut}");
        assert!(cut.ends_with("is unknown; enrol them first"), "{cut}");
        assert_eq!(bounded_message("short", 1024), "short");
    }

    #[test]
    fn excerpt_cuts_long_text_on_a_char_boundary() {
        let long = "é".repeat(100);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt("short"), "short");
    }

    #[test]
    fn shown_text_refuses_every_hiding_character() {
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{061c}', '\u{200b}', '\u{200c}',
            '\u{200d}', '\u{2060}', '\u{feff}',
        ] {
            assert_eq!(
                check_shown_text(&format!("a{c}b"), 64),
                Err(TextError::Invisible(c)),
                "U+{:04X}",
                u32::from(c)
            );
        }
        assert_eq!(check_shown_text("a\nb", 64), Err(TextError::Control('\n')));
        assert_eq!(check_shown_text(" ", 64), Err(TextError::Empty));
        assert_eq!(
            check_shown_text("abc", 2),
            Err(TextError::TooLong { max: 2 })
        );
        check_shown_text("Zählerwechsel, Los 7", 64).unwrap();
    }

    #[test]
    fn key_label_rule_is_the_daemons() {
        for ok in ["a", "fleet-rk_2026.1", &"x".repeat(64), "RK-upper", "rk"] {
            check_key_label(ok).unwrap();
        }
        for (bad, error) in [
            ("", TextError::Empty),
            (&"x".repeat(65) as &str, TextError::TooLong { max: 64 }),
            ("rk-0011", TextError::LooksLikeKeyId),
            ("a b", TextError::LabelCharacter(' ')),
            ("mètre", TextError::LabelCharacter('è')),
            ("a/b", TextError::LabelCharacter('/')),
            ("a\u{202e}b", TextError::Invisible('\u{202e}')),
            ("a\u{200b}b", TextError::Invisible('\u{200b}')),
            ("a\tb", TextError::Control('\t')),
        ] {
            assert_eq!(check_key_label(bad), Err(error), "{bad:?}");
        }
    }

    #[test]
    fn excerpt_escapes_and_cuts() {
        assert_eq!(excerpt("a\nb"), "a\\nb");
        let long = "x".repeat(100);
        assert!(excerpt(&long).ends_with('…'));
    }
}
