//! Shamir k-of-n sharing of the KEK over GF(256): the one module that touches
//! `vsss-rs`, and the rules around it that `vsss-rs` does not enforce.
//!
//! # Why `vsss-rs` and never `sharks`
//!
//! `sharks` draws polynomial coefficients from 1..=255 instead of 0..=255
//! (RUSTSEC-2024-0398, no fixed release). Each share of a re-split secret then
//! leaks a little: a key re-split some 500–1,500 times becomes recoverable
//! from sub-threshold shares (reproduced for this project after 1,334
//! re-splits). `vsss-rs` 6.0.1 draws coefficients uniformly over the whole
//! field, uses table- and branch-free GF(256) arithmetic, and rejects x = 0,
//! duplicate x and unequal share lengths with typed errors. It is pinned to
//! `=6.0.1` and only `Gf256::split_bytes` / `Gf256::combine_bytes` are used.
//! (`blahaj` is the fallback: the `sharks` code with the bias fixed, but
//! table-based, so not constant-time, and it accepts x = 0 and duplicate x.)
//!
//! # What this wrapper adds
//!
//! - `combine_bytes` takes no threshold: fewer shares give a *wrong* secret,
//!   not an error. [`combine`] takes k and refuses any other number of shares.
//! - 2 ≤ k ≤ n ≤ 255 ([`Threshold`]); k = 1 only when asked for explicitly.
//! - After [`split`], K-subsets are recombined (all of them while there are at
//!   most [`SELF_CHECK_SUBSETS`]) before any share is returned.
//! - `vsss-rs` wipes neither its polynomial nor its output buffers: every
//!   `Vec<u8>` that held share or secret bytes here is zeroized, and results
//!   are copied into zeroizing [`Kek`] / [`Share`] values. The polynomial and
//!   the few stack temporaries inside `vsss-rs` itself cannot be reached from
//!   here and are not wiped.
//! - [`combine_verified`] checks every share against its commitment first and
//!   the KEK check value after, as the recovery ceremony requires.

use std::collections::HashSet;

use chacha20::ChaCha20Rng;
use rand_core::{CryptoRng, Rng, SeedableRng};
use subtle::ConstantTimeEq;
use vsss_rs::Gf256;
use zeroize::Zeroizing;

use crate::sharing::commitment::{COMMITMENT_LEN, commitment_matches};
use crate::sharing::kek_check::{KEK_CHECK_LEN, kek_matches};
use crate::sharing::secret::{Kek, SECRET_LEN, Share};

/// Length of the shared secret (the KEK) and of each share's y value.
pub const KEK_LEN: usize = SECRET_LEN;

/// Most K-subsets recombined by the self-check after [`split`].
pub const SELF_CHECK_SUBSETS: usize = 1000;

/// Why sharing or combining was refused. Never carries secret bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShamirError {
    /// k or n out of range.
    #[error("invalid threshold {k}-of-{n}: {reason}")]
    InvalidThreshold {
        /// Shares needed.
        k: u8,
        /// Shares made (for [`combine`]: shares given, at most 255).
        n: u8,
        /// What is wrong.
        reason: &'static str,
    },
    /// [`combine`] was given a number of shares other than k.
    #[error("expected exactly {expected} shares, got {found}")]
    WrongShareCount {
        /// k.
        expected: usize,
        /// Shares given.
        found: usize,
    },
    /// Two shares have the same x-coordinate.
    #[error("two shares have x-coordinate {x}; each custodian's share has its own x")]
    DuplicateX {
        /// The repeated x.
        x: u8,
    },
    /// A share has x = 0.
    #[error("a share has x-coordinate 0; shares have x in 1..=255")]
    ZeroX,
    /// Recombining K-subsets after splitting did not give the secret back;
    /// no share was returned.
    #[error(
        "shares failed the self-check after splitting: a K-subset did not recombine to the KEK; no share was handed out, run the ceremony again"
    )]
    SelfCheckFailed,
    /// Shares did not match their commitments in the key record
    /// ([`combine_verified`]); nothing was combined.
    #[error(
        "shares with x-coordinate {xs:?} do not match their commitments in the key record; ask those custodians to check their share"
    )]
    CommitmentMismatch {
        /// x-coordinates of the shares that did not match.
        xs: Vec<u8>,
    },
    /// The combined KEK does not have the key record's KEK check value.
    #[error("the combined shares do not give the KEK of this key record (KEK check value differs)")]
    KekCheckMismatch,
    /// `vsss-rs` refused the input or returned something unexpected.
    #[error("Shamir backend error: {0}")]
    Backend(String),
}

