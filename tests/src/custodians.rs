//! Custodians for end-to-end tests, and the `rkm` command lines the tests run
//! for them against a [`Daemon`].
//!
//! A [`Custodian`] is a set of files in the test's directory: an identity, a
//! card, a passphrase file and a share directory. The identity is made either
//! with the real `rkm custodian init` ([`Custodian::init`]) or, for tests that
//! open it many times, here with a low scrypt work factor
//! ([`Custodian::write_fast_identity`]). The methods run what a custodian
//! runs (`custodian enrol`, `share fetch`, `share verify`, `recovery
//! approve`) and read back what they hold, decrypted outside rkmd
//! ([`Custodian::held_share`], [`Custodian::key_record`]).
//!
//! The free functions assert on `rkm`'s outputs ([`assert_ok`],
//! [`assert_fails`], [`assert_ok_json`]), run the operator's steps of a key
//! ceremony ([`enrol_all`], [`create_key`], [`fetch_all`]) and look for
//! secret bytes where none may be ([`assert_no_secret_bytes`]).
//!
//! Everything here panics on failure, as a test assertion does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rkm_proto::envelope::{self, EnvelopeContents};
use rkm_proto::identity::CustodianIdentity;
use rkm_proto::key_record::{KeyRecord, SignedKeyRecord};
use rkm_proto::secret::Share;
use secrecy::SecretString;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::Daemon;
use crate::binaries::binary;

/// The names of the five custodians of the tests' 3-of-5 keys.
pub const NAMES: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

/// The scrypt work factor (log2 N) of identities written by
/// [`Custodian::write_fast_identity`]: low, so that the many commands that
/// open them stay fast. `rkm custodian init` uses the production one.
pub const FAST_WORK_FACTOR: u8 = 4;

// ----- rkm's outputs -----

/// Bytes of a standard stream as text (lossily).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that `output` is a success; returns its standard output. `what`
/// names the step in the failure message.
#[track_caller]
pub fn assert_ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Asserts that `output` is a failure with exit code `code` and a standard
/// error containing every one of `needles`; returns the standard error.
#[track_caller]
pub fn assert_fails(output: &Output, code: i32, needles: &[&str], what: &str) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: expected exit {code}:\nstdout: {}\nstderr: {stderr}",
        text(&output.stdout)
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{what}: stderr lacks {needle:?}:\n{stderr}"
        );
    }
    stderr
}

/// Asserts that `output` is a success and parses its standard output as
/// JSON (what `--output json` prints).
#[track_caller]
pub fn assert_ok_json(output: &Output, what: &str) -> Value {
    serde_json::from_str(&assert_ok(output, what))
        .unwrap_or_else(|error| panic!("{what}: not JSON: {error}"))
}

/// A path as a command-line argument.
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

// ----- running rkm -----

/// Runs the real `rkm ARGS` with a cleared environment holding only `PATH`
/// (passed through), `RKM_SOCKET=socket` and `env`: for runs with a `HOME`
/// or `RKM_*` variables of the test's own, or against a socket nobody
/// listens on. [`Daemon::rkm`] is the usual way to run rkm.
pub fn rkm_with_env(socket: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(binary("rkm"));
    command.env_clear();
    if let Some(value) = std::env::var_os("PATH") {
        command.env("PATH", value);
    }
    command
        .env("RKM_SOCKET", socket)
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("rkm runs")
}

/// The audit key (C2SP verifier key) `rkm status` reports for `daemon`.
pub fn audit_key(daemon: &Daemon) -> String {
    let status = assert_ok_json(
        &daemon.rkm(&["status", "--output", "json"]).unwrap(),
        "status",
    );
    status["audit_key"]["verifier_key"]
        .as_str()
        .expect("status reports the audit key")
        .to_owned()
}

/// `rkm key show KEY --output json`, asserted to succeed.
pub fn show_key(daemon: &Daemon, key: &str) -> Value {
    assert_ok_json(
        &daemon
            .rkm(&["key", "show", key, "--output", "json"])
            .unwrap(),
        "key show",
    )
}

// ----- custodians -----

