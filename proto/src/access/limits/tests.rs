use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};

use super::table::{EMPTY, shape};
use super::*;
use crate::key_record::MAX_SIGNED_RECORD_FILE_LEN;
use crate::recovery_request::{MAX_REASON_LEN, MAX_REQUEST_FILE_LEN};

/// Every rkm method with its request message's descriptor.
fn served() -> Vec<(String, bool, prost_types::DescriptorProto)> {
    let set = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap();
    let messages: Vec<prost_types::DescriptorProto> = set
        .file
        .iter()
        .flat_map(|file| file.message_type.clone())
        .collect();
    let find = |type_name: &str| {
        let name = type_name.trim_start_matches(".rkm.v1.");
        messages
            .iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("no message {type_name}"))
            .clone()
    };
    let mut served = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                served.push((
                    format!("/{}.{}/{}", file.package(), service.name(), method.name()),
                    method.client_streaming(),
                    find(method.input_type()),
                ));
            }
        }
    }
    served
}

fn message_named(name: &str) -> prost_types::DescriptorProto {
    let set = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap();
    set.file
        .into_iter()
        .flat_map(|file| file.message_type)
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no message {name}"))
}

/// The shape declares exactly the length-delimited fields of `message`,
/// with matching kinds, recursively.
fn assert_shape_matches(shape: &Shape, message: &prost_types::DescriptorProto) {
    assert_eq!(shape.name, message.name());
    assert!(
        shape.fields.len() <= 8,
        "{} counts at most 8 fields",
        shape.name
    );
    let delimited: Vec<_> = message
        .field
        .iter()
        .filter(|f| matches!(f.r#type(), Type::String | Type::Bytes | Type::Message))
        .collect();
    for field in &delimited {
        let declared = shape
            .fields
            .iter()
            .find(|f| f.number == u32::try_from(field.number()).unwrap())
            .unwrap_or_else(|| {
                panic!(
                    "field `{}` of {} has no limit in access::limits::METHODS",
                    field.name(),
                    shape.name
                )
            });
        assert_eq!(declared.name, field.name(), "in {}", shape.name);
        let repeated = field.label() == Label::Repeated;
        match (declared.kind, field.r#type(), repeated) {
            (FieldKind::Text(_), Type::String, false)
            | (FieldKind::Bytes(_), Type::Bytes, false)
            | (FieldKind::Texts { .. }, Type::String, true) => {}
            (FieldKind::Message(inner), Type::Message, false) => {
                assert_shape_matches(inner, &message_named(inner.name));
            }
            other => panic!("field `{}` of {}: {other:?}", field.name(), shape.name),
        }
    }
    assert_eq!(
        shape.fields.len(),
        delimited.len(),
        "{} declares extra fields",
        shape.name
    );
}

#[test]
fn every_request_field_of_every_method_has_a_limit() {
    let served = served();
    assert!(served.len() > 25, "{} methods", served.len());
    for (method, client_streaming, request) in &served {
        let limits = method_limits(method)
            .unwrap_or_else(|| panic!("{method} has no entry in access::limits::METHODS"));
        assert_eq!(limits.client_streaming, *client_streaming, "{method}");
        assert_shape_matches(limits.request, request);
    }
    for limits in METHODS {
        assert!(
            served.iter().any(|(method, ..)| method == limits.method),
            "{} is not served",
            limits.method
        );
    }
}

/// A message whose field `field` holds `count` entries of `len` bytes.
fn with_field(field: &Field, len: usize, count: usize) -> Vec<u8> {
    Leaf {
        shape: &EMPTY_SHAPE,
        field: *field,
        path: Vec::new(),
    }
    .filled_message(len, count)
}

const EMPTY_SHAPE: Shape = shape("Empty", EMPTY);

#[test]
fn a_field_at_its_limit_passes_and_one_byte_over_is_refused_by_name() {
    for limits in METHODS {
        for leaf in leaves(limits.request) {
            let max = leaf.max_len();
            let at_limit = leaf.filled_message(max, 1);
            assert_eq!(
                check_message(limits.request, &at_limit),
                Ok(()),
                "{} {}",
                limits.method,
                leaf.field.name
            );
            match check_message(limits.request, &leaf.filled_message(max + 1, 1)) {
                Err(LimitError::FieldTooLong {
                    message,
                    field,
                    len,
                    max: limit,
                    sha256,
                    ..
                }) => {
                    assert_eq!(
                        (message, field, len, limit),
                        (leaf.shape.name, leaf.field.name, max + 1, max)
                    );
                    assert_eq!(sha256, hex::encode(Sha256::digest(vec![b'a'; max + 1])));
                }
                other => panic!("{} {}: {other:?}", limits.method, leaf.field.name),
            }
        }
    }
}

#[test]
fn a_message_with_every_field_at_its_limit_fits_the_message_limit() {
    for limits in METHODS {
        let mut message = Vec::new();
        for leaf in leaves(limits.request) {
            let count = match leaf.field.kind {
                FieldKind::Texts { count, .. } => count,
                _ => 1,
            };
            message.extend(leaf.filled_message(leaf.max_len(), count));
        }
        assert!(message.len() <= limits.max_message(), "{}", limits.method);
        // Leaves of an embedded message arrive as separate occurrences of
        // it, which is refused as ambiguous: check the flat ones whole.
        if !limits
            .request
            .fields
            .iter()
            .any(|f| matches!(f.kind, FieldKind::Message(_)))
        {
            assert_eq!(
                check_message(limits.request, &message),
                Ok(()),
                "{}",
                limits.method
            );
        }
    }
}

#[test]
fn a_list_longer_than_its_count_is_refused() {
    let limits = method_limits("/rkm.v1.KeyService/CreateKey").unwrap();
    let custodians = limits.request.fields[1];
    assert_eq!(
        check_message(limits.request, &with_field(&custodians, 8, MAX_CUSTODIANS)),
        Ok(())
    );
    assert_eq!(
        check_message(
            limits.request,
            &with_field(&custodians, 8, MAX_CUSTODIANS + 1)
        ),
        Err(LimitError::TooManyEntries {
            message: "CreateKeyRequest",
            field: "custodians",
            max: MAX_CUSTODIANS
        })
    );
}

#[test]
fn a_field_given_twice_is_refused_as_ambiguous() {
    let limits = method_limits("/rkm.v1.RecoveryService/CancelRecovery").unwrap();
    let id = limits.request.fields[0];
    let twice = [with_field(&id, 4, 1), with_field(&id, 4, 1)].concat();
    assert_eq!(
        check_message(limits.request, &twice),
        Err(LimitError::Repeated {
            message: "CancelRecoveryRequest",
            field: "ceremony_id"
        })
    );
}

#[test]
fn malformed_and_oversized_messages_are_refused_and_unknown_fields_skipped() {
    let limits = method_limits("/rkm.v1.RecoveryService/ConfirmRecovery").unwrap();
    let mut truncated = with_field(&limits.request.fields[0], 10, 1);
    truncated.pop();
    assert_eq!(
        check_message(limits.request, &truncated),
        Err(LimitError::Malformed {
            message: "ConfirmRecoveryRequest"
        })
    );
    let mut unknown = Vec::new();
    prost::encoding::string::encode(9, &"from a newer client".to_owned(), &mut unknown);
    assert_eq!(check_message(limits.request, &unknown), Ok(()));
    let mut huge = Vec::new();
    prost::encoding::string::encode(9, &"a".repeat(limits.max_message()), &mut huge);
    assert!(matches!(
        check_message(limits.request, &huge),
        Err(LimitError::MessageTooLarge { .. })
    ));
    // A numeric value where a string belongs.
    let mut wrong_type = Vec::new();
    prost::encoding::uint64::encode(1, &7, &mut wrong_type);
    assert!(matches!(
        check_message(limits.request, &wrong_type),
        Err(LimitError::Malformed { .. })
    ));
}

#[test]
fn refusal_kinds_do_not_depend_on_the_size_sent() {
    let limits = method_limits("/rkm.v1.CustodianService/DisableCustodian").unwrap();
    let reason = limits.request.fields[1];
    let kind = |len| {
        check_message(limits.request, &with_field(&reason, len, 1))
            .unwrap_err()
            .kind()
    };
    assert_eq!(kind(MAX_REASON_LEN + 1), kind(MAX_REASON_LEN + 500));
    assert!(kind(MAX_REASON_LEN + 1).contains("`reason`"));
}

#[test]
fn services_accept_their_largest_request() {
    assert!(service_max_message("rkm.v1.KeyService") > MAX_SIGNED_RECORD_FILE_LEN);
    assert!(service_max_message("rkm.v1.RecoveryService") > MAX_REQUEST_FILE_LEN);
    assert!(service_max_message("rkm.v1.AccessService") < 128 * 1024);
}
