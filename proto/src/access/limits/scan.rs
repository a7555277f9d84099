//! Limits checked while a message arrives: each top-level field's header
//! announces its length before its value, so a field over its limit is
//! refused by name without its value ever being buffered. Its value is
//! then only hashed as it streams past, for the audit entry.

use sha2::{Digest as _, Sha256};

use super::{FieldKind, LimitError, Shape};

/// Most bytes of an oversized value hashed for the audit entry; past this
/// the entry says the digest was not computed.
pub const MAX_HASHED: usize = 64 << 20;

/// Bytes of an oversized value kept to quote its start.
const START_LEN: usize = 64;

/// A field whose header announces more than its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversized {
    pub message: &'static str,
    pub field: &'static str,
    /// What the header announces.
    pub len: usize,
    pub max: usize,
    /// Where the value starts in the message.
    pub value_at: usize,
}

/// Walks the top-level fields of a message of `shape` as its bytes arrive.
#[derive(Debug)]
pub struct FieldScan {
    shape: &'static Shape,
    /// Offset of the next field header.
    at: usize,
}

impl FieldScan {
    pub fn new(shape: &'static Shape) -> Self {
        Self { shape, at: 0 }
    }

    /// Reads the field headers complete in `prefix` (the message's bytes so
    /// far, from its start) and returns the first field announced over its
    /// limit. Embedded messages are checked whole, once read.
    ///
    /// # Errors
    /// A header that is not protobuf.
    pub fn advance(&mut self, prefix: &[u8]) -> Result<Option<Oversized>, LimitError> {
        let malformed = || LimitError::Malformed {
            message: self.shape.name,
        };
        while let Some(rest) = prefix.get(self.at..) {
            let Some((key, key_len)) = varint(rest).map_err(|()| malformed())? else {
                return Ok(None);
            };
            let number = u32::try_from(key >> 3).map_err(|_| malformed())?;
            let after_key = &rest[key_len..];
            let (header_len, value_len) = match key & 7 {
                0 => match varint(after_key).map_err(|()| malformed())? {
                    Some((_, len)) => (key_len + len, 0),
                    None => return Ok(None),
                },
                1 => (key_len, 8),
                5 => (key_len, 4),
                2 => match varint(after_key).map_err(|()| malformed())? {
                    Some((len, len_len)) => (
                        key_len + len_len,
                        usize::try_from(len).map_err(|_| malformed())?,
                    ),
                    None => return Ok(None),
                },
                _ => return Err(malformed()),
            };
            let max = self
                .shape
                .fields
                .iter()
                .find(|field| field.number == number)
                .and_then(|field| match field.kind {
                    FieldKind::Text(max)
                    | FieldKind::Bytes(max)
                    | FieldKind::Texts { len: max, .. } => Some((field.name, max)),
                    FieldKind::Message(_) => None,
                });
            if let Some((field, max)) = max
                && value_len > max
            {
                return Ok(Some(Oversized {
                    message: self.shape.name,
                    field,
                    len: value_len,
                    max,
                    value_at: self.at + header_len,
                }));
            }
            self.at = self
                .at
                .checked_add(header_len + value_len)
                .ok_or_else(malformed)?;
        }
        Ok(None)
    }
}

/// A varint at the start of `bytes` and its length; `None` if `bytes` end
/// inside it.
fn varint(bytes: &[u8]) -> Result<Option<(u64, usize)>, ()> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 10 { Err(()) } else { Ok(None) }
}

/// The SHA-256 and start of an oversized value, fed as it streams past.
#[derive(Debug)]
pub struct ValueDigest {
    oversized: Oversized,
    hasher: Option<Sha256>,
    start: Vec<u8>,
    remaining: usize,
}

impl ValueDigest {
    pub fn new(oversized: Oversized) -> Self {
        let hashed = oversized.len <= MAX_HASHED;
        Self {
            remaining: if hashed { oversized.len } else { START_LEN },
            hasher: hashed.then(Sha256::new),
            start: Vec::with_capacity(START_LEN),
            oversized,
        }
    }

