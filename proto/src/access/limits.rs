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

use sha2::{Digest as _, Sha256};

use crate::custodian_card::{MAX_CARD_LEN, MAX_NAME_LEN};
use crate::envelope::MAX_ENVELOPE_LEN;
use crate::key_record::{MAX_KEY_ID_LEN, MAX_LABEL_LEN, MAX_SIGNED_RECORD_FILE_LEN};
use crate::recovery_request::{MAX_REASON_LEN, MAX_REQUEST_FILE_LEN};

/// Longest ceremony or notice id (`rec-` and 16 hex digits today).
pub const MAX_ID_LEN: usize = 64;
/// Longest audit note.
pub const MAX_NOTE_LEN: usize = 4096;
/// Largest chunk of a streamed target manifest (the client sends 256 KiB).
pub const MAX_MANIFEST_CHUNK_LEN: usize = 1 << 20;
/// Most custodians a key is split to (Shamir over GF(256)).
pub const MAX_CUSTODIANS: usize = 255;
/// An Ed25519 signature, a possession proof.
const SIGNATURE_LEN: usize = 64;
/// A nonce, commitment or SHA-256 digest.
const DIGEST_LEN: usize = 32;
/// A bech32 age recipient or a signed-note verifier key.
const MAX_PUBLIC_KEY_TEXT_LEN: usize = 1024;
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

const fn text(number: u32, name: &'static str, max: usize) -> Field {
    Field {
        number,
        name,
        kind: FieldKind::Text(max),
    }
}

const fn bytes(number: u32, name: &'static str, max: usize) -> Field {
    Field {
        number,
        name,
        kind: FieldKind::Bytes(max),
    }
}

const fn shape(name: &'static str, fields: &'static [Field]) -> Shape {
    Shape { name, fields }
}

const fn unary(method: &'static str, request: &'static Shape) -> MethodLimits {
    MethodLimits {
        method,
        request,
        client_streaming: false,
    }
}

const CUSTODIAN: usize = MAX_NAME_LEN;
/// A key named by label or by key id.
const KEY: usize = if MAX_LABEL_LEN > MAX_KEY_ID_LEN {
    MAX_LABEL_LEN
} else {
    MAX_KEY_ID_LEN
};
/// An audit subject: a key id, ceremony id or custodian name.
const SUBJECT: usize = 256;

const EMPTY: &[Field] = &[];

const RECOVERY_HEADER: Shape = shape(
    "RecoveryHeader",
    &[
        text(1, "key", KEY),
        text(2, "request_toml", MAX_REQUEST_FILE_LEN),
        text(5, "justification", MAX_REASON_LEN),
    ],
);