/// A k-of-n threshold: k shares out of n recover the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    k: u8,
    n: u8,
}

impl Threshold {
    /// 2 ≤ k ≤ n ≤ 255.
    ///
    /// # Errors
    ///
    /// [`ShamirError::InvalidThreshold`] otherwise.
    pub fn new(k: u8, n: u8) -> Result<Self, ShamirError> {
        if k < 2 {
            return Err(ShamirError::InvalidThreshold {
                k,
                n,
                reason: "k must be at least 2, so that no single custodian holds the key (k = 1 needs explicit permission)",
            });
        }
        Threshold::new_allowing_single(k, n)
    }

    /// 1 ≤ k ≤ n ≤ 255: k = 1 gives every custodian a copy of the KEK.
    ///
    /// # Errors
    ///
    /// [`ShamirError::InvalidThreshold`] otherwise.
    ///
    /// # Security
    ///
    /// With k = 1 each share *is* the KEK; use it only where one person may
    /// hold the recovery key alone.
    pub fn new_allowing_single(k: u8, n: u8) -> Result<Self, ShamirError> {
        let reason = if k == 0 {
            "k must be at least 1"
        } else if k > n {
            "k must not exceed the number of custodians n"
        } else {
            return Ok(Threshold { k, n });
        };
        Err(ShamirError::InvalidThreshold { k, n, reason })
    }

    /// Shares needed.
    pub fn k(&self) -> u8 {
        self.k
    }

    /// Shares made.
    pub fn n(&self) -> u8 {
        self.n
    }
}

/// A ChaCha20 CSPRNG seeded with `seed` (the daemon draws the seed from the
/// HSM's RNG). Its state and output buffer are wiped on drop.
pub fn rng_from_seed(seed: &[u8; 32]) -> impl CryptoRng {
    ChaCha20Rng::from_seed(*seed)
}

/// Splits `kek` into `threshold.n()` shares with x = 1..=n in order, any
/// `threshold.k()` of which recover it. Coefficients come from a ChaCha20 RNG
/// seeded with `seed`, so the same inputs give the same shares.
///
/// Before returning, recombines K-subsets (all of them when there are at most
/// [`SELF_CHECK_SUBSETS`], else every "rotation" window so each share takes
/// part, then distinct random subsets up to that many) and checks each gives
/// `kek` back.
///
/// # Errors
///
/// [`ShamirError::SelfCheckFailed`] if a subset does not recombine (no share
/// is returned), [`ShamirError::Backend`] if `vsss-rs` fails.
///
/// # Security
///
/// `seed` must be fresh randomness used once: anyone who knows it and one
/// share can recompute every share. All intermediate buffers are wiped.
pub fn split(kek: &Kek, threshold: Threshold, seed: &[u8; 32]) -> Result<Vec<Share>, ShamirError> {
    let (k, n) = (threshold.k, threshold.n);
    let mut rng = ChaCha20Rng::from_seed(*seed);
    let shares = if k == 1 {
        (1..=n)
            .map(|x| Share::new(x, kek.expose_secret()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ShamirError::Backend(e.to_string()))?
    } else {
        let raw = Zeroizing::new(
            Gf256::split_bytes(
                usize::from(k),
                usize::from(n),
                kek.expose_secret(),
                &mut rng,
            )
            .map_err(|e| ShamirError::Backend(e.to_string()))?,
        );
        if raw.len() != usize::from(n) {
            return Err(ShamirError::Backend(format!(
                "split returned {} shares, expected {n}",
                raw.len()
            )));
        }
        let mut shares = Vec::with_capacity(raw.len());
        for (index, bytes) in raw.iter().enumerate() {
            let expected_x = index + 1;
            if bytes.len() != 1 + KEK_LEN || usize::from(bytes[0]) != expected_x {
                return Err(ShamirError::Backend(format!(
                    "split returned a malformed share at position {expected_x}"
                )));
            }
            shares.push(
                Share::try_from_slice(bytes[0], &bytes[1..])
                    .map_err(|e| ShamirError::Backend(e.to_string()))?,
            );
        }
        shares
    };
    self_check(kek, &shares, k, &mut rng)?;
    Ok(shares)
}

/// Recombines exactly `k` shares into the KEK.
///
/// # Errors
///
/// [`ShamirError::InvalidThreshold`] for k = 0,
/// [`ShamirError::WrongShareCount`] unless exactly k shares are given,
/// [`ShamirError::ZeroX`], [`ShamirError::DuplicateX`] and
/// [`ShamirError::Backend`].
///
/// # Security
///
/// Shares that are not from one split (or fewer than the split's k) give a
/// wrong KEK, not an error: compare the result with the key record's KEK check
/// value, or use [`combine_verified`]. Buffers handed to `vsss-rs` are wiped.
pub fn combine(shares: &[Share], k: u8) -> Result<Kek, ShamirError> {
    let refs: Vec<&Share> = shares.iter().collect();
    combine_refs(&refs, k)
}

/// One submitted share with the salt its custodian holds and the commitment
/// the key record holds for its x.
#[derive(Debug, Clone, Copy)]
pub struct CommittedShare<'a> {
    /// The share.
    pub share: &'a Share,
    /// The per-share salt, from the custodian's envelope.
    pub salt: &'a [u8; COMMITMENT_LEN],
    /// The commitment recorded for this x in the key record.
    pub commitment: &'a [u8; COMMITMENT_LEN],
}

