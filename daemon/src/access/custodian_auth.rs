//! Custodians authenticate each request with their enrolled Ed25519 key:
//! the `CustodianAuth` metadata entry carries their name, a single-use
//! challenge rkmd issued, the time and a signature over
//! [`custodian_request_message`] (method, name, challenge, time, SHA-256 of
//! the request message). A challenge is spent when presented, right or
//! wrong, so a replayed request always fails; a challenge is requested with
//! the same signature and an empty challenge, whose replays within the clock
//! window are refused here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use rkm_proto::access::{
    CHALLENGE_LEN, GET_CHALLENGE_METHOD, custodian_request_message, request_digest,
};
use rkm_proto::messages::verify_custodian_signature;
use rkm_proto::v1::CustodianAuth;

use crate::store::{self, Store};

/// Why a custodian's request did not authenticate. The text goes to the
/// caller and the audit log: it names what to fix, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustodianAuthError {
    #[error("the custodian authentication entry is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "the request's time is {skew} s from rkmd's clock, more than the {allowed} s allowed: check this machine's clock"
    )]
    StaleTime { skew: u64, allowed: u64 },
    #[error(
        "the challenge is unknown, already used or expired: ask for a fresh one (rkm does this for you; a replayed request fails here)"
    )]
    Challenge,
    #[error("this challenge request was already sent once: a replay")]
    Replayed,
    #[error("no custodian of that name is enrolled")]
    UnknownCustodian,
    #[error("custodian {name:?} is disabled: {reason}")]
    Disabled { name: String, reason: String },
    #[error(
        "the signature does not verify with the custodian's enrolled key: signed with another identity, or over another request"
    )]
    BadSignature,
    #[error("rkmd could not check the custodian: its store failed")]
    Store,
}

/// Why no challenge could be issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    #[error("the system random number generator failed")]
    Rng,
    #[error("too many challenges are outstanding; try again in a minute")]
    Full,
}

#[derive(Debug)]
struct Issued {
    custodian: String,
    expires: Instant,
}

/// Most challenges outstanding per custodian; asking for more drops the
/// oldest, so a custodian's own retries never lock them out.
const PER_CUSTODIAN: usize = 16;
/// Most challenges outstanding in all.
const TOTAL: usize = 100_000;

/// Outstanding challenges and recently seen challenge requests.
#[derive(Debug)]
pub struct CustodianAuthenticator {
    store: Store,
    challenge_ttl: Duration,
    /// Largest accepted difference from rkmd's clock, in seconds.
    clock_skew: u64,
    challenges: Mutex<HashMap<[u8; CHALLENGE_LEN], Issued>>,
    challenge_requests: Mutex<HashMap<Vec<u8>, Instant>>,
}

impl CustodianAuthenticator {
    pub fn new(store: Store, challenge_ttl: Duration, clock_skew: u64) -> Self {
        Self {
            store,
            challenge_ttl,
            clock_skew,
            challenges: Mutex::new(HashMap::new()),
            challenge_requests: Mutex::new(HashMap::new()),
        }
    }

    /// Issues a challenge for `custodian` (already authenticated).
    ///
    /// # Errors
    /// The system RNG fails, or too many challenges are outstanding.
    pub fn issue(&self, custodian: &str) -> Result<([u8; CHALLENGE_LEN], SystemTime), IssueError> {
        let mut challenge = [0u8; CHALLENGE_LEN];
        getrandom::fill(&mut challenge).map_err(|_| IssueError::Rng)?;
        let now = Instant::now();
        let mut challenges = lock(&self.challenges);
        challenges.retain(|_, issued| issued.expires > now);
        let mut own: Vec<([u8; CHALLENGE_LEN], Instant)> = challenges
            .iter()
            .filter(|(_, issued)| issued.custodian == custodian)
            .map(|(c, issued)| (*c, issued.expires))
            .collect();
        if own.len() >= PER_CUSTODIAN {
            own.sort_by_key(|(_, expires)| *expires);
            for (old, _) in own.iter().take(own.len() + 1 - PER_CUSTODIAN) {
                challenges.remove(old);
            }
        }
        if challenges.len() >= TOTAL {
            return Err(IssueError::Full);
        }
        challenges.insert(
            challenge,
            Issued {
                custodian: custodian.to_owned(),
                expires: now + self.challenge_ttl,
            },
        );
        Ok((challenge, SystemTime::now() + self.challenge_ttl))
    }