/// One custodian's files in a test's directory, named after the custodian:
/// `NAME.identity`, `NAME.card.json`, `NAME.passphrase` and `NAME-shares/`.
#[derive(Debug, Clone)]
pub struct Custodian {
    /// The custodian's name (as enrolled).
    pub name: String,
    /// The passphrase-protected identity file.
    pub identity: PathBuf,
    /// The public custodian card the operator enrols.
    pub card: PathBuf,
    /// The identity's passphrase.
    pub passphrase: String,
    /// A file holding the passphrase (and a newline).
    pub passphrase_file: PathBuf,
    /// Where `rkm share fetch` stores this custodian's shares.
    pub share_dir: PathBuf,
}

impl Custodian {
    /// Names the files of custodian `name` in `dir` and writes the
    /// passphrase file; no identity yet (see [`Custodian::init`] and
    /// [`Custodian::write_fast_identity`]).
    pub fn new(dir: &Path, name: &str) -> Self {
        let passphrase = format!("correct horse battery staple {name}");
        let passphrase_file = dir.join(format!("{name}.passphrase"));
        crate::write_secret_file(&passphrase_file, format!("{passphrase}\n"));
        Custodian {
            name: name.to_owned(),
            identity: dir.join(format!("{name}.identity")),
            card: dir.join(format!("{name}.card.json")),
            passphrase,
            passphrase_file,
            share_dir: dir.join(format!("{name}-shares")),
        }
    }

    /// [`Custodian::new`] and [`Custodian::write_fast_identity`].
    pub fn with_fast_identity(dir: &Path, name: &str) -> Self {
        let custodian = Self::new(dir, name);
        custodian.write_fast_identity();
        custodian
    }

    /// Runs the real `rkm custodian init`, which writes the identity and the
    /// card; returns the fingerprint it reports.
    pub fn init(&self, daemon: &Daemon) -> String {
        let mut args = vec!["custodian", "init", "--name", &self.name];
        args.extend([
            "--identity",
            path_str(&self.identity),
            "--card",
            path_str(&self.card),
            "--passphrase-file",
            path_str(&self.passphrase_file),
            "--output",
            "json",
        ]);
        let report = assert_ok_json(&daemon.rkm(&args).unwrap(), "custodian init");
        report["fingerprint"]
            .as_str()
            .expect("custodian init reports the fingerprint")
            .to_owned()
    }

    /// Writes the identity and the card here rather than with `rkm
    /// custodian init`: a key pair derived from the identity file's path,
    /// encrypted with [`FAST_WORK_FACTOR`].
    pub fn write_fast_identity(&self) {
        let mut seed = [0u8; 64];
        for (half, chunk) in seed.chunks_mut(32).enumerate() {
            let digest = Sha256::new()
                .chain_update(self.identity.as_os_str().as_encoded_bytes())
                .chain_update([half as u8])
                .finalize();
            chunk.copy_from_slice(&digest);
        }
        let identity = CustodianIdentity::generate(&self.name, &seed).unwrap();
        let file = identity
            .encrypt_with_work_factor(
                &SecretString::from(self.passphrase.as_str()),
                FAST_WORK_FACTOR,
            )
            .unwrap();
        std::fs::write(&self.identity, file).unwrap();
        std::fs::write(&self.card, identity.card().to_json()).unwrap();
    }

    /// `rkm custodian enrol CARD` (the operator's step), not asserted.
    pub fn enrol(&self, daemon: &Daemon) -> Output {
        daemon
            .rkm(&["custodian", "enrol", path_str(&self.card)])
            .unwrap()
    }

    /// `--identity FILE --passphrase-file FILE`: how rkm opens this
    /// custodian's identity.
    pub fn identity_args(&self) -> [&str; 4] {
        [
            "--identity",
            path_str(&self.identity),
            "--passphrase-file",
            path_str(&self.passphrase_file),
        ]
    }

    /// [`Custodian::identity_args`] and `--share-dir DIR`: everything this
    /// custodian brings to `share` and `recovery approve` commands.
    pub fn held_files_args(&self) -> Vec<&str> {
        let mut args = self.identity_args().to_vec();
        args.extend(["--share-dir", path_str(&self.share_dir)]);
        args
    }

