//! Reading a signed key record file that the user names (`rkm key import`,
//! `rkm artefact verify --key-record`), bounded in size.

use std::fs::File;
use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;

/// Largest key record file read.
const MAX_KEY_RECORD_FILE: u64 = 2 * 1024 * 1024;

/// The text of the key record file at `path` (not yet parsed or verified).
///
/// # Errors
/// The file cannot be opened or read as text, or is larger than 2 MiB.
pub fn read_key_record(path: &Path) -> anyhow::Result<String> {
    let file = File::open(path)
        .with_context(|| format!("cannot open the key record {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_KEY_RECORD_FILE + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the key record {} as text", path.display()))?;
    if text.len() as u64 > MAX_KEY_RECORD_FILE {
        anyhow::bail!(
            "the key record {} is larger than {MAX_KEY_RECORD_FILE} bytes",
            path.display()
        );
    }
    Ok(text)
}