    /// Feeds the value's next bytes; returns how many it took (the rest
    /// follows the value).
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let taken = bytes.len().min(self.remaining);
        let bytes = &bytes[..taken];
        if let Some(hasher) = &mut self.hasher {
            hasher.update(bytes);
        }
        let room = START_LEN - self.start.len();
        self.start
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.remaining -= taken;
        taken
    }

    /// All of the value that is hashed has been fed.
    pub fn done(&self) -> bool {
        self.remaining == 0
    }

    /// The refusal, with what was read of the value.
    pub fn finish(self) -> LimitError {
        let Oversized {
            message,
            field,
            len,
            max,
            ..
        } = self.oversized;
        LimitError::FieldTooLong {
            message,
            field,
            len,
            max,
            start: String::from_utf8_lossy(&self.start).into_owned(),
            sha256: match (self.hasher, self.remaining) {
                (Some(hasher), 0) => hex::encode(hasher.finalize()),
                (Some(_), _) => "not computed: the value did not arrive whole".to_owned(),
                (None, _) => format!("not computed: over {MAX_HASHED} bytes"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{leaves, method_limits};
    use super::*;

    #[test]
    fn a_field_announced_over_its_limit_is_found_from_its_header_alone() {
        let limits = method_limits("/rkm.v1.KeyService/CreateKey").unwrap();
        let label = &leaves(limits.request)[0];
        let message = label.filled_message(100_000, 1);
        let mut scan = FieldScan::new(limits.request);
        // The key and length prefix: 1 + 3 bytes.
        assert_eq!(scan.advance(&message[..3]), Ok(None));
        let found = scan.advance(&message[..4]).unwrap().unwrap();
        assert_eq!(
            found,
            Oversized {
                message: "CreateKeyRequest",
                field: "label",
                len: 100_000,
                max: 64,
                value_at: 4,
            }
        );
        let mut digest = ValueDigest::new(found);
        let mut rest = &message[4..];
        while !digest.done() {
            let taken = digest.feed(&rest[..rest.len().min(1000)]);
            rest = &rest[taken..];
        }
        match digest.finish() {
            LimitError::FieldTooLong { start, sha256, .. } => {
                assert_eq!(start, "a".repeat(64));
                assert_eq!(sha256, hex::encode(Sha256::digest(vec![b'a'; 100_000])));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fields_within_their_limits_are_skipped_as_they_arrive() {
        let limits = method_limits("/rkm.v1.RecoveryService/CancelRecovery").unwrap();
        let [id, reason] = [0, 1].map(|i| leaves(limits.request)[i].clone());
        let mut message = id.filled_message(10, 1);
        let mut numeric = Vec::new();
        prost::encoding::uint64::encode(7, &300, &mut numeric);
        message.extend(numeric);
        message.extend(reason.filled_message(5000, 1));
        let mut scan = FieldScan::new(limits.request);
        for end in 0..message.len() {
            match scan.advance(&message[..end]).unwrap() {
                None => {}
                Some(found) => {
                    assert_eq!((found.field, found.len), ("reason", 5000));
                    return;
                }
            }
        }
        panic!("the over-long reason was not found");
    }

    #[test]
    fn a_huge_value_is_quoted_but_not_hashed_and_a_broken_one_says_so() {
        let oversized = Oversized {
            message: "M",
            field: "f",
            len: MAX_HASHED + 1,
            max: 1,
            value_at: 0,
        };
        let mut digest = ValueDigest::new(oversized.clone());
        digest.feed(&[b'x'; 100]);
        assert!(digest.done());
        assert!(
            matches!(digest.finish(), LimitError::FieldTooLong { sha256, start, .. }
            if sha256.starts_with("not computed: over") && start.len() == 64)
        );
        let mut cut = ValueDigest::new(Oversized {
            len: 10,
            ..oversized
        });
        cut.feed(b"abc");
        assert!(
            matches!(cut.finish(), LimitError::FieldTooLong { sha256, .. }
            if sha256.contains("did not arrive whole"))
        );
    }

    #[test]
    fn an_endless_varint_is_malformed() {
        let limits = method_limits("/rkm.v1.RecoveryService/CancelRecovery").unwrap();
        let mut scan = FieldScan::new(limits.request);
        assert!(matches!(
            scan.advance(&[0xff; 11]),
            Err(LimitError::Malformed { .. })
        ));
    }
}