    /// The command line `share SUBCOMMAND --key KEY` with this custodian's
    /// files ([`Custodian::held_files_args`]).
    pub fn share_command<'a>(&'a self, subcommand: &'a str, key: &'a str) -> Vec<&'a str> {
        let mut args = vec!["share", subcommand, "--key", key];
        args.extend(self.held_files_args());
        args
    }

    /// `rkm share fetch --key KEY` with this custodian's files and `extra`,
    /// not asserted.
    pub fn fetch(&self, daemon: &Daemon, key: &str, extra: &[&str]) -> Output {
        let mut args = self.share_command("fetch", key);
        args.extend_from_slice(extra);
        daemon.rkm(&args).unwrap()
    }

    /// `rkm share verify --key KEY` with this custodian's files and `extra`,
    /// not asserted.
    pub fn verify(&self, daemon: &Daemon, key: &str, extra: &[&str]) -> Output {
        let mut args = self.share_command("verify", key);
        args.extend_from_slice(extra);
        daemon.rkm(&args).unwrap()
    }

    /// `rkm recovery approve ID --yes --output json` with this custodian's
    /// files, not asserted.
    pub fn approve(&self, daemon: &Daemon, ceremony_id: &str) -> Output {
        let mut args = vec!["recovery", "approve", ceremony_id];
        args.extend(self.held_files_args());
        args.extend(["--yes", "--output", "json"]);
        daemon.rkm(&args).unwrap()
    }

    /// Opens the identity file with the passphrase.
    pub fn open_identity(&self) -> CustodianIdentity {
        CustodianIdentity::decrypt(
            &std::fs::read(&self.identity).unwrap(),
            &SecretString::from(self.passphrase.as_str()),
        )
        .unwrap()
    }

    /// The folder `share fetch` stored key `key_id` in.
    pub fn key_folder(&self, key_id: &str) -> PathBuf {
        self.share_dir.join(key_id)
    }

    /// The key record copy `share fetch` stored.
    pub fn key_record_file(&self, key_id: &str) -> PathBuf {
        self.key_folder(key_id).join("key-record.json")
    }

    /// The stored key record copy, parsed (its signature not checked).
    pub fn signed_key_record(&self, key_id: &str) -> SignedKeyRecord {
        SignedKeyRecord::from_file(&std::fs::read_to_string(self.key_record_file(key_id)).unwrap())
            .unwrap()
    }

    /// The stored key record copy, decoded (its signature not checked).
    pub fn key_record(&self, key_id: &str) -> KeyRecord {
        KeyRecord::decode(&self.signed_key_record(key_id).record).unwrap()
    }

    /// The stored share envelope, opened here (outside rkmd).
    pub fn open_envelope(&self, key_id: &str) -> EnvelopeContents {
        let sealed = std::fs::read(self.key_folder(key_id).join("share.age")).unwrap();
        envelope::open(&sealed, self.open_identity().age_identity()).unwrap()
    }

    /// The share this custodian holds, decrypted here (outside rkmd).
    pub fn held_share(&self, key_id: &str) -> Share {
        self.open_envelope(key_id).share
    }

    /// This custodian's share commitment in the stored key record copy.
    pub fn commitment(&self, key_id: &str) -> [u8; 32] {
        self.key_record(key_id)
            .custodian(&self.name)
            .expect("the key record lists the custodian")
            .commitment
    }

    /// Asserts that the share directory holds nothing at all.
    #[track_caller]
    pub fn assert_nothing_stored(&self, what: &str) {
        if self.share_dir.exists() {
            let entries: Vec<_> = std::fs::read_dir(&self.share_dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name())
                .collect();
            assert!(entries.is_empty(), "{what}: stored {entries:?}");
        }
    }
}

/// [`Custodian::new`] for each of `names`, in `dir`.
pub fn custodians(dir: &Path, names: &[&str]) -> Vec<Custodian> {
    names.iter().map(|name| Custodian::new(dir, name)).collect()
}

/// [`Custodian::with_fast_identity`] for each of `names`, in `dir`.
pub fn custodians_with_fast_identities(dir: &Path, names: &[&str]) -> Vec<Custodian> {
    names
        .iter()
        .map(|name| Custodian::with_fast_identity(dir, name))
        .collect()
}

/// Enrols every one of `custodians` with `daemon`, asserting each succeeds.
pub fn enrol_all(daemon: &Daemon, custodians: &[Custodian]) {
    for custodian in custodians {
        assert_ok(&custodian.enrol(daemon), "custodian enrol");
    }
}

