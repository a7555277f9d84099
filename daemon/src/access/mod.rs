//! Who may do what. Every RPC declares the roles it needs in [`policy`]; one
//! tower layer ([`layer`]) names the caller and enforces the rule before any
//! handler runs, and audits every refusal with the caller's real identity.
//!
//! Callers are named three ways: a client certificate from the configured
//! CA on the TLS listener ([`tls`]), the peer's uid on the Unix socket
//! ([`peer`]), or a custodian's signature over the request with their
//! enrolled Ed25519 key ([`custodian_auth`]). Roles come from configuration
//! ([`roles`]), never from the caller. Repeated failures are slowed, then
//! refused for a while ([`guard`]).

pub mod bounds;
pub mod custodian_auth;
pub mod guard;
pub mod layer;
pub mod peer;
pub mod policy;
pub mod roles;
pub mod settings;
pub mod tls;

use std::fmt;

/// What a caller may be trusted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Enrols and disables custodians, imports keys (restores).
    Admin,
    /// Runs ceremonies: creates keys, opens, confirms and cancels
    /// recoveries and drills, collects artefacts, writes notes.
    Operator,
    /// Reads: the audit log and its proofs, keys, ceremonies, custodians.
    Auditor,
    /// An enrolled, enabled custodian acting for themself.
    Custodian,
}

impl Role {
    /// Every role, in the order they are shown.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Auditor, Role::Custodian];

    /// The role's name in settings and messages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Custodian => "custodian",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A client certificate that passed TLS verification against the
/// configured trust anchors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedCertificate {
    /// RFC 4514 subject, e.g. `CN=rkm-operator`.
    pub subject: String,
    /// The subject's common name ('' if none).
    pub common_name: String,
    /// `sha256:<hex of the certificate DER>`.
    pub fingerprint: String,
}

/// Who is calling, as far as rkmd could establish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Holder of a verified client certificate.
    Certificate(PresentedCertificate),
    /// A custodian whose signature over the request verified.
    Custodian { name: String },
    /// A process on the Unix socket, by its uid.
    LocalUser { uid: u32 },
    /// Nobody established: no certificate, no signature, no peer uid.
    Anonymous,
}

impl Identity {
    /// How audit entries name this caller.
    pub fn actor(&self) -> String {
        match self {
            Identity::Certificate(certificate) => {
                format!("cert:{} {}", certificate.subject, certificate.fingerprint)
            }
            Identity::Custodian { name } => format!("custodian:{name}"),
            Identity::LocalUser { uid } => format!("local:uid={uid}"),
            Identity::Anonymous => "anonymous".to_owned(),
        }
    }
}

/// The caller of one request: who, from where, holding which roles. The
/// access layer puts it in the request's extensions for the handlers.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    /// `tcp:ADDR` or `socket`.
    pub peer: String,
    pub roles: Vec<Role>,
}

impl Caller {
    /// How audit entries name the caller.
    pub fn actor(&self) -> String {
        self.identity.actor()
    }

    /// The custodian this caller authenticated as, if any.
    pub fn custodian(&self) -> Option<&str> {
        match &self.identity {
            Identity::Custodian { name } => Some(name),
            _ => None,
        }
    }

    /// Whether the caller holds `role`.
    pub fn holds(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}
