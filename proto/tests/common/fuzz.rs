//! Shared pieces of the `fuzz_*` property tests: the case count (modest by
//! default, scaled up with `RKM_FUZZ_CASES` for long campaigns), bounded
//! arbitrary inputs, byte-level mutations of a valid encoding (flip, set,
//! insert, delete, truncate, duplicate), and a time budget per parse so a
//! parser that is slow on some input fails the case instead of going
//! unnoticed.
//!
//! Included with `#[path = "common/fuzz.rs"] mod fuzz;` so that the existing
//! `common/mod.rs` stays as it is.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;

/// The proptest config of a fuzz test: `default` cases unless
/// `RKM_FUZZ_CASES` says otherwise, and no shrinking beyond a bounded
/// number of steps (a long campaign must end).
pub fn config(default: u32) -> Config {
    let cases = std::env::var("RKM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        max_shrink_iters: 2048,
        // Failures are reported with their minimal input; do not write
        // regression files into the source tree from CI.
        failure_persistence: None,
        ..Config::default()
    }
}

/// How long one parse of one bounded input may take before the case fails:
/// `RKM_FUZZ_SLOW_MS`, or 5 s (generous for an unoptimised test build on a
/// busy machine; a real input parses in well under a millisecond to a few
/// milliseconds).
pub fn budget() -> Duration {
    let ms = std::env::var("RKM_FUZZ_SLOW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    Duration::from_millis(ms)
}

/// Runs `f`, failing if it takes longer than [`budget`]: the "no hang"
/// check of every fuzz case. A panic inside `f` fails the case as usual.
pub fn timed<T>(what: &str, input_len: usize, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let elapsed = start.elapsed();
    assert!(
        elapsed <= budget(),
        "{what} took {elapsed:?} on an input of {input_len} bytes (budget {:?})",
        budget()
    );
    out
}

/// Arbitrary bytes, at most `max` of them.
pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

/// Bytes that are often text: mostly printable ASCII and the characters the
/// formats use as structure, with some arbitrary bytes.
pub fn texty_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            6 => 0x20u8..0x7f,
            2 => prop::sample::select(INTERESTING.to_vec()),
            1 => any::<u8>(),
        ],
        0..=max,
    )
}

/// Bytes worth trying in a text format: structure, digits at the edges,
/// case, escapes, whitespace, control and non-ASCII bytes.
pub const INTERESTING: &[u8] = b"\0\t\n\r \"#+,-./0129:=AFZ[\\]_afz{}\x7f\x80\xc3\xe2\xff";

/// One byte-level change of an input.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// XOR one bit.
    Flip(Index, u8),
    /// Replace a byte.
    Set(Index, u8),
    /// Insert a byte before a position (or at the end).
    Insert(Index, u8),
    /// Remove up to `n` bytes from a position.
    Delete(Index, u8),
    /// Keep only a prefix.
    Truncate(Index),
    /// Copy a short run of bytes to another position.
    Duplicate(Index, u8, Index),
    /// Flip the ASCII case of a letter (uppercase hex, `Z`/`z`, …).
    Case(Index),
}

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        2 => any::<u8>(),
        3 => prop::sample::select(INTERESTING.to_vec()),
    ]
}

/// One mutation, weighted towards the small changes a damaged or
/// hand-edited file shows.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        4 => (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => (any::<Index>(), 1u8..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), 1u8..32, any::<Index>())
            .prop_map(|(from, n, to)| Mutation::Duplicate(from, n, to)),
        2 => any::<Index>().prop_map(Mutation::Case),
    ]
}

/// One to four mutations, applied in order.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..=4)
}

/// `input` with `mutations` applied. The result is never longer than the
/// input plus 4 × 32 bytes, so memory stays bounded by the valid encoding.
pub fn mutate(input: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = input.to_vec();
    for m in mutations {
        apply(&mut out, m);
    }
    out
}

fn apply(out: &mut Vec<u8>, m: &Mutation) {
    let len = out.len();
    match m {
        Mutation::Flip(i, bit) if len > 0 => out[i.index(len)] ^= 1 << bit,
        Mutation::Set(i, b) if len > 0 => out[i.index(len)] = *b,
        Mutation::Insert(i, b) => out.insert(i.index(len + 1), *b),
        Mutation::Delete(i, n) if len > 0 => {
            let at = i.index(len);
            let end = (at + usize::from(*n)).min(len);
            out.drain(at..end);
        }
        Mutation::Truncate(i) => out.truncate(i.index(len + 1)),
        Mutation::Duplicate(from, n, to) if len > 0 => {
            let start = from.index(len);
            let end = (start + usize::from(*n)).min(len);
            let run = out[start..end].to_vec();
            let at = to.index(len + 1);
            out.splice(at..at, run);
        }
        Mutation::Case(i) if len > 0 => {
            // The nearest letter at or after the position, wrapping.
            let start = i.index(len);
            if let Some(at) = (0..len)
                .map(|k| (start + k) % len)
                .find(|&k| out[k].is_ascii_alphabetic())
            {
                out[at] ^= 0x20;
            }
        }
        _ => {}
    }
}

/// Whether the mutations changed nothing (e.g. a flip undone by a flip).
pub fn unchanged(original: &[u8], mutated: &[u8]) -> bool {
    original == mutated
}
