//! Shared pieces of the libFuzzer targets in `fuzz_targets/`: the fixture
//! (the same `recovery_fixture` the property tests use: a real key record,
//! custodian identities and audit key) and the checks each target runs on
//! its input, the same properties as `proto/tests/fuzz_*.rs`: no panic, what
//! parses re-encodes to itself, and nothing mutated verifies as signed.

#![forbid(unsafe_code)]

#[path = "../../proto/tests/recovery_fixture/mod.rs"]
#[allow(clippy::all)]
mod recovery_fixture;

use std::sync::LazyLock;

use rkm_proto::recovery_request::ManifestSplitter;
use secrecy::SecretString;

pub use recovery_fixture::Fixture;

/// The fixture every target checks against: a 2-of-3 key.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| recovery_fixture::fixture(2, 3, 11));
    &FIXTURE
}

/// The passphrase of the identity-file targets.
pub fn passphrase() -> SecretString {
    SecretString::from("correct horse battery staple".to_owned())
}

/// Work factor used to seal identity payloads.
pub const LOG_N: u8 = 2;

/// Highest scrypt work factor an input may state and still be opened: age
/// accepts up to its calibrated target + 4, which would make one input cost
/// seconds and gigabytes.
pub const MAX_FUZZ_LOG_N: u32 = 12;

/// The highest work factor any `-> scrypt <salt> <log_n>` header line states.
pub fn stated_work_factor(file: &[u8]) -> Option<u32> {
    file.split(|&b| b == b'\n')
        .take_while(|line| !line.starts_with(b"---"))
        .filter_map(|line| line.strip_prefix(b"-> scrypt "))
        .filter_map(|args| {
            let last = args.rsplit(|&b| b == b' ').next()?;
            std::str::from_utf8(last).ok()?.parse::<u32>().ok()
        })
        .max()
}

/// Splits `data` as a manifest, the first byte choosing the chunk size.
pub fn split_manifest(data: &[u8]) -> Result<Vec<String>, ()> {
    let (chunk, manifest) = match data.split_first() {
        Some((&c, rest)) => (usize::from(c).max(1), rest),
        None => (1, data),
    };
    let mut splitter = ManifestSplitter::new();
    let mut out = Vec::new();
    for part in manifest.chunks(chunk) {
        splitter.push(part, &mut out).map_err(|_| ())?;
    }
    splitter.finish(&mut out).map_err(|_| ())?;
    Ok(out.into_iter().map(|(_, id)| id).collect())
}