/// `rkm key create --label LABEL --threshold K --custodians NAMES --output
/// json`, asserted to succeed; returns its report (`key_id`, `state`, ...).
pub fn create_key(daemon: &Daemon, label: &str, threshold: u8, names: &[&str]) -> Value {
    assert_ok_json(
        &daemon
            .rkm(&[
                "key",
                "create",
                "--label",
                label,
                "--threshold",
                &threshold.to_string(),
                "--custodians",
                &names.join(","),
                "--output",
                "json",
            ])
            .unwrap(),
        "key create",
    )
}

/// The key id of a `key create` report.
pub fn key_id_of(created: &Value) -> String {
    created["key_id"]
        .as_str()
        .expect("key create reports the key id")
        .to_owned()
}

/// Enrols `custodians` (their identities and cards written) and creates key
/// `label` held by all of them with `threshold`; returns the key id.
pub fn enrol_and_create_key(
    daemon: &Daemon,
    custodians: &[Custodian],
    label: &str,
    threshold: u8,
) -> String {
    enrol_all(daemon, custodians);
    let names: Vec<&str> = custodians.iter().map(|c| c.name.as_str()).collect();
    key_id_of(&create_key(daemon, label, threshold, &names))
}

/// Every one of `custodians` fetches their share of `key` with `extra`
/// options (e.g. `--audit-key`), asserting each succeeds.
pub fn fetch_all(daemon: &Daemon, custodians: &[Custodian], key: &str, extra: &[&str]) {
    for custodian in custodians {
        assert_ok(&custodian.fetch(daemon, key, extra), "share fetch");
    }
}

// ----- shares and secrets -----

/// Every `k`-element subset of `0..n`, as sorted indices.
pub fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    (0u32..1 << n)
        .filter(|mask| mask.count_ones() as usize == k)
        .map(|mask| (0..n).filter(|i| mask & (1 << i) != 0).collect())
        .collect()
}

/// Copies of the shares at `indices` (shares are not `Clone`).
pub fn pick_shares(shares: &[Share], indices: &[usize]) -> Vec<Share> {
    indices
        .iter()
        .map(|&i| Share::new(shares[i].x(), shares[i].expose_y()).unwrap())
        .collect()
}

/// Every regular file under `dir` (none if it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

/// The ways a secret's bytes could be written: raw, hex (both cases),
/// base64, and unpadded base64 of its first 30 bytes (which no neighbouring
/// byte changes). `secret` has at least 30 bytes.
pub fn spellings(secret: &[u8]) -> Vec<Vec<u8>> {
    vec![
        secret.to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(secret)
            .into_bytes(),
        base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(&secret[..30])
            .into_bytes(),
    ]
}

/// Whether `needle` occurs in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Asserts that no [spelling](spellings) of any of `secrets` (a description
/// and the bytes) is in any of `files`; a file that cannot be read counts
/// as empty. `when` prefixes the failure message.
#[track_caller]
pub fn assert_no_secret_bytes(files: &[PathBuf], secrets: &[(String, Vec<u8>)], when: &str) {
    for file in files {
        let bytes = std::fs::read(file).unwrap_or_default();
        assert_no_secret_in(&bytes, secrets, &format!("{when}, in {}", file.display()));
    }
}

/// Fails if `bytes` hold any of `secrets` in any of their [`spellings`].
#[track_caller]
pub fn assert_no_secret_in(bytes: &[u8], secrets: &[(String, Vec<u8>)], place: &str) {
    for (what, secret) in secrets {
        for spelling in spellings(secret) {
            assert!(!contains_bytes(bytes, &spelling), "{place}: {what} found");
        }
    }
}

// ----- recoveries -----

