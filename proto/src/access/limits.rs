//! The size of everything a gRPC request may carry: one table, by method,
//! of the largest message and of every string, bytes and repeated field,
//! checked on the message's wire bytes before anything decodes, stores or
//! echoes them. rkmd checks each request against it in its access layer
//! (and refuses with InvalidArgument, audited); the client sizes its
//! channels from it. The tests below fail when a request field of the
//! descriptor set has no limit, so a new field cannot ship unbounded.
//!
//! The limits follow the rules the handlers apply (a custodian name is a
//! card's name, a label a key label, a reason a request's reason); fields
//! of a fixed size (nonces, signatures, digests) are bounded by that size.

pub mod scan;
mod table;

pub use table::{METHODS, UNLISTED};

use sha2::{Digest as _, Sha256};

/// Longest ceremony or notice id (`rec-` and 16 hex digits today).
pub const MAX_ID_LEN: usize = 64;
/// Longest audit note.
pub const MAX_NOTE_LEN: usize = 4096;
/// Largest chunk of a streamed target manifest (the client sends 256 KiB).
pub const MAX_MANIFEST_CHUNK_LEN: usize = 1 << 20;
/// Most custodians a key is split to (Shamir over GF(256)).
pub const MAX_CUSTODIANS: usize = 255;
/// Bytes a field's key and length prefix add on the wire, at most.
const FIELD_OVERHEAD: usize = 16;

/// What one field may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A UTF-8 string of at most this many bytes.
    Text(usize),
    /// Bytes, at most this many.
    Bytes(usize),
    /// A repeated string: at most `count` entries of at most `len` bytes.
    Texts {
        /// Longest entry, in bytes.
        len: usize,
        /// Most entries.
        count: usize,
    },
    /// An embedded message.
    Message(&'static Shape),
}

/// One length-delimited field of a request message. Numeric and boolean
/// fields have a fixed size and need no entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub number: u32,
    /// As in the `.proto` file.
    pub name: &'static str,
    pub kind: FieldKind,
}

/// The length-delimited fields of one message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// The message's name in package `rkm.v1`.
    pub name: &'static str,
    pub fields: &'static [Field],
}

impl Shape {
    /// The largest encoding of a message within every field's limit, plus
    /// room for its numeric fields.
    pub const fn max_len(&self) -> usize {
        let mut total = 64;
        let mut i = 0;
        while i < self.fields.len() {
            total += FIELD_OVERHEAD
                + match self.fields[i].kind {
                    FieldKind::Text(len) | FieldKind::Bytes(len) => len,
                    FieldKind::Texts { len, count } => count * (len + FIELD_OVERHEAD),
                    FieldKind::Message(shape) => shape.max_len(),
                };
            i += 1;
        }
        total
    }
}

/// The request of one method: its shape and largest message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodLimits {
    /// Full gRPC path.
    pub method: &'static str,
    pub request: &'static Shape,
    /// The client streams many messages (each checked on its own).
    pub client_streaming: bool,
}

/// How far past its limit a request is still read, so that a field over
/// its limit is refused by name rather than as an oversized message.
const READ_SLACK: usize = 64 * 1024;

impl MethodLimits {
    /// Largest request message accepted, in bytes.
    pub const fn max_message(&self) -> usize {
        self.request.max_len()
    }

    /// Largest request message read to be checked; one announced as larger
    /// is refused before its bytes are read.
    pub const fn max_read(&self) -> usize {
        self.max_message() + READ_SLACK
    }
}

/// The limits of `method` (a full gRPC path), if it is an rkm method.
pub fn method_limits(method: &str) -> Option<&'static MethodLimits> {
    METHODS.iter().find(|limits| limits.method == method)
}

/// The largest request message read for any method of `service` (e.g.
/// `rkm.v1.KeyService`): what its server and client accept at most.
pub fn service_max_message(service: &str) -> usize {
    METHODS
        .iter()
        .filter(|limits| {
            limits
                .method
                .strip_prefix('/')
                .and_then(|path| path.split_once('/'))
                .is_some_and(|(name, _)| name == service)
        })
        .map(MethodLimits::max_read)
        .max()
        .unwrap_or(64 * 1024)
}

/// A string or bytes field of a request, reached through the embedded
/// messages in `path` (outermost first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The message that declares the field.
    pub shape: &'static Shape,
    pub field: Field,
    pub path: Vec<Field>,
}

impl Leaf {
    /// The field's limit in bytes (of one entry, for a list).
    pub fn max_len(&self) -> usize {
        match self.field.kind {
            FieldKind::Text(max) | FieldKind::Bytes(max) | FieldKind::Texts { len: max, .. } => max,
            FieldKind::Message(shape) => shape.max_len(),
        }
    }

    /// A request holding only this field: `count` entries of `len` bytes
    /// `b'a'`, wrapped in the embedded messages of its path. For tests of
    /// the limits, here and end to end.
    pub fn filled_message(&self, len: usize, count: usize) -> Vec<u8> {
        use prost::encoding::{WireType, encode_key, encode_varint};
        let mut message = Vec::new();
        for _ in 0..count {
            encode_key(self.field.number, WireType::LengthDelimited, &mut message);
            encode_varint(len as u64, &mut message);
            message.resize(message.len() + len, b'a');
        }
        self.path.iter().rev().fold(message, |inner, field| {
            let mut outer = Vec::new();
            prost::encoding::bytes::encode(field.number, &inner, &mut outer);
            outer
        })
    }
}

/// Every string and bytes field of `shape`, through embedded messages.
pub fn leaves(shape: &'static Shape) -> Vec<Leaf> {
    let mut found = Vec::new();
    for field in shape.fields {
        match field.kind {
            FieldKind::Message(inner) => {
                for mut leaf in leaves(inner) {
                    leaf.path.insert(0, *field);
                    found.push(leaf);
                }
            }
            _ => found.push(Leaf {
                shape,
                field: *field,
                path: Vec::new(),
            }),
        }
    }
    found
}

