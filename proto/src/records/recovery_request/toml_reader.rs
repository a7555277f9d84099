//! The operator's request file, read strictly from TOML: unknown keys and
//! parameters of another command kind are refused, and every error names
//! the key and its line.

use std::collections::HashSet;

use toml::de::{DeTable, DeValue};

use super::targets::check_device_id;
use super::{
    Command, KIND_CUSTOM, KIND_REPLACE_TRUST_ANCHOR, KIND_REVOKE_CERTIFICATE, MAX_INCIDENT_LEN,
    MAX_REASON_LEN, RecoveryRequest, RequestError, normalise_time,
};
use crate::encoding::field::invalid;
use crate::encoding::text::{check_text, excerpt};
use crate::encoding::time::rfc3339_from_unix;

/// Parses the TOML of a request file (its size already checked) and reads
/// the request out of it.
pub(super) fn read_request(text: &str) -> Result<RecoveryRequest, RequestError> {
    let root = DeTable::parse(text).map_err(|e| toml_error(text, &e))?;
    TomlReader::new(text).request(root.get_ref())
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |tail| tail.chars().count())
        + 1;
    (line, column)
}

fn toml_error(text: &str, error: &toml::de::Error) -> RequestError {
    let (line, column) = error
        .span()
        .map_or((0, 0), |span| line_and_column(text, span.start));
    RequestError::Toml {
        line,
        column,
        message: error.message().to_owned(),
    }
}

type Spanned<T> = toml::Spanned<T>;

struct TomlReader<'t> {
    text: &'t str,
    /// Byte offsets of the text's newlines, found once: a line number is then
    /// a binary search, not a count from the start of the file (one per
    /// target would make a file of many targets quadratic to read).
    newlines: Vec<usize>,
}

/// The values of one table, found by key, with the key's line.
struct Found<'a, 'i> {
    value: &'a Spanned<DeValue<'i>>,
    line: usize,
}

impl<'t> TomlReader<'t> {
    fn new(text: &'t str) -> Self {
        let newlines = text
            .bytes()
            .enumerate()
            .filter_map(|(i, b)| (b == b'\n').then_some(i))
            .collect();
        TomlReader { text, newlines }
    }

    /// The line of `span`, as [`line_and_column`] gives it.
    fn line(&self, span: std::ops::Range<usize>) -> usize {
        let offset = span.start.min(self.text.len());
        // line_and_column counts the whole text for an offset inside a
        // character.
        let end = if self.text.is_char_boundary(offset) {
            offset
        } else {
            self.text.len()
        };
        self.newlines.partition_point(|&n| n < end) + 1
    }

    fn request(&self, root: &DeTable<'_>) -> Result<RecoveryRequest, RequestError> {
        let (mut reason, mut incident, mut not_before, mut not_after) = (None, None, None, None);
        let (mut targets, mut command) = (None, None);
        for (key, value) in root.iter() {
            let line = self.line(key.span());
            let found = Some(Found { value, line });
            match key.get_ref().as_ref() {
                "reason" => reason = found,
                "incident" => incident = found,
                "not_before" => not_before = found,
                "not_after" => not_after = found,
                "targets" => targets = found,
                "command" => command = found,
                other => {
                    return Err(RequestError::UnknownKey {
                        key: excerpt(other),
                        line,
                    });
                }
            }
        }
        let command = self.command(command.ok_or(RequestError::MissingKey { key: "command" })?)?;
        let reason = string("reason", reason)?;
        check_text("reason", &reason, MAX_REASON_LEN)?;
        let incident = string("incident", incident)?;
        check_text("incident", &incident, MAX_INCIDENT_LEN)?;
        let not_before = time("not_before", not_before)?;
        let not_after = time("not_after", not_after)?;
        if not_before.0 >= not_after.0 {
            return Err(RequestError::EmptyWindow {
                not_before: not_before.1,
                not_after: not_after.1,
            });
        }
        let targets = match targets {
            None => Vec::new(),
            Some(found) => self.targets(found)?,
        };
        Ok(RecoveryRequest {
            command,
            reason,
            incident,
            not_before: not_before.1,
            not_after: not_after.1,
            targets,
        })
    }

