//! `rkm recovery open`: reads the request file (bounded, UTF-8, valid TOML)
//! and opens the ceremony with it (`crate::recovery_ceremony::opening`).

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use rkm_proto::recovery_request::{MAX_REQUEST_FILE_LEN, RecoveryRequest};

use crate::connect::Target;
use crate::output::OutputFormat;
use crate::recovery_ceremony::opening::{OpenArgs, open_ceremony};

/// Reads and parses the request file, bounded by its size limit.
fn read_request(path: &Path) -> anyhow::Result<(String, RecoveryRequest)> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the request file {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_REQUEST_FILE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the request file {}", path.display()))?;
    if bytes.len() > MAX_REQUEST_FILE_LEN {
        bail!(
            "the request file {} is larger than {MAX_REQUEST_FILE_LEN} bytes; list many targets in a manifest (--targets FILE)",
            path.display()
        );
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("the request file {} is not UTF-8", path.display()))?;
    let request = RecoveryRequest::from_toml(&text)
        .with_context(|| format!("the request file {} is not valid", path.display()))?;
    Ok((text, request))
}

/// Opens the ceremony and prints its id and request digest.
///
/// # Errors
/// The request file or manifest is unreadable or invalid; rkmd refuses;
/// rkmd recorded another request than the one sent ([`VerificationFailed`]).
pub async fn run(args: OpenArgs, target: &Target, output: OutputFormat) -> anyhow::Result<()> {
    let (request_toml, request) = read_request(&args.request)?;
    open_ceremony(args, request_toml, request, target, output).await
}
