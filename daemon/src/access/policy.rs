//! The one table of who may call which RPC. A method missing from it is
//! refused to everyone; the unit test below fails when a method of the
//! descriptor set has no rule, so a new RPC cannot ship without one.

use super::Role;

/// What a method requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Anyone may call, authenticated or not (health, reflection).
    pub public: bool,
    /// Roles of which the caller must hold one.
    pub roles: &'static [Role],
    /// For a custodian caller: the request field (protobuf field number)
    /// that names the custodian acted for; it must be the caller.
    pub custodian_field: Option<u32>,
    /// The request field naming the ceremony or key the call concerns, so
    /// a refused custodian request is filed under it in the audit log (a
    /// drill report lists it among the drill's problems).
    pub subject_field: Option<u32>,
}

const PUBLIC: Rule = Rule {
    public: true,
    roles: &[],
    custodian_field: None,
    subject_field: None,
};

const fn roles(roles: &'static [Role]) -> Rule {
    Rule {
        public: false,
        roles,
        custodian_field: None,
        subject_field: None,
    }
}

/// The same rule, with field 1 naming the ceremony or key concerned.
const fn about_field_1(rule: Rule) -> Rule {
    Rule {
        subject_field: Some(1),
        ..rule
    }
}

/// A custodian acting for the custodian named in `field`.
const fn custodian_for(field: u32, roles: &'static [Role]) -> Rule {
    Rule {
        public: false,
        roles,
        custodian_field: Some(field),
        subject_field: None,
    }
}

use Role::{Admin, Auditor, Custodian, Operator};

const STAFF: &[Role] = &[Admin, Operator, Auditor];
const ANYONE_KNOWN: &[Role] = &[Admin, Operator, Auditor, Custodian];
const CUSTODIAN: &[Role] = &[Custodian];

/// Every method rkmd serves and its rule, by full gRPC path.
pub const RULES: &[(&str, Rule)] = &[
    ("/grpc.health.v1.Health/Check", PUBLIC),
    ("/grpc.health.v1.Health/Watch", PUBLIC),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        PUBLIC,
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        PUBLIC,
    ),
    (
        "/rkm.v1.AccessService/GetChallenge",
        custodian_for(1, CUSTODIAN),
    ),
    ("/rkm.v1.AccessService/WhoAmI", roles(ANYONE_KNOWN)),
    ("/rkm.v1.SystemService/GetStatus", roles(STAFF)),
    // Custodians pin the audit key that signs their key records.
    ("/rkm.v1.AuditService/GetAuditKey", roles(ANYONE_KNOWN)),
    ("/rkm.v1.AuditService/GetCheckpoint", roles(STAFF)),
    ("/rkm.v1.AuditService/ListCheckpoints", roles(STAFF)),
    ("/rkm.v1.AuditService/ListEntries", roles(STAFF)),
    ("/rkm.v1.AuditService/GetInclusionProof", roles(STAFF)),
    ("/rkm.v1.AuditService/GetConsistencyProof", roles(STAFF)),
    (
        "/rkm.v1.AuditService/RecordNote",
        roles(&[Operator, Auditor]),
    ),
    ("/rkm.v1.CustodianService/EnrolCustodian", roles(&[Admin])),
    ("/rkm.v1.CustodianService/ListCustodians", roles(STAFF)),
    ("/rkm.v1.CustodianService/DisableCustodian", roles(&[Admin])),
    (
        "/rkm.v1.CustodianService/ListNotices",
        custodian_for(1, ANYONE_KNOWN),
    ),
    (
        "/rkm.v1.CustodianService/AcknowledgeNotice",
        custodian_for(2, CUSTODIAN),
    ),
    ("/rkm.v1.KeyService/CreateKey", roles(&[Operator])),
    // Key records are signed and public to those who work with them.
    (
        "/rkm.v1.KeyService/GetKey",
        about_field_1(roles(ANYONE_KNOWN)),
    ),
    ("/rkm.v1.KeyService/ListKeys", roles(ANYONE_KNOWN)),
    (
        "/rkm.v1.KeyService/FetchEnvelope",
        about_field_1(custodian_for(2, CUSTODIAN)),
    ),
    (
        "/rkm.v1.KeyService/SubmitReceipt",
        about_field_1(custodian_for(2, CUSTODIAN)),
    ),
    (
        "/rkm.v1.KeyService/AttestShare",
        about_field_1(custodian_for(2, CUSTODIAN)),
    ),
    ("/rkm.v1.KeyService/ImportKey", roles(&[Admin])),
    ("/rkm.v1.RecoveryService/OpenRecovery", roles(&[Operator])),
    // Custodians review the requests they are asked to approve, and only
    // those: field 2 (1 for the listing) names them, and the handler keeps
    // to keys they hold a share of.
    (
        "/rkm.v1.RecoveryService/GetRecovery",
        about_field_1(custodian_for(2, ANYONE_KNOWN)),
    ),
    (
        "/rkm.v1.RecoveryService/ListRecoveries",
        custodian_for(1, ANYONE_KNOWN),
    ),
    ("/rkm.v1.RecoveryService/CancelRecovery", roles(&[Operator])),
    (
        "/rkm.v1.RecoveryService/ConfirmRecovery",
        roles(&[Operator]),
    ),
    (
        "/rkm.v1.RecoveryService/GetApprovalNonce",
        about_field_1(custodian_for(2, CUSTODIAN)),
    ),
    (
        "/rkm.v1.RecoveryService/Approve",
        about_field_1(custodian_for(2, CUSTODIAN)),
    ),
    (
        "/rkm.v1.RecoveryService/CollectArtefact",
        roles(&[Operator, Auditor]),
    ),
];

/// The rule of `method` (a full gRPC path), if it has one.
pub fn rule(method: &str) -> Option<Rule> {
    RULES
        .iter()
        .find(|(path, _)| *path == method)
        .map(|(_, rule)| *rule)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn served_methods() -> Vec<String> {
        let mut methods = Vec::new();
        for set in [
            rkm_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ] {
            let set = prost_types::FileDescriptorSet::decode(set).expect("valid descriptor set");
            for file in set.file {
                for service in &file.service {
                    for method in &service.method {
                        methods.push(format!(
                            "/{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        methods
    }

    #[test]
    fn every_served_method_declares_its_rule() {
        let methods = served_methods();
        assert!(methods.len() > 25, "descriptor sets list {methods:?}");
        for method in &methods {
            assert!(
                rule(method).is_some(),
                "{method} has no rule in access::policy::RULES: declare who may call it"
            );
        }
    }

    #[test]
    fn no_rule_names_a_method_that_is_not_served() {
        let mut methods = served_methods();
        methods.push("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo".to_owned());
        methods.push("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo".to_owned());
        for (path, _) in RULES {
            assert!(methods.iter().any(|m| m == path), "{path} is not served");
        }
    }

    #[test]
    fn only_health_and_reflection_are_public() {
        for (path, rule) in RULES {
            if rule.public {
                assert!(
                    path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection."),
                    "{path} is public"
                );
            } else {
                assert!(!rule.roles.is_empty(), "{path} names no role");
            }
        }
    }

    #[test]
    fn unknown_methods_have_no_rule() {
        assert_eq!(rule("/rkm.v1.KeyService/DeleteEverything"), None);
    }
}
