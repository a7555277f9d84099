//! One module per subcommand; the doc comment of each argument struct is its
//! help text.

pub mod artefact;
pub mod audit;
pub mod custodian;
pub mod drill;
pub mod key;
pub mod notice;
pub mod recovery;
pub mod share;
pub mod status;
