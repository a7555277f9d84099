//! Property tests of the Shamir wrapper over random KEKs, seeds and
//! thresholds: every k-subset recovers the KEK, no (k−1)-subset yields the
//! KEK check value, malformed input is an error and never a panic, and the
//! coefficients are unbiased (the RUSTSEC-2024-0398 regression).

mod common;

use std::collections::HashSet;

use proptest::prelude::*;
use rkm_proto::commitment::share_commitment;
use rkm_proto::kek_check::{kek_check_value, kek_matches};
use rkm_proto::secret::{Kek, SecretError, Share};
use rkm_proto::shamir::{
    CommittedShare, KEK_LEN, ShamirError, Threshold, combine, combine_verified, split,
};

/// Every `size`-subset of 0..n, as index lists.
fn subsets(n: usize, size: usize) -> Vec<Vec<usize>> {
    (0u32..(1 << n))
        .filter(|mask| mask.count_ones() as usize == size)
        .map(|mask| (0..n).filter(|i| mask & (1 << i) != 0).collect())
        .collect()
}

/// Copies of the chosen shares (shares have no Clone, by design).
fn pick(shares: &[Share], indices: &[usize]) -> Vec<Share> {
    indices
        .iter()
        .map(|&i| Share::new(shares[i].x(), shares[i].expose_y()).unwrap())
        .collect()
}

