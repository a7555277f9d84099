//! Secret sharing and the secrets' way to the custodians: Shamir shares of the
//! KEK, their commitments and check values, the envelopes that carry them, the
//! custodian identities that open them and the messages custodians sign.

pub mod commitment;
pub mod envelope;
pub mod identity;
pub mod kek_check;
pub mod messages;
pub mod secret;
pub mod shamir;
pub mod wrap;
