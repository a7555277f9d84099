//! Fixtures for rkm's tests: fresh SoftHSM2 tokens in their own directories,
//! the real `rkmd` daemon started against one, stopped when dropped, and
//! custodians with their files running the real `rkm` against it; and the
//! raw PKCS#11 baseline the benchmarks measure rkm against.

#![deny(unsafe_code)]

pub mod bench_args;
pub mod binaries;
pub mod custodians;
pub mod daemon;
pub mod env;
pub mod raw_grpc;
pub mod raw_pkcs11;
pub mod token;
pub mod token_objects;

pub use custodians::Custodian;
pub use daemon::{Daemon, DaemonBuilder, STAFF_CLIENT, make_dev_pki};
pub use token::SoftHsmToken;

use std::path::PathBuf;

/// Writes a file only its owner may read (0600), as a passphrase or PIN
/// file must be.
///
/// # Panics
/// The file cannot be written.
pub fn write_secret_file(path: &std::path::Path, contents: impl AsRef<[u8]>) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The workspace root (where `Cargo.toml` and `softhsm-config/` are).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}