    fn command(&self, found: Found<'_, '_>) -> Result<Command, RequestError> {
        let DeValue::Table(table) = found.value.get_ref() else {
            return Err(wrong_type("command", "a table", found));
        };
        let mut kind = None;
        let mut params: Vec<(&str, Found<'_, '_>)> = Vec::new();
        for (key, value) in table.iter() {
            let line = self.line(key.span());
            let name = key.get_ref().as_ref();
            match name {
                "kind" => kind = Some(Found { value, line }),
                "anchor_slot" | "new_anchor" | "issuer" | "serial" | "type" | "payload" => {
                    params.push((name, Found { value, line }));
                }
                other => {
                    return Err(RequestError::UnknownKey {
                        key: format!("command.{}", excerpt(other)),
                        line,
                    });
                }
            }
        }
        let kind = string("command.kind", kind)?;
        let (kind, allowed): (&'static str, &[&str]) = match kind.as_str() {
            KIND_REPLACE_TRUST_ANCHOR => {
                (KIND_REPLACE_TRUST_ANCHOR, &["anchor_slot", "new_anchor"])
            }
            KIND_REVOKE_CERTIFICATE => (KIND_REVOKE_CERTIFICATE, &["issuer", "serial"]),
            KIND_CUSTOM => (KIND_CUSTOM, &["type", "payload"]),
            other => {
                return Err(RequestError::UnknownCommandKind {
                    kind: excerpt(other),
                });
            }
        };
        if let Some((name, found)) = params.iter().find(|(name, _)| !allowed.contains(name)) {
            return Err(RequestError::KeyNotForKind {
                key: format!("command.{name}"),
                kind,
                line: found.line,
            });
        }
        let mut take = |name: &str| {
            params
                .iter()
                .position(|(n, _)| *n == name)
                .map(|i| params.swap_remove(i).1)
        };
        let command = match kind {
            KIND_REPLACE_TRUST_ANCHOR => {
                let slot = take("anchor_slot").ok_or(RequestError::MissingKey {
                    key: "command.anchor_slot",
                })?;
                let anchor_slot = slot_number(slot)?;
                let new_anchor = hex_param("command.new_anchor", take("new_anchor"))?;
                Command::ReplaceTrustAnchor {
                    anchor_slot,
                    new_anchor,
                }
            }
            KIND_REVOKE_CERTIFICATE => Command::RevokeCertificate {
                issuer: string("command.issuer", take("issuer"))?,
                serial: hex_param("command.serial", take("serial"))?,
            },
            _ => Command::Custom {
                type_name: string("command.type", take("type"))?,
                payload: hex_param("command.payload", take("payload"))?,
            },
        };
        command.validate()?;
        Ok(command)
    }

    fn targets(&self, found: Found<'_, '_>) -> Result<Vec<String>, RequestError> {
        let DeValue::Array(array) = found.value.get_ref() else {
            return Err(wrong_type("targets", "an array of device ids", found));
        };
        let mut targets = Vec::with_capacity(array.len());
        let mut seen = HashSet::with_capacity(array.len());
        for (index, item) in array.iter().enumerate() {
            let line = self.line(item.span());
            let DeValue::String(id) = item.get_ref() else {
                return Err(RequestError::WrongType {
                    key: format!("targets[{index}]"),
                    expected: "a string",
                    found: item.get_ref().type_str(),
                    line,
                });
            };
            check_device_id(id.as_bytes()).map_err(|reason| RequestError::InvalidTarget {
                index,
                id: excerpt(id),
                reason,
                line,
            })?;
            if !seen.insert(id.as_ref()) {
                return Err(RequestError::DuplicateTarget {
                    id: id.to_string(),
                    line,
                });
            }
            targets.push(id.to_string());
        }
        Ok(targets)
    }
}

fn wrong_type(key: &str, expected: &'static str, found: Found<'_, '_>) -> RequestError {
    RequestError::WrongType {
        key: key.to_owned(),
        expected,
        found: found.value.get_ref().type_str(),
        line: found.line,
    }
}

fn string(key: &'static str, found: Option<Found<'_, '_>>) -> Result<String, RequestError> {
    let found = found.ok_or(RequestError::MissingKey { key })?;
    match found.value.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        _ => Err(wrong_type(key, "a string", found)),
    }
}

fn hex_param(key: &'static str, found: Option<Found<'_, '_>>) -> Result<Vec<u8>, RequestError> {
    let text = string(key, found)?;
    hex::decode(&text).map_err(|e| invalid(key, format!("it is not hex ({e})")))
}

fn slot_number(found: Found<'_, '_>) -> Result<u32, RequestError> {
    let DeValue::Integer(integer) = found.value.get_ref() else {
        return Err(wrong_type("command.anchor_slot", "an integer", found));
    };
    i128::from_str_radix(integer.as_str(), integer.radix())
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            invalid(
                "command.anchor_slot",
                format!("{integer} is not a slot number from 0 to {}", u32::MAX),
            )
        })
}

/// A window time from the file: an RFC 3339 string or a TOML offset
/// date-time; returns its Unix seconds and normalised text.
fn time(key: &'static str, found: Option<Found<'_, '_>>) -> Result<(i64, String), RequestError> {
    let found = found.ok_or(RequestError::MissingKey { key })?;
    let text = match found.value.get_ref() {
        DeValue::String(s) => s.to_string(),
        DeValue::Datetime(dt) => dt.to_string(),
        _ => return Err(wrong_type(key, "an RFC 3339 time", found)),
    };
    let unix = normalise_time(key, &text)?;
    let normalised = rfc3339_from_unix(unix).expect("normalise_time checked the range");
    Ok((unix, normalised))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_numbers_agree_with_line_and_column_at_every_offset() {
        let text = "a = 1\n\n# é\r\nb = [\n  \"x\",\n]\n\u{2014}";
        let reader = TomlReader::new(text);
        for offset in 0..=text.len() + 2 {
            assert_eq!(
                reader.line(offset..offset + 1),
                line_and_column(text, offset).0,
                "{offset}"
            );
        }
        assert_eq!(TomlReader::new("").line(0..0), 1);
    }

    #[test]
    fn line_and_column_count_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(line_and_column(text, 6), (2, 1));
        assert_eq!(line_and_column(text, 9), (2, 3));
    }
}
