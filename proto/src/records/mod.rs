//! The signed and reviewed records: key records, custodian cards, recovery
//! requests, approvals, the commands a recovery key signs and the artefact
//! bundle that carries them.

pub mod approval;
pub mod artefact;
pub mod command;
pub mod custodian_card;
pub mod key_record;
pub mod recovery_request;