/// The recovery path: checks each share against its commitment (naming every
/// x that fails, before anything is combined), combines exactly `k` of them
/// and checks the result against the key record's KEK check value.
///
/// # Errors
///
/// [`ShamirError::CommitmentMismatch`], [`ShamirError::KekCheckMismatch`],
/// and every error of [`combine`].
pub fn combine_verified(
    key_id: &str,
    shares: &[CommittedShare<'_>],
    k: u8,
    kek_check_value: &[u8; KEK_CHECK_LEN],
) -> Result<Kek, ShamirError> {
    check_count_and_x(shares.iter().map(|c| c.share), shares.len(), k)?;
    let bad: Vec<u8> = shares
        .iter()
        .filter(|c| !commitment_matches(key_id, c.share, c.salt, c.commitment))
        .map(|c| c.share.x())
        .collect();
    if !bad.is_empty() {
        return Err(ShamirError::CommitmentMismatch { xs: bad });
    }
    let refs: Vec<&Share> = shares.iter().map(|c| c.share).collect();
    let kek = combine_refs(&refs, k)?;
    if !kek_matches(&kek, kek_check_value) {
        return Err(ShamirError::KekCheckMismatch);
    }
    Ok(kek)
}

fn check_count_and_x<'a>(
    shares: impl Iterator<Item = &'a Share>,
    count: usize,
    k: u8,
) -> Result<(), ShamirError> {
    if k == 0 {
        return Err(ShamirError::InvalidThreshold {
            k,
            n: u8::try_from(count).unwrap_or(u8::MAX),
            reason: "k must be at least 1",
        });
    }
    if count != usize::from(k) {
        return Err(ShamirError::WrongShareCount {
            expected: usize::from(k),
            found: count,
        });
    }
    let mut seen = [false; 256];
    for share in shares {
        let x = share.x();
        if x == 0 {
            return Err(ShamirError::ZeroX);
        }
        if std::mem::replace(&mut seen[usize::from(x)], true) {
            return Err(ShamirError::DuplicateX { x });
        }
    }
    Ok(())
}

fn combine_refs(shares: &[&Share], k: u8) -> Result<Kek, ShamirError> {
    check_count_and_x(shares.iter().copied(), shares.len(), k)?;
    if k == 1 {
        return Ok(Kek::from_bytes(shares[0].expose_y()));
    }
    let mut raw: Zeroizing<Vec<Vec<u8>>> = Zeroizing::new(Vec::with_capacity(shares.len()));
    for share in shares {
        let mut bytes = Vec::with_capacity(1 + KEK_LEN);
        bytes.push(share.x());
        bytes.extend_from_slice(share.expose_y());
        raw.push(bytes);
    }
    let secret = Zeroizing::new(
        Gf256::combine_bytes(raw.as_slice()).map_err(|e| ShamirError::Backend(e.to_string()))?,
    );
    Kek::try_from_slice(&secret).map_err(|_| {
        ShamirError::Backend(format!(
            "combine returned {} bytes, expected {KEK_LEN}",
            secret.len()
        ))
    })
}

/// Number of k-subsets of n, or `None` when it exceeds `limit`.
fn binomial_up_to(n: usize, k: usize, limit: usize) -> Option<usize> {
    let k = k.min(n - k);
    let mut c: u128 = 1;
    for i in 0..k {
        // C(n, i+1) = C(n, i) * (n - i) / (i + 1), exact at every step.
        c = c * (n - i) as u128 / (i + 1) as u128;
        if c > limit as u128 {
            return None;
        }
    }
    Some(c as usize)
}