/// Waits, with bounded retries, until recovery `ceremony_id` is in `state`;
/// returns its `rkm recovery show --output json`. Fails when the ceremony
/// goes anywhere else than `open` or `signing` first, or after `timeout`.
#[track_caller]
pub fn wait_for_recovery_state(
    daemon: &Daemon,
    ceremony_id: &str,
    state: &str,
    timeout: Duration,
) -> Value {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        let shown = assert_ok_json(
            &daemon
                .rkm(&["recovery", "show", ceremony_id, "--output", "json"])
                .unwrap(),
            "recovery show",
        );
        if shown["state"] == state {
            return shown;
        }
        assert!(
            shown["state"] == "open" || shown["state"] == "signing",
            "ceremony {ceremony_id} went to {} instead of {state}: {shown}",
            shown["state"]
        );
        assert!(
            Instant::now() < deadline,
            "ceremony {ceremony_id} is still {} after {timeout:?}",
            shown["state"]
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// A revoke-certificate request file with two inline targets (`meter-1`,
/// `meter-2`); `serial` tells requests apart.
pub fn small_request_file(dir: &Path, serial: &str) -> PathBuf {
    let file = dir.join(format!("request-{serial}.toml"));
    std::fs::write(
        &file,
        format!("reason = \"Issuing CA 2 key compromised\"\nincident = \"INC-4711\"\nnot_before = \"2026-11-27T00:00:00Z\"\nnot_after = \"2026-12-04T00:00:00Z\"\ntargets = [\"meter-1\", \"meter-2\"]\n\n[command]\nkind = \"revoke-certificate\"\nissuer = \"CN=Issuing CA 2, O=Grid\"\nserial = \"{serial}\"\n"),
    )
    .unwrap();
    file
}

/// Opens a one-hour recovery of key `label` for `request` as the staff;
/// returns its JSON report.
#[track_caller]
pub fn open_small_recovery(daemon: &Daemon, label: &str, request: &Path) -> Value {
    assert_ok_json(
        &daemon
            .rkm(&[
                "recovery",
                "open",
                "--key",
                label,
                "--request",
                path_str(request),
                "--expires",
                "1h",
                "--output",
                "json",
            ])
            .unwrap(),
        "recovery open",
    )
}

/// A request file without targets and a manifest of `count` device ids
/// (`meter-0000000`, …) beside it, for `rkm recovery open --targets`.
pub fn manifest_request_files(dir: &Path, count: usize) -> (PathBuf, PathBuf) {
    let request = small_request_file(dir, &format!("{count:08x}"));
    let text = std::fs::read_to_string(&request)
        .unwrap()
        .replace("targets = [\"meter-1\", \"meter-2\"]\n", "");
    std::fs::write(&request, text).unwrap();
    let manifest = dir.join(format!("targets-{count}.txt"));
    let lines: String = (0..count).map(|i| format!("meter-{i:07}\n")).collect();
    std::fs::write(&manifest, lines).unwrap();
    (request, manifest)
}

/// Opens a one-hour recovery of key `label` for `count` devices listed in a
/// manifest (`meter-0000000`, …) as the staff; returns its ceremony id.
#[track_caller]
pub fn open_manifest_recovery(daemon: &Daemon, dir: &Path, label: &str, count: usize) -> String {
    let (request, manifest) = manifest_request_files(dir, count);
    let opened = assert_ok_json(
        &daemon
            .rkm(&[
                "recovery",
                "open",
                "--key",
                label,
                "--request",
                path_str(&request),
                "--targets",
                path_str(&manifest),
                "--expires",
                "1h",
                "--output",
                "json",
            ])
            .unwrap(),
        "recovery open",
    );
    opened["ceremony_id"].as_str().unwrap().to_owned()
}

/// Opens a one-hour drill of key `label` as the staff; returns its JSON
/// report.
#[track_caller]
pub fn open_drill(daemon: &Daemon, label: &str) -> Value {
    assert_ok_json(
        &daemon
            .rkm(&[
                "drill",
                "open",
                "--key",
                label,
                "--reason",
                "Quarterly drill",
                "--incident",
                "DRILL-2026-Q4",
                "--expires",
                "1h",
                "--output",
                "json",
            ])
            .unwrap(),
        "drill open",
    )
}

/// The audit entries of `action` (e.g. `access.refused`), read over the
/// socket with `rkm audit show`.
#[track_caller]
pub fn audit_entries(daemon: &Daemon, action: &str) -> Vec<Value> {
    let shown = assert_ok_json(
        &daemon
            .rkm_over_socket(&["audit", "show", "--action", action, "--output", "json"])
            .unwrap(),
        "audit show",
    );
    shown.as_array().cloned().unwrap_or_default()
}

/// Waits, with bounded retries, for an audit entry of `action` that
/// `wanted` accepts: a refused connection is audited as it closes, so the
/// client may look before rkmd has written it. Fails after 20 s naming
/// `what` and the entries there were.
#[track_caller]
pub fn wait_for_audit_entry(
    daemon: &Daemon,
    action: &str,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let entries = audit_entries(daemon, action);
        if let Some(entry) = entries.iter().find(|entry| wanted(entry)) {
            return entry.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {action} entry for {what}: {entries:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
