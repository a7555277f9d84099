//! Fuzz properties of the request limits rkmd applies to every gRPC request
//! before anything decodes it (`access::limits::check_message` on a whole
//! message, `scan::FieldScan` on a message as it arrives), over arbitrary
//! bytes and mutations of a request with every field filled.
//!
//! Checked: no panic and no call slower than the budget; the scan, fed the
//! message in arbitrary pieces, never finds a field over its limit in a
//! message the whole check accepts; an accepted message is within the
//! method's message limit.

#[path = "common/fuzz.rs"]
mod fuzz;

use proptest::prelude::*;
use proptest::sample::Index;
use rkm_proto::access::limits::scan::FieldScan;
use rkm_proto::access::limits::{METHODS, MethodLimits, check_message, leaves};

use fuzz::{bytes, config, mutate, mutations, timed};

/// A request of `limits` with each field `len` bytes long.
fn filled(limits: &MethodLimits, len: usize) -> Vec<u8> {
    leaves(limits.request)
        .iter()
        .flat_map(|leaf| leaf.filled_message(len.min(leaf.max_len() + 1), 1))
        .collect()
}

fn check(limits: &MethodLimits, message: &[u8], piece: usize) {
    let whole = timed("check_message", message.len(), || {
        check_message(limits.request, message)
    });
    let mut scan = FieldScan::new(limits.request);
    let mut found = None;
    timed("FieldScan", message.len(), || {
        let mut end = 0;
        while end < message.len() && found.is_none() {
            end = (end + piece.max(1)).min(message.len());
            match scan.advance(&message[..end]) {
                Ok(Some(oversized)) => found = Some(oversized),
                Ok(None) => {}
                Err(_) => break,
            }
        }
    });
    if whole.is_ok() {
        assert!(
            found.is_none(),
            "the scan refused {found:?} in a message the whole check accepts"
        );
        assert!(message.len() <= limits.max_message());
    }
}

#[test]
fn fuzz_requests_seeds_are_checked() {
    for limits in METHODS {
        let flat =
            !limits.request.fields.iter().any(|field| {
                matches!(field.kind, rkm_proto::access::limits::FieldKind::Message(_))
            });
        if flat {
            assert_eq!(
                check_message(limits.request, &filled(limits, 8)),
                Ok(()),
                "{}",
                limits.method
            );
        }
        check(limits, &filled(limits, 8), 3);
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary bytes to an arbitrary method, fed in arbitrary pieces.
    #[test]
    fn fuzz_requests_arbitrary(method in any::<Index>(), raw in bytes(600), piece in 1usize..64) {
        let limits = &METHODS[method.index(METHODS.len())];
        check(limits, &raw, piece);
    }

    /// A filled request, mutated: lengths and tags off by a bit.
    #[test]
    fn fuzz_requests_mutated(method in any::<Index>(), len in 0usize..80, m in mutations(), piece in 1usize..64) {
        let limits = &METHODS[method.index(METHODS.len())];
        check(limits, &mutate(&filled(limits, len), &m), piece);
    }
}