    /// Checks a custodian request to `method` whose message bytes are
    /// `message`, authenticated by `auth`; returns the custodian's name.
    ///
    /// # Errors
    /// Any check fails; see [`CustodianAuthError`].
    pub async fn authenticate(
        &self,
        method: &str,
        auth: &CustodianAuth,
        message: &[u8],
    ) -> Result<String, CustodianAuthError> {
        if auth.custodian.is_empty() || auth.custodian.len() > 256 {
            return Err(CustodianAuthError::Malformed(
                "the custodian name is empty or too long",
            ));
        }
        if auth.signature.len() != 64 {
            return Err(CustodianAuthError::Malformed(
                "the signature is not 64 bytes",
            ));
        }
        self.check_time(auth.unix_time)?;
        if method == GET_CHALLENGE_METHOD {
            if !auth.challenge.is_empty() {
                return Err(CustodianAuthError::Malformed(
                    "a challenge request carries no challenge",
                ));
            }
        } else {
            self.spend_challenge(&auth.challenge, &auth.custodian)?;
        }
        let name = auth.custodian.clone();
        let custodian = self
            .store
            .read(move |tx| store::custodians::load(tx, &name))
            .await
            .map_err(|error| {
                tracing::error!(%error, "loading a custodian to authenticate");
                CustodianAuthError::Store
            })?
            .ok_or(CustodianAuthError::UnknownCustodian)?;
        let signed = custodian_request_message(
            method,
            &auth.custodian,
            &auth.challenge,
            auth.unix_time,
            &request_digest(message),
        );
        verify_custodian_signature(&custodian.ed25519_public_key, &signed, &auth.signature)
            .map_err(|_| CustodianAuthError::BadSignature)?;
        // A disabled custodian still gets a challenge: the request it is
        // for is then refused, and audited under the ceremony or key it
        // concerned.
        if !custodian.enabled && method != GET_CHALLENGE_METHOD {
            return Err(CustodianAuthError::Disabled {
                name: custodian.name,
                reason: custodian.disabled_reason,
            });
        }
        if method == GET_CHALLENGE_METHOD {
            self.remember_challenge_request(&auth.signature)?;
        }
        Ok(custodian.name)
    }

    fn check_time(&self, unix_time: u64) -> Result<(), CustodianAuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let skew = now.abs_diff(unix_time);
        if skew > self.clock_skew {
            return Err(CustodianAuthError::StaleTime {
                skew,
                allowed: self.clock_skew,
            });
        }
        Ok(())
    }

    fn spend_challenge(&self, challenge: &[u8], custodian: &str) -> Result<(), CustodianAuthError> {
        let challenge: [u8; CHALLENGE_LEN] = challenge
            .try_into()
            .map_err(|_| CustodianAuthError::Challenge)?;
        let issued = lock(&self.challenges)
            .remove(&challenge)
            .ok_or(CustodianAuthError::Challenge)?;
        if issued.custodian != custodian || issued.expires <= Instant::now() {
            return Err(CustodianAuthError::Challenge);
        }
        Ok(())
    }

    fn remember_challenge_request(&self, signature: &[u8]) -> Result<(), CustodianAuthError> {
        let now = Instant::now();
        // A signature older than twice the skew fails the time check anyway.
        let keep = Duration::from_secs(self.clock_skew.saturating_mul(2).max(1));
        let mut seen = lock(&self.challenge_requests);
        if seen.len() >= TOTAL {
            seen.retain(|_, at| now.duration_since(*at) < keep);
        }
        if seen.insert(signature.to_vec(), now).is_some() {
            return Err(CustodianAuthError::Replayed);
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Decodes the metadata entry's bytes.
///
/// # Errors
/// The bytes are not a `CustodianAuth` message.
pub fn decode_auth(bytes: &[u8]) -> Result<CustodianAuth, CustodianAuthError> {
    CustodianAuth::decode(bytes)
        .map_err(|_| CustodianAuthError::Malformed("it does not decode as CustodianAuth"))
}

/// The string in field `number` of the protobuf `message` ('' if absent:
/// proto3 omits empty strings), without knowing the message type.
///
/// # Errors
/// The message is malformed, or the field is not valid UTF-8 text.
pub fn string_field(message: &[u8], number: u32) -> Result<String, CustodianAuthError> {
    let malformed = || CustodianAuthError::Malformed("the request message is malformed");
    let mut found = String::new();
    for field in rkm_proto::access::limits::wire_fields(message) {
        let (tag, wire_type, value) = field.map_err(|()| malformed())?;
        if tag == number && wire_type == prost::encoding::WireType::LengthDelimited {
            // The last occurrence wins, as protobuf decoders do.
            found = std::str::from_utf8(value)
                .map_err(|_| malformed())?
                .to_owned();
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use rkm_proto::v1::ApproveRequest;

    use super::*;

    #[test]
    fn string_field_reads_what_prost_wrote() {
        let request = ApproveRequest {
            ceremony_id: "c-1".into(),
            custodian: "alice".into(),
            nonce: vec![1, 2, 3],
            signature: vec![9; 64],
            ..Default::default()
        };
        let bytes = request.encode_to_vec();
        assert_eq!(string_field(&bytes, 2).unwrap(), "alice");
        assert_eq!(string_field(&bytes, 1).unwrap(), "c-1");
        assert_eq!(string_field(&bytes, 7).unwrap(), "");
        assert!(string_field(&bytes[..bytes.len() - 1], 2).is_err());
        // A repeated field: the last value is the one a decoder keeps.
        let mut twice = bytes.clone();
        twice.extend(
            ApproveRequest {
                custodian: "bob".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        assert_eq!(string_field(&twice, 2).unwrap(), "bob");
        assert_eq!(
            ApproveRequest::decode(twice.as_slice()).unwrap().custodian,
            "bob"
        );
    }
}