/// Every rkm method's request limits.
pub const METHODS: &[MethodLimits] = &[
    unary(
        "/rkm.v1.AccessService/GetChallenge",
        &shape(
            "GetChallengeRequest",
            &[
                text(1, "custodian", CUSTODIAN),
                bytes(2, "client_nonce", DIGEST_LEN),
            ],
        ),
    ),
    unary(
        "/rkm.v1.AccessService/WhoAmI",
        &shape("WhoAmIRequest", EMPTY),
    ),
    unary(
        "/rkm.v1.SystemService/GetStatus",
        &shape("GetStatusRequest", EMPTY),
    ),
    unary(
        "/rkm.v1.AuditService/GetAuditKey",
        &shape("GetAuditKeyRequest", EMPTY),
    ),
    unary(
        "/rkm.v1.AuditService/GetCheckpoint",
        &shape("GetCheckpointRequest", EMPTY),
    ),
    unary(
        "/rkm.v1.AuditService/ListCheckpoints",
        &shape("ListCheckpointsRequest", EMPTY),
    ),
    unary(
        "/rkm.v1.AuditService/ListEntries",
        &shape("ListEntriesRequest", &[text(3, "subject", SUBJECT)]),
    ),
    unary(
        "/rkm.v1.AuditService/GetInclusionProof",
        &shape("GetInclusionProofRequest", EMPTY),
    ),
    unary(
        "/rkm.v1.AuditService/GetConsistencyProof",
        &shape("GetConsistencyProofRequest", EMPTY),
    ),
    unary(
        "/rkm.v1.AuditService/RecordNote",
        &shape(
            "RecordNoteRequest",
            &[
                text(1, "message", MAX_NOTE_LEN),
                text(2, "subject", SUBJECT),
            ],
        ),
    ),
    unary(
        "/rkm.v1.CustodianService/EnrolCustodian",
        &shape("EnrolCustodianRequest", &[text(1, "card", MAX_CARD_LEN)]),
    ),
    unary(
        "/rkm.v1.CustodianService/ListCustodians",
        &shape("ListCustodiansRequest", EMPTY),
    ),
    unary(
        "/rkm.v1.CustodianService/DisableCustodian",
        &shape(
            "DisableCustodianRequest",
            &[
                text(1, "name", CUSTODIAN),
                text(2, "reason", MAX_REASON_LEN),
            ],
        ),
    ),
    unary(
        "/rkm.v1.CustodianService/ListNotices",
        &shape("ListNoticesRequest", &[text(1, "custodian", CUSTODIAN)]),
    ),
    unary(
        "/rkm.v1.CustodianService/AcknowledgeNotice",
        &shape(
            "AcknowledgeNoticeRequest",
            &[
                text(1, "notice_id", MAX_ID_LEN),
                text(2, "custodian", CUSTODIAN),
                bytes(3, "signature", SIGNATURE_LEN),
            ],
        ),
    ),
    unary(
        "/rkm.v1.KeyService/CreateKey",
        &shape(
            "CreateKeyRequest",
            &[
                text(1, "label", crate::encoding::text::MAX_KEY_LABEL_LEN),
                Field {
                    number: 3,
                    name: "custodians",
                    kind: FieldKind::Texts {
                        len: CUSTODIAN,
                        count: MAX_CUSTODIANS,
                    },
                },
            ],
        ),
    ),
    unary(
        "/rkm.v1.KeyService/GetKey",
        &shape("GetKeyRequest", &[text(1, "key", KEY)]),
    ),
    unary(
        "/rkm.v1.KeyService/ListKeys",
        &shape("ListKeysRequest", EMPTY),
    ),
    unary(
        "/rkm.v1.KeyService/FetchEnvelope",
        &shape(
            "FetchEnvelopeRequest",
            &[
                text(1, "key", KEY),
                text(2, "custodian", CUSTODIAN),
                bytes(4, "signature", SIGNATURE_LEN),
            ],
        ),
    ),
    unary(
        "/rkm.v1.KeyService/SubmitReceipt",
        &shape(
            "SubmitReceiptRequest",
            &[
                text(1, "key_id", MAX_KEY_ID_LEN),
                text(2, "custodian", CUSTODIAN),
                bytes(3, "signature", SIGNATURE_LEN),
                bytes(4, "possession_proof", SIGNATURE_LEN),
            ],
        ),
    ),
    unary(
        "/rkm.v1.KeyService/AttestShare",
        &shape(
            "AttestShareRequest",
            &[
                text(1, "key_id", MAX_KEY_ID_LEN),
                text(2, "custodian", CUSTODIAN),
                bytes(4, "signature", SIGNATURE_LEN),
                bytes(5, "possession_proof", SIGNATURE_LEN),
            ],
        ),
    ),
    unary(
        "/rkm.v1.KeyService/ImportKey",
        &shape(
            "ImportKeyRequest",
            &[
                text(1, "signed_key_record", MAX_SIGNED_RECORD_FILE_LEN),
                text(2, "record_audit_key", MAX_PUBLIC_KEY_TEXT_LEN),
            ],
        ),
    ),
    MethodLimits {
        method: "/rkm.v1.RecoveryService/OpenRecovery",
        request: &shape(
            "OpenRecoveryRequest",
            &[
                Field {
                    number: 1,
                    name: "header",
                    kind: FieldKind::Message(&RECOVERY_HEADER),
                },
                bytes(2, "targets_chunk", MAX_MANIFEST_CHUNK_LEN),
            ],
        ),
        client_streaming: true,
    },
    unary(
        "/rkm.v1.RecoveryService/GetRecovery",
        &shape(
            "GetRecoveryRequest",
            &[
                text(1, "ceremony_id", MAX_ID_LEN),
                text(2, "custodian", CUSTODIAN),
            ],
        ),
    ),
    unary(
        "/rkm.v1.RecoveryService/ListRecoveries",
        &shape("ListRecoveriesRequest", &[text(1, "custodian", CUSTODIAN)]),
    ),
    unary(
        "/rkm.v1.RecoveryService/CancelRecovery",
        &shape(
            "CancelRecoveryRequest",
            &[
                text(1, "ceremony_id", MAX_ID_LEN),
                text(2, "reason", MAX_REASON_LEN),
            ],
        ),
    ),
    unary(
        "/rkm.v1.RecoveryService/ConfirmRecovery",
        &shape(
            "ConfirmRecoveryRequest",
            &[text(1, "ceremony_id", MAX_ID_LEN)],
        ),
    ),
    unary(
        "/rkm.v1.RecoveryService/GetApprovalNonce",
        &shape(
            "GetApprovalNonceRequest",
            &[
                text(1, "ceremony_id", MAX_ID_LEN),
                text(2, "custodian", CUSTODIAN),
            ],
        ),
    ),
    unary(
        "/rkm.v1.RecoveryService/Approve",
        &shape(
            "ApproveRequest",
            &[
                text(1, "ceremony_id", MAX_ID_LEN),
                text(2, "custodian", CUSTODIAN),
                bytes(3, "nonce", DIGEST_LEN),
                bytes(4, "commitment", DIGEST_LEN),
                bytes(5, "signature", SIGNATURE_LEN),
                bytes(6, "sealed_share", MAX_ENVELOPE_LEN),
            ],
        ),
    ),
    unary(
        "/rkm.v1.RecoveryService/CollectArtefact",
        &shape(
            "CollectArtefactRequest",
            &[
                text(1, "ceremony_id", MAX_ID_LEN),
                bytes(3, "header_sha256", DIGEST_LEN),
            ],
        ),
    ),
];

/// The limits of a method not in [`METHODS`] (health, reflection) whose
/// request is read whole anyway, as a custodian-signed one is: small.
pub const UNLISTED: MethodLimits = unary("", &shape("request", EMPTY));

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
