//! The table itself: every rkm method's request, field by field, with the
//! limit of each string, bytes and repeated field (see the parent module).

use super::{
    Field, FieldKind, MAX_CUSTODIANS, MAX_ID_LEN, MAX_MANIFEST_CHUNK_LEN, MAX_NOTE_LEN,
    MethodLimits, Shape,
};
use crate::custodian_card::{MAX_CARD_LEN, MAX_NAME_LEN};
use crate::envelope::MAX_ENVELOPE_LEN;
use crate::key_record::{MAX_KEY_ID_LEN, MAX_LABEL_LEN, MAX_SIGNED_RECORD_FILE_LEN};
use crate::recovery_request::{MAX_REASON_LEN, MAX_REQUEST_FILE_LEN};

/// An Ed25519 signature, a possession proof.
const SIGNATURE_LEN: usize = 64;
/// A nonce, commitment or SHA-256 digest.
const DIGEST_LEN: usize = 32;
/// A bech32 age recipient or a signed-note verifier key.
const MAX_PUBLIC_KEY_TEXT_LEN: usize = 1024;

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

pub(super) const fn shape(name: &'static str, fields: &'static [Field]) -> Shape {
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

pub(super) const EMPTY: &[Field] = &[];

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
