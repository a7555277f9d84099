//! Fuzz properties of the artefact bundle reader (`verify_artefact_on_threads`,
//! `ArtefactHeader::decode` and `verify`, `header_lines_digest`), fed
//! arbitrary bytes, arbitrary record lines after a valid header, and
//! mutations of valid recovery and drill bundles written by `ArtefactWriter`
//! (from the existing `recovery_fixture`).
//!
//! Checked: no panic, no verification slower than the budget; a header that
//! decodes is its own canonical encoding; every byte of a bundle is covered
//! by a signature, a digest or a canonical spelling, so a mutated bundle or
//! header that verifies must be byte-for-byte the original.

#[path = "common/fuzz.rs"]
mod fuzz;
mod recovery_fixture;

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use rkm_proto::artefact::{
    ARTEFACT_MAGIC, ArtefactHeader, ArtefactSummary, header_lines_digest,
    verify_artefact_on_threads,
};
use rkm_proto::recovery_request::CeremonyKind;

use fuzz::{bytes, config, mutate, mutations, texty_bytes, timed};
use recovery_fixture::{Fixture, fixture};

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| fixture(2, 3, 11));

/// A valid recovery bundle of three commands and a valid drill bundle, with
/// their headers.
static BUNDLES: LazyLock<Vec<(Vec<u8>, ArtefactHeader)>> = LazyLock::new(|| {
    let fix = &*FIXTURE;
    let (recovery, header, _) = fix.recovery_bundle(3);
    let drill_request = fix.request(CeremonyKind::Drill, &[]);
    let drill_header = fix.header(&drill_request, &[0, 2]);
    let drill = fix.bundle(&drill_header, &[]);
    vec![(recovery, header), (drill, drill_header)]
});

fn verify(bytes: &[u8]) -> Result<ArtefactSummary, rkm_proto::artefact::ArtefactError> {
    let fix = &*FIXTURE;
    timed("verify_artefact", bytes.len(), || {
        verify_artefact_on_threads(bytes, &fix.record, &fix.audit_key, 1, |_| {})
    })
}

fn check_bundle(bytes: &[u8], original: Option<&[u8]>) {
    let verified = verify(bytes);
    let _ = timed("header_lines_digest", bytes.len(), || {
        header_lines_digest(bytes)
    });
    if let (Ok(_), Some(original)) = (&verified, original) {
        assert_eq!(
            bytes,
            original,
            "a mutated bundle verified:\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

fn check_header(json: &[u8], original: Option<&ArtefactHeader>) {
    let fix = &*FIXTURE;
    let Ok(header) = timed("ArtefactHeader::decode", json.len(), || {
        ArtefactHeader::decode(json)
    }) else {
        return;
    };
    assert_eq!(header.encode(), json, "a non-canonical header decoded");
    let verified = timed("ArtefactHeader::verify", json.len(), || {
        header.verify(&fix.record, &fix.audit_key)
    });
    if let (Ok(_), Some(original)) = (verified, original) {
        assert_eq!(&header, original, "a mutated header verified");
    }
}

/// The first two lines of a valid bundle.
fn header_lines(which: usize) -> Vec<u8> {
    let header = &BUNDLES[which].1;
    format!(
        "{ARTEFACT_MAGIC}\nheader {}\n",
        STANDARD.encode(header.encode())
    )
    .into_bytes()
}

#[test]
fn fuzz_artefact_seeds_are_valid() {
    for (bytes, header) in BUNDLES.iter() {
        verify(bytes).unwrap();
        assert!(bytes.starts_with(&header_lines(if header.target_count == 0 { 1 } else { 0 })));
        check_bundle(bytes, Some(bytes));
        check_header(&header.encode(), Some(header));
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// Arbitrary bytes, and arbitrary record lines after a valid header,
    /// never verify and never panic.
    #[test]
    fn fuzz_artefact_arbitrary_input(raw in bytes(1024), text in texty_bytes(512), which in 0usize..2) {
        let mut after_header = header_lines(which);
        after_header.extend_from_slice(&text);
        for input in [&raw, &text] {
            check_bundle(input, None);
            check_header(input, None);
        }
        check_bundle(&after_header, Some(&BUNDLES[which].0));
    }

    /// A mutated bundle verifies only if it is the original.
    #[test]
    fn fuzz_artefact_mutated_bundle(m in mutations(), which in 0usize..2) {
        let (original, _) = &BUNDLES[which];
        check_bundle(&mutate(original, &m), Some(original));
    }

    /// Mutated record lines after an intact header: the S and end lines.
    #[test]
    fn fuzz_artefact_mutated_records(m in mutations()) {
        let (original, _) = &BUNDLES[0];
        let head = header_lines(0);
        let mut input = head.clone();
        input.extend_from_slice(&mutate(&original[head.len()..], &m));
        check_bundle(&input, Some(original));
    }

    /// A mutated header JSON decodes only canonically and verifies only if
    /// it is the original.
    #[test]
    fn fuzz_artefact_mutated_header(m in mutations(), which in 0usize..2) {
        let header = &BUNDLES[which].1;
        check_header(&mutate(&header.encode(), &m), Some(header));
    }
}
