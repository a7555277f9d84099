//! Which certificates and local users hold which roles, from the `[access]`
//! settings. An entry is `cn:NAME` (a certificate whose subject common name
//! is NAME, vouched for by the configured CA), `sha256:HEX` (one certificate,
//! pinned by the SHA-256 of its DER), or `uid:N` (a local user on the
//! socket). When no `uid:` entry is configured, rkmd's own user holds every
//! staff role on the socket: that user can read the PIN file and database
//! anyway, and local administration keeps working out of the box.

use std::collections::BTreeSet;

use super::{PresentedCertificate, Role};

/// One configured principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    CommonName(String),
    Fingerprint(String),
    Uid(u32),
}

/// A malformed `[access]` entry.
#[derive(Debug, thiserror::Error)]
#[error(
    "access.{role} entry {entry:?} is not a principal: write cn:NAME (certificate common name), sha256:HEX (certificate fingerprint) or uid:N (local user)"
)]
pub struct PrincipalError {
    pub role: &'static str,
    pub entry: String,
}

impl Principal {
    /// Parses one entry of the `access.ROLE` list.
    ///
    /// # Errors
    /// The entry has none of the three forms.
    pub fn parse(role: Role, entry: &str) -> Result<Self, PrincipalError> {
        let error = || PrincipalError {
            role: role.name(),
            entry: entry.to_owned(),
        };
        if let Some(name) = entry.strip_prefix("cn:") {
            if name.is_empty() {
                return Err(error());
            }
            return Ok(Principal::CommonName(name.to_owned()));
        }
        if let Some(hex) = entry.strip_prefix("sha256:") {
            let hex = hex.to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(error());
            }
            return Ok(Principal::Fingerprint(format!("sha256:{hex}")));
        }
        if let Some(uid) = entry.strip_prefix("uid:") {
            return uid.parse().map(Principal::Uid).map_err(|_| error());
        }
        Err(error())
    }
}

/// The role assignments in force.
#[derive(Debug, Clone)]
pub struct RoleMap {
    grants: Vec<(Principal, Role)>,
}

impl RoleMap {
    /// From the `access.admin`, `access.operator` and `access.auditor` lists;
    /// `own_uid` is rkmd's user, who holds the staff roles when no uid is
    /// listed — but not operator when `own_uid_may_operate` is false (the
    /// two-person rule: a local user and a certificate would count as two
    /// operators even when one person holds both).
    ///
    /// # Errors
    /// An entry is malformed.
    pub fn from_settings(
        lists: [(Role, &[String]); 3],
        own_uid: u32,
        own_uid_may_operate: bool,
    ) -> Result<Self, PrincipalError> {
        let mut grants = Vec::new();
        for (role, entries) in lists {
            for entry in entries {
                grants.push((Principal::parse(role, entry)?, role));
            }
        }
        if !grants.iter().any(|(p, _)| matches!(p, Principal::Uid(_))) {
            for role in [Role::Admin, Role::Operator, Role::Auditor] {
                if role != Role::Operator || own_uid_may_operate {
                    grants.push((Principal::Uid(own_uid), role));
                }
            }
        }
        Ok(Self { grants })
    }

    /// Roles of a verified certificate.
    pub fn certificate_roles(&self, certificate: &PresentedCertificate) -> Vec<Role> {
        self.collect(|principal| match principal {
            Principal::CommonName(name) => {
                !certificate.common_name.is_empty() && *name == certificate.common_name
            }
            Principal::Fingerprint(fingerprint) => *fingerprint == certificate.fingerprint,
            Principal::Uid(_) => false,
        })
    }

    /// Roles of a local user.
    pub fn uid_roles(&self, uid: u32) -> Vec<Role> {
        self.collect(|principal| *principal == Principal::Uid(uid))
    }

    fn collect(&self, matches: impl Fn(&Principal) -> bool) -> Vec<Role> {
        let roles: BTreeSet<Role> = self
            .grants
            .iter()
            .filter(|(principal, _)| matches(principal))
            .map(|(_, role)| *role)
            .collect();
        roles.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(cn: &str, fingerprint: &str) -> PresentedCertificate {
        PresentedCertificate {
            subject: format!("CN={cn}"),
            common_name: cn.to_owned(),
            fingerprint: fingerprint.to_owned(),
        }
    }

    #[test]
    fn own_uid_holds_staff_roles_only_when_no_uid_is_listed() {
        let none: Vec<String> = Vec::new();
        let map = RoleMap::from_settings(
            [
                (Role::Admin, &none),
                (Role::Operator, &none),
                (Role::Auditor, &none),
            ],
            1000,
            true,
        )
        .unwrap();
        assert_eq!(
            map.uid_roles(1000),
            vec![Role::Admin, Role::Operator, Role::Auditor]
        );
        assert!(map.uid_roles(1001).is_empty());

        // Under the two-person rule rkmd's own user is not an operator.
        let map = RoleMap::from_settings(
            [
                (Role::Admin, &none),
                (Role::Operator, &none),
                (Role::Auditor, &none),
            ],
            1000,
            false,
        )
        .unwrap();
        assert_eq!(map.uid_roles(1000), vec![Role::Admin, Role::Auditor]);

        let operators = vec!["uid:1001".to_owned()];
        let map = RoleMap::from_settings(
            [
                (Role::Admin, &none),
                (Role::Operator, &operators),
                (Role::Auditor, &none),
            ],
            1000,
            true,
        )
        .unwrap();
        assert!(map.uid_roles(1000).is_empty());
        assert_eq!(map.uid_roles(1001), vec![Role::Operator]);
    }

    #[test]
    fn certificates_match_by_common_name_or_fingerprint() {
        let fp = format!("sha256:{}", "ab".repeat(32));
        let operators = vec!["cn:alice".to_owned()];
        let auditors = vec![format!("sha256:{}", "AB".repeat(32))];
        let none: Vec<String> = Vec::new();
        let map = RoleMap::from_settings(
            [
                (Role::Admin, &none),
                (Role::Operator, &operators),
                (Role::Auditor, &auditors),
            ],
            0,
            true,
        )
        .unwrap();
        assert_eq!(
            map.certificate_roles(&certificate("alice", "sha256:00")),
            vec![Role::Operator]
        );
        assert_eq!(
            map.certificate_roles(&certificate("bob", &fp)),
            vec![Role::Auditor]
        );
        assert!(
            map.certificate_roles(&certificate("", "sha256:00"))
                .is_empty()
        );
        assert!(
            map.certificate_roles(&certificate("mallory", "sha256:00"))
                .is_empty()
        );
    }

    #[test]
    fn malformed_entries_are_refused_with_the_forms() {
        for entry in ["alice", "cn:", "sha256:12", "uid:x", "CN=alice"] {
            let error = Principal::parse(Role::Operator, entry)
                .unwrap_err()
                .to_string();
            assert!(error.contains("cn:NAME"), "{error}");
            assert!(error.contains("access.operator"), "{error}");
        }
    }
}