/// (k, n) with 2 ≤ k ≤ n ≤ 7, so all subsets can be tried.
fn small_threshold() -> impl Strategy<Value = (u8, u8)> {
    (2u8..=7).prop_flat_map(|n| (2u8..=n, Just(n)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn split_then_every_k_subset_recovers_the_kek(
        kek in any::<[u8; KEK_LEN]>(),
        seed in any::<[u8; 32]>(),
        (k, n) in small_threshold(),
    ) {
        let kek = Kek::from_bytes(&kek);
        let shares = split(&kek, Threshold::new(k, n).unwrap(), &seed).unwrap();
        prop_assert_eq!(shares.len(), usize::from(n));
        let xs: Vec<u8> = shares.iter().map(Share::x).collect();
        prop_assert_eq!(xs, (1..=n).collect::<Vec<u8>>());
        for subset in subsets(usize::from(n), usize::from(k)) {
            let mut chosen = pick(&shares, &subset);
            let recovered = combine(&chosen, k).unwrap();
            prop_assert_eq!(recovered.expose_secret(), kek.expose_secret());
            // Order does not matter.
            chosen.reverse();
            let again = combine(&chosen, k).unwrap();
            prop_assert_eq!(again.expose_secret(), kek.expose_secret());
        }
    }

    #[test]
    fn split_below_threshold_never_yields_the_kek_check_value(
        kek in any::<[u8; KEK_LEN]>(),
        seed in any::<[u8; 32]>(),
        (k, n) in small_threshold(),
    ) {
        let kek = Kek::from_bytes(&kek);
        let check = kek_check_value(&kek);
        let shares = split(&kek, Threshold::new(k, n).unwrap(), &seed).unwrap();
        for subset in subsets(usize::from(n), usize::from(k - 1)) {
            let chosen = pick(&shares, &subset);
            let wrong = combine(&chosen, k - 1).unwrap();
            prop_assert!(!kek_matches(&wrong, &check));
            prop_assert_ne!(wrong.expose_secret(), kek.expose_secret());
            // And k−1 shares are refused outright when k is given.
            prop_assert_eq!(
                combine(&chosen, k).unwrap_err(),
                ShamirError::WrongShareCount { expected: usize::from(k), found: usize::from(k - 1) }
            );
        }
    }

    #[test]
    fn combine_on_arbitrary_input_errs_or_returns_never_panics(
        raw in prop::collection::vec((0u8..6, prop::collection::vec(any::<u8>(), 30..34)), 0..8),
        k in 0u8..=8,
    ) {
        let mut shares = Vec::new();
        for (x, y) in &raw {
            match Share::try_from_slice(*x, y) {
                Ok(share) => shares.push(share),
                Err(SecretError::ZeroX) => prop_assert_eq!(*x, 0),
                Err(SecretError::WrongLength { expected, found }) => {
                    prop_assert_eq!((expected, found), (KEK_LEN, y.len()));
                }
            }
        }
        let distinct: HashSet<u8> = shares.iter().map(Share::x).collect();
        match combine(&shares, k) {
            Ok(_) => {
                prop_assert_eq!(shares.len(), usize::from(k));
                prop_assert_eq!(distinct.len(), shares.len());
            }
            Err(ShamirError::InvalidThreshold { .. }) => prop_assert_eq!(k, 0),
            Err(ShamirError::WrongShareCount { expected, found }) => {
                prop_assert_eq!((expected, found), (usize::from(k), shares.len()));
            }
            Err(ShamirError::DuplicateX { x }) => {
                prop_assert!(distinct.len() < shares.len());
                prop_assert!(shares.iter().filter(|s| s.x() == x).count() >= 2);
            }
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    #[test]
    fn threshold_accepts_exactly_the_valid_range(k in any::<u8>(), n in any::<u8>()) {
        prop_assert_eq!(Threshold::new(k, n).is_ok(), 2 <= k && k <= n);
        prop_assert_eq!(Threshold::new_allowing_single(k, n).is_ok(), 1 <= k && k <= n);
        if let Ok(t) = Threshold::new(k, n) {
            prop_assert_eq!((t.k(), t.n()), (k, n));
        }
    }
}

#[test]
fn split_same_seed_same_shares_other_seed_other_shares() {
    let kek = Kek::from_bytes(&[1; 32]);
    let t = Threshold::new(3, 5).unwrap();
    let a = split(&kek, t, &[2; 32]).unwrap();
    let b = split(&kek, t, &[2; 32]).unwrap();
    let c = split(&kek, t, &[3; 32]).unwrap();
    for i in 0..5 {
        assert_eq!(a[i].expose_y(), b[i].expose_y());
        assert_ne!(a[i].expose_y(), c[i].expose_y());
    }
}

#[test]
fn split_single_threshold_gives_every_custodian_the_kek() {
    let kek = Kek::from_bytes(&[8; 32]);
    let shares = split(
        &kek,
        Threshold::new_allowing_single(1, 3).unwrap(),
        &[0; 32],
    )
    .unwrap();
    assert_eq!(shares.len(), 3);
    for share in &shares {
        assert_eq!(share.expose_y(), kek.expose_secret());
        let back = combine(&pick(&shares, &[usize::from(share.x()) - 1]), 1).unwrap();
        assert_eq!(back.expose_secret(), kek.expose_secret());
    }
}

#[test]
fn split_largest_thresholds_pass_the_sampled_self_check() {
    let kek = Kek::from_bytes(&[0x5c; 32]);
    for (k, n) in [(2, 255), (128, 255), (255, 255)] {
        let shares = split(&kek, Threshold::new(k, n).unwrap(), &[k; 32]).unwrap();
        assert_eq!(shares.len(), 255);
        let last: Vec<usize> = (255 - usize::from(k)..255).collect();
        assert_eq!(
            combine(&pick(&shares, &last), k).unwrap().expose_secret(),
            kek.expose_secret()
        );
    }
}

/// RUSTSEC-2024-0398: `sharks` never draws a zero coefficient, so with k = 2
/// the share at x = 1 (secret ⊕ a₁ in GF(256)) never equals the secret byte.
/// Here a₁ must take every value 0..=255, zero included.
#[test]
fn split_coefficients_cover_the_whole_field_including_zero() {
    let kek_bytes = [0x77; 32];
    let kek = Kek::from_bytes(&kek_bytes);
    let t = Threshold::new(2, 2).unwrap();
    let mut seen = [0u32; 256];
    for round in 0u32..200 {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&round.to_be_bytes());
        let shares = split(&kek, t, &seed).unwrap();
        for (y, s) in shares[0].expose_y().iter().zip(kek_bytes) {
            seen[usize::from(y ^ s)] += 1;
        }
    }
    assert!(seen[0] > 0, "coefficient 0 never drawn: the sharks bias");
    assert!(
        seen.iter().all(|&count| count > 0),
        "some coefficient value never drawn"
    );
    // 6400 samples, 25 expected per value: none should be wildly off.
    assert!(seen.iter().all(|&count| (3..=70).contains(&count)));
}

#[test]
fn combine_duplicate_and_count_errors_are_typed() {
    let kek = Kek::from_bytes(&[4; 32]);
    let shares = split(&kek, Threshold::new(2, 3).unwrap(), &[5; 32]).unwrap();
    assert_eq!(
        combine(&pick(&shares, &[1, 1]), 2).unwrap_err(),
        ShamirError::DuplicateX { x: 2 }
    );
    assert_eq!(
        combine(&pick(&shares, &[0, 1, 2]), 2).unwrap_err(),
        ShamirError::WrongShareCount {
            expected: 2,
            found: 3
        }
    );
    assert!(matches!(
        combine(&[], 0).unwrap_err(),
        ShamirError::InvalidThreshold { k: 0, .. }
    ));
    assert_eq!(Share::new(0, &[1; 32]).unwrap_err(), SecretError::ZeroX);
}

#[test]
fn combine_verified_checks_commitments_then_kek_check_value() {
    let c = common::ceremony(3, 5);
    let key_id = &c.record.key_id;
    let committed = |indices: &[usize]| -> Vec<CommittedShare<'_>> {
        indices
            .iter()
            .map(|&i| CommittedShare {
                share: &c.shares[i],
                salt: &c.salts[i],
                commitment: &c.record.custodians[i].commitment,
            })
            .collect()
    };
    let kek =
        combine_verified(key_id, &committed(&[0, 2, 4]), 3, &c.record.kek_check_value).unwrap();
    assert_eq!(kek.expose_secret(), c.kek.expose_secret());

    // A share that is not the one committed to is named by its x, before combining.
    let mut y = *c.shares[2].expose_y();
    y[5] ^= 0x40;
    let forged = Share::new(3, &y).unwrap();
    let mut shares = committed(&[0, 2, 4]);
    shares[1].share = &forged;
    assert_eq!(
        combine_verified(key_id, &shares, 3, &c.record.kek_check_value).unwrap_err(),
        ShamirError::CommitmentMismatch { xs: vec![3] }
    );

    // Shares that match their commitments but belong to another KEK.
    let other = Kek::from_bytes(&[0x99; 32]);
    let other_shares = split(&other, Threshold::new(3, 5).unwrap(), &[1; 32]).unwrap();
    let other_commitments: Vec<[u8; 32]> = other_shares
        .iter()
        .zip(&c.salts)
        .map(|(s, salt)| share_commitment(key_id, s, salt))
        .collect();
    let shares: Vec<CommittedShare<'_>> = (0..3)
        .map(|i| CommittedShare {
            share: &other_shares[i],
            salt: &c.salts[i],
            commitment: &other_commitments[i],
        })
        .collect();
    assert_eq!(
        combine_verified(key_id, &shares, 3, &c.record.kek_check_value).unwrap_err(),
        ShamirError::KekCheckMismatch
    );

    // Too few is a count error, even with valid commitments.
    assert!(matches!(
        combine_verified(key_id, &committed(&[0, 1]), 3, &c.record.kek_check_value),
        Err(ShamirError::WrongShareCount { .. })
    ));
}

#[test]
fn errors_never_print_share_bytes() {
    let share = Share::new(9, &[0xc3; 32]).unwrap();
    let messages = [
        combine(&pick(&[share], &[0, 0]), 2)
            .unwrap_err()
            .to_string(),
        format!("{:?}", Share::new(9, &[0xc3; 32]).unwrap()),
        format!("{:?}", Kek::from_bytes(&[0xc3; 32])),
    ];
    for message in messages {
        assert!(!message.to_lowercase().contains("c3"), "{message}");
        assert!(!message.contains("195"), "{message}");
    }
}