/// Every k-subset of 0..n in lexicographic order.
fn all_subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut current: Vec<usize> = (0..k).collect();
    loop {
        out.push(current.clone());
        // Find the rightmost index that can still move right.
        let Some(i) = (0..k).rev().find(|&i| current[i] < n - k + i) else {
            return out;
        };
        current[i] += 1;
        for j in i + 1..k {
            current[j] = current[j - 1] + 1;
        }
    }
}

/// Up to `limit` distinct k-subsets of 0..n: first the n rotation windows, so
/// every share takes part, then random ones.
fn sampled_subsets(n: usize, k: usize, limit: usize, rng: &mut impl Rng) -> Vec<Vec<usize>> {
    let mut seen: HashSet<Vec<usize>> = HashSet::new();
    let mut out = Vec::with_capacity(limit);
    for start in 0..n {
        let mut subset: Vec<usize> = (0..k).map(|i| (start + i) % n).collect();
        subset.sort_unstable();
        if seen.insert(subset.clone()) {
            out.push(subset);
        }
    }
    let mut indices: Vec<usize> = (0..n).collect();
    let mut attempts = 0;
    while out.len() < limit && attempts < limit * 20 {
        attempts += 1;
        // Partial Fisher-Yates; the slight modulo bias does not matter for
        // picking which subsets to test.
        for i in 0..k {
            let j = i + (rng.next_u32() as usize) % (n - i);
            indices.swap(i, j);
        }
        let mut subset = indices[..k].to_vec();
        subset.sort_unstable();
        if seen.insert(subset.clone()) {
            out.push(subset);
        }
    }
    out.truncate(limit);
    out
}

fn self_check(kek: &Kek, shares: &[Share], k: u8, rng: &mut impl Rng) -> Result<(), ShamirError> {
    let (n, k_usize) = (shares.len(), usize::from(k));
    let subsets = match binomial_up_to(n, k_usize, SELF_CHECK_SUBSETS) {
        Some(_) => all_subsets(n, k_usize),
        None => sampled_subsets(n, k_usize, SELF_CHECK_SUBSETS, rng),
    };
    for subset in subsets {
        let chosen: Vec<&Share> = subset.iter().map(|&i| &shares[i]).collect();
        let recombined = combine_refs(&chosen, k).map_err(|_| ShamirError::SelfCheckFailed)?;
        if !bool::from(recombined.expose_secret().ct_eq(kek.expose_secret())) {
            return Err(ShamirError::SelfCheckFailed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_counts_and_caps() {
        assert_eq!(binomial_up_to(5, 3, 1000), Some(10));
        assert_eq!(binomial_up_to(5, 5, 1000), Some(1));
        assert_eq!(binomial_up_to(14, 7, 5000), Some(3432));
        assert_eq!(binomial_up_to(14, 7, 1000), None);
        assert_eq!(binomial_up_to(255, 128, 1000), None);
        assert_eq!(binomial_up_to(255, 1, 1000), Some(255));
    }

    #[test]
    fn all_subsets_enumerates_every_combination_once() {
        let subsets = all_subsets(6, 3);
        assert_eq!(subsets.len(), 20);
        let distinct: HashSet<_> = subsets.iter().cloned().collect();
        assert_eq!(distinct.len(), 20);
        assert!(subsets.iter().all(|s| s.windows(2).all(|w| w[0] < w[1])));
        assert_eq!(all_subsets(4, 4), vec![vec![0, 1, 2, 3]]);
    }

    #[test]
    fn sampled_subsets_are_distinct_and_cover_every_share() {
        let mut rng = ChaCha20Rng::from_seed([7; 32]);
        let subsets = sampled_subsets(40, 20, SELF_CHECK_SUBSETS, &mut rng);
        assert_eq!(subsets.len(), SELF_CHECK_SUBSETS);
        let distinct: HashSet<_> = subsets.iter().cloned().collect();
        assert_eq!(distinct.len(), SELF_CHECK_SUBSETS);
        for share in 0..40 {
            assert!(subsets.iter().any(|s| s.contains(&share)));
        }
    }

    #[test]
    fn self_check_detects_a_corrupted_share() {
        let kek = Kek::from_bytes(&[3; 32]);
        let mut shares = split(&kek, Threshold::new(2, 3).unwrap(), &[1; 32]).unwrap();
        let mut y = *shares[1].expose_y();
        y[0] ^= 1;
        shares[1] = Share::new(2, &y).unwrap();
        let mut rng = ChaCha20Rng::from_seed([0; 32]);
        assert_eq!(
            self_check(&kek, &shares, 2, &mut rng),
            Err(ShamirError::SelfCheckFailed)
        );
    }
}