/// Largest response message rkmd sends and rkm accepts: a key list with
/// its signed records, a page of audit entries, an artefact chunk.
pub const MAX_RESPONSE_MESSAGE: usize = 16 << 20;

/// Why a request message was refused. The messages name the field and the
/// limit; the field's value appears only as a short excerpt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("the {message} is {len} bytes, more than the {max} rkmd accepts")]
    MessageTooLarge {
        message: &'static str,
        len: usize,
        max: usize,
    },
    #[error("field `{field}` of {message} is {len} bytes; the limit is {max} bytes")]
    FieldTooLong {
        message: &'static str,
        field: &'static str,
        len: usize,
        max: usize,
        /// The value's start, for the audit log (at most 64 bytes of it,
        /// lossily decoded).
        start: String,
        /// SHA-256 of the whole value, hex.
        sha256: String,
    },
    #[error("field `{field}` of {message} has more than {max} entries")]
    TooManyEntries {
        message: &'static str,
        field: &'static str,
        max: usize,
    },
    #[error("field `{field}` of {message} appears more than once")]
    Repeated {
        message: &'static str,
        field: &'static str,
    },
    #[error("the {message} is not a well-formed protobuf message")]
    Malformed { message: &'static str },
}

impl LimitError {
    /// The refusal in words that do not depend on the value's size, so
    /// that a burst of the same refusal is recorded once with a count.
    pub fn kind(&self) -> String {
        match self {
            LimitError::MessageTooLarge { message, max, .. } => {
                format!("the {message} is over its limit of {max} bytes")
            }
            LimitError::FieldTooLong {
                message,
                field,
                max,
                ..
            } => format!("field `{field}` of {message} is over its limit of {max} bytes"),
            other => other.to_string(),
        }
    }
}

/// Checks `message` (one request message's bytes, as in its gRPC frame)
/// against `shape`, without decoding or copying any field.
///
/// # Errors
/// The first field over its limit, or a malformed message.
pub fn check_message(shape: &'static Shape, message: &[u8]) -> Result<(), LimitError> {
    // Fields first: a field over its limit is named, which says more than
    // the size of the whole.
    check_fields(shape, message)?;
    let max = shape.max_len();
    if message.len() > max {
        return Err(LimitError::MessageTooLarge {
            message: shape.name,
            len: message.len(),
            max,
        });
    }
    Ok(())
}

/// The fields of a protobuf message, in order, without knowing its type:
/// number, wire type and value bytes (for a varint, none). Ends with one
/// `Err(())` at the first malformed field.
pub fn wire_fields(
    mut message: &[u8],
) -> impl Iterator<Item = Result<(u32, prost::encoding::WireType, &[u8]), ()>> {
    use prost::encoding::{WireType, decode_key, decode_varint};
    let mut failed = false;
    std::iter::from_fn(move || {
        if message.is_empty() || failed {
            return None;
        }
        let mut next = || {
            let (number, wire_type) = decode_key(&mut message).map_err(|_| ())?;
            let len = match wire_type {
                WireType::Varint => {
                    decode_varint(&mut message).map_err(|_| ())?;
                    0
                }
                WireType::SixtyFourBit => 8,
                WireType::ThirtyTwoBit => 4,
                WireType::LengthDelimited => {
                    usize::try_from(decode_varint(&mut message).map_err(|_| ())?).map_err(|_| ())?
                }
                WireType::StartGroup | WireType::EndGroup => return Err(()),
            };
            if len > message.len() {
                return Err(());
            }
            let (value, rest) = message.split_at(len);
            message = rest;
            Ok((number, wire_type, value))
        };
        let field = next();
        failed = field.is_err();
        Some(field)
    })
}

fn check_fields(shape: &'static Shape, message: &[u8]) -> Result<(), LimitError> {
    use prost::encoding::WireType;
    let malformed = || LimitError::Malformed {
        message: shape.name,
    };
    let mut seen = [0usize; 8];
    for field in wire_fields(message) {
        let (number, wire_type, value) = field.map_err(|()| malformed())?;
        let Some(index) = shape.fields.iter().position(|f| f.number == number) else {
            // Unknown fields (from a newer client) are skipped, as protobuf
            // decoders do; the message's limit bounds them.
            continue;
        };
        let field = &shape.fields[index];
        if wire_type != WireType::LengthDelimited {
            return Err(malformed());
        }
        // Fields past the eighth are not counted; no request has that many.
        let count = seen.get_mut(index).map_or(1, |seen| {
            *seen += 1;
            *seen
        });
        let too_long = |max: usize| LimitError::FieldTooLong {
            message: shape.name,
            field: field.name,
            len: value.len(),
            max,
            start: String::from_utf8_lossy(&value[..value.len().min(64)]).into_owned(),
            sha256: hex::encode(Sha256::digest(value)),
        };
        match field.kind {
            FieldKind::Text(max) | FieldKind::Bytes(max) => {
                if count > 1 {
                    return Err(LimitError::Repeated {
                        message: shape.name,
                        field: field.name,
                    });
                }
                if value.len() > max {
                    return Err(too_long(max));
                }
            }
            FieldKind::Texts { len, count: max } => {
                if count > max {
                    return Err(LimitError::TooManyEntries {
                        message: shape.name,
                        field: field.name,
                        max,
                    });
                }
                if value.len() > len {
                    return Err(too_long(len));
                }
            }
            FieldKind::Message(inner) => {
                if count > 1 {
                    return Err(LimitError::Repeated {
                        message: shape.name,
                        field: field.name,
                    });
                }
                check_fields(inner, value)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
