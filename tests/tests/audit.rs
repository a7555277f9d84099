//! End to end: the auditor's `rkm audit` commands against the real rkmd on a
//! fresh SoftHSM token — fetch, incremental fetch with its consistency proof,
//! offline verify, show, prove and note — and every kind of tampering with a
//! fetched file, each caught with its own message and exit code 7.

use std::path::{Path, PathBuf};
use std::process::Output;

use rkm_tests::Daemon;
use serde_json::Value;

/// `rkm`'s documented exit code for "did not verify".
const VERIFICATION_FAILED: i32 = 7;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn rkm_ok(daemon: &Daemon, args: &[&str]) -> String {
    let output = daemon.rkm(args).unwrap();
    assert!(
        output.status.success(),
        "rkm {args:?} failed with {:?}: {}",
        output.status.code(),
        stderr(&output)
    );
    stdout(&output)
}

fn json(daemon: &Daemon, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["--output", "json"]);
    serde_json::from_str(&rkm_ok(daemon, &args)).expect("--output json prints JSON")
}

/// The daemon's audit key as `rkm status` prints it.
fn audit_key(daemon: &Daemon) -> String {
    json(daemon, &["status"])["audit_key"]["verifier_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn note(daemon: &Daemon, message: &str) -> u64 {
    json(daemon, &["audit", "note", "--message", message])["index"]
        .as_u64()
        .unwrap()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn fetch(daemon: &Daemon, file: &Path, key: &str) -> Value {
    json(
        daemon,
        &["audit", "fetch", "-o", path_str(file), "--audit-key", key],
    )
}

fn verify(daemon: &Daemon, file: &Path, key: &str) -> Output {
    daemon
        .rkm(&["audit", "verify", path_str(file), "--audit-key", key])
        .unwrap()
}

/// Runs `rkm audit verify` expecting exit 7 and a message with every one of
/// `expected`; returns the message.
fn verify_fails(daemon: &Daemon, file: &Path, key: &str, expected: &[&str]) -> String {
    let output = verify(daemon, file, key);
    let message = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(VERIFICATION_FAILED),
        "verify did not fail as a verification failure: {message}"
    );
    for part in expected {
        assert!(message.contains(part), "{part:?} not in: {message}");
    }
    eprintln!("{}: {message}", file.display());
    message
}

/// A daemon with `notes` notes, and a fetched file of its log in `dir`
/// holding at least two checkpoints (the file is fetched twice).
fn daemon_with_fetched_log(dir: &Path, notes: usize) -> (Daemon, String, PathBuf) {
    let daemon = Daemon::start().unwrap();
    let key = audit_key(&daemon);
    let file = dir.join("audit.log");
    note(&daemon, "first note, before the first fetch");
    fetch(&daemon, &file, &key);
    for n in 0..notes {
        note(&daemon, &format!("note {n}: HSM firmware upgraded"));
    }
    fetch(&daemon, &file, &key);
    (daemon, key, file)
}

fn read_lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(file: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(file, text).unwrap();
}

/// The 0-based line number of entry `index`.
fn entry_line(lines: &[String], index: u64) -> usize {
    let prefix = format!("E {index} ");
    lines
        .iter()
        .position(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no entry {index}"))
}

/// The index of the entry on an `E` line.
fn entry_index(line: &str) -> u64 {
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

/// The first entry whose next line is the next entry (not a checkpoint).
fn entry_followed_by_entry(lines: &[String]) -> u64 {
    lines
        .windows(2)
        .find(|pair| pair[0].starts_with("E ") && pair[1].starts_with("E "))
        .map(|pair| entry_index(&pair[0]))
        .expect("two entries in a row")
}

fn checkpoint_lines(lines: &[String]) -> Vec<usize> {
    (0..lines.len())
        .filter(|&i| lines[i].starts_with("C "))
        .collect()
}

/// A tampered copy of `file`, named `name`, with `edit` applied to its lines.
fn tampered(file: &Path, name: &str, edit: impl FnOnce(&mut Vec<String>)) -> PathBuf {
    let mut lines = read_lines(file);
    edit(&mut lines);
    let copy = file.with_file_name(name);
    write_lines(&copy, &lines);
    copy
}

/// The signed note of a `C` line, and the line rebuilt from a note, with the
/// audit file's own reader and writer.
mod note_line {
    use rkm_proto::audit_file::{AuditFileReader, AuditFileWriter, Record};

    pub fn decode(header: &[String], line: &str) -> String {
        let text = format!("{}\n{line}\n", header[..3].join("\n"));
        let mut reader = AuditFileReader::new(text.as_bytes()).unwrap();
        match reader.next_record().unwrap() {
            Some(Record::Checkpoint { note, .. }) => note,
            other => panic!("not a checkpoint line: {other:?}"),
        }
    }

    pub fn encode(note: &str) -> String {
        let mut writer = AuditFileWriter::resume(Vec::new(), 0);
        writer.checkpoint(note).unwrap();
        String::from_utf8(writer.into_inner())
            .unwrap()
            .trim_end()
            .to_owned()
    }

    /// The note with one character in the middle of its signature changed.
    pub fn forge(note: &str) -> String {
        let (text, signature) = note.rsplit_once(' ').unwrap();
        let mut signature = signature.to_owned().into_bytes();
        let at = signature.len() / 2;
        signature[at] = if signature[at] == b'A' { b'B' } else { b'A' };
        format!("{text} {}", String::from_utf8(signature).unwrap())
    }
}

#[test]
fn fetched_log_verifies_offline_and_shows_the_notes() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, key, file) = daemon_with_fetched_log(dir.path(), 3);

    let output = verify(&daemon, &file, &key);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("verified"), "{text}");
    assert!(text.contains("entries"), "{text}");

    let report = json(
        &daemon,
        &["audit", "verify", path_str(&file), "--audit-key", &key],
    );
    assert_eq!(report["verified"], true);
    let entries = report["entries"].as_u64().unwrap();
    assert!(entries >= 6, "init, start and four notes: {report}");
    assert!(report["checkpoints"].as_u64().unwrap() >= 2, "{report}");
    assert!(report["first_time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(report["root"].as_str().unwrap().len(), 64);

    // The file holds what rkmd holds: the same entries, offline and online.
    let offline = json(
        &daemon,
        &[
            "audit",
            "show",
            "--file",
            path_str(&file),
            "--action",
            "audit.note",
        ],
    );
    let online = json(&daemon, &["audit", "show", "--action", "audit.note"]);
    assert_eq!(offline.as_array().unwrap().len(), 4, "{offline}");
    assert_eq!(offline, online);
    assert_eq!(
        offline[1]["details"]["message"],
        "note 0: HSM firmware upgraded"
    );
    assert!(
        offline[0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("local:uid=")
    );

    let table = rkm_ok(&daemon, &["audit", "show", "--file", path_str(&file)]);
    assert!(table.starts_with("  INDEX  TIME"), "{table}");
    assert!(table.contains("daemon.init"), "{table}");
    assert!(
        table.contains("\"note 2: HSM firmware upgraded\""),
        "{table}"
    );

    // Time filters: nothing is from before 2000 or after 2999.
    let none = json(&daemon, &["audit", "show", "--until", "2000-01-01"]);
    assert_eq!(none, Value::Array(vec![]));
    let all = json(
        &daemon,
        &[
            "audit",
            "show",
            "--file",
            path_str(&file),
            "--since",
            "2000-01-01T00:00:00+02:00",
        ],
    );
    assert_eq!(all.as_array().unwrap().len() as u64, entries);
}

#[test]
fn incremental_fetch_proves_consistency_and_the_file_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start().unwrap();
    let key = audit_key(&daemon);
    let file = dir.path().join("audit.log");

    // First fetch without a key: trust on first use, with the fingerprint.
    let first = daemon
        .rkm(&["audit", "fetch", "-o", path_str(&file), "--output", "json"])
        .unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("trusting rkmd's audit key on first use"));
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(first["audit_key"], key.as_str());
    assert_eq!(first["previous_size"], Value::Null);
    let size1 = first["size"].as_u64().unwrap();
    assert_eq!(first["new_entries"].as_u64().unwrap(), size1);

    let index = note(&daemon, "drill scheduled for Tuesday");
    assert!(index >= size1);
    note(&daemon, "drill moved to Wednesday");

    // Second fetch without a key trusts the key already in the file.
    let second = json(&daemon, &["audit", "fetch", "-o", path_str(&file)]);
    assert_eq!(second["previous_size"].as_u64(), Some(size1));
    let size2 = second["size"].as_u64().unwrap();
    assert!(size2 >= size1 + 2, "{second}");
    assert_eq!(second["new_entries"].as_u64().unwrap(), size2 - size1);
    assert!(second["new_checkpoints"].as_u64().unwrap() >= 1);
    let text = rkm_ok(&daemon, &["audit", "fetch", "-o", path_str(&file)]);
    assert!(
        text.contains("up to date") || text.contains("consistent with the checkpoint"),
        "{text}"
    );

    let report = json(
        &daemon,
        &["audit", "verify", path_str(&file), "--audit-key", &key],
    );
    assert!(report["entries"].as_u64().unwrap() >= size2);
    // No temporary file is left beside the log.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("audit.log")]);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o644,
        "entries hold no secret: readable by all"
    );

    // The entry just fetched is provably in the log.
    let proof = json(
        &daemon,
        &["audit", "prove", &index.to_string(), "--audit-key", &key],
    );
    assert_eq!(proof["index"].as_u64(), Some(index));
    assert_eq!(
        proof["entry"]["details"]["message"],
        "drill scheduled for Tuesday"
    );
    assert!(
        proof["checkpoint"]
            .as_str()
            .unwrap()
            .contains("\n\n\u{2014} ")
    );
    let text = rkm_ok(&daemon, &["audit", "prove", "0"]);
    assert!(text.contains("inclusion proof verified"), "{text}");
    assert!(text.contains("daemon.init"), "{text}");
}

#[test]
fn fetch_refuses_a_daemon_with_another_audit_key() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, key, file) = daemon_with_fetched_log(dir.path(), 1);
    let other = Daemon::start().unwrap();
    let other_key = audit_key(&other);
    assert_ne!(key, other_key);

    // Pinned key: the other daemon is refused before anything is written.
    let before = std::fs::read(&file).unwrap();
    let output = other
        .rkm(&["audit", "fetch", "-o", path_str(&file), "--audit-key", &key])
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(VERIFICATION_FAILED),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("not the trusted key"),
        "{}",
        stderr(&output)
    );
    // No pinned key: the key in the existing file is the trusted one.
    let output = other
        .rkm(&["audit", "fetch", "-o", path_str(&file)])
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(VERIFICATION_FAILED),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "the file was changed"
    );
    drop(daemon);
}

#[test]
fn history_rewritten_between_fetches_is_caught_by_the_consistency_check() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, key, file) = daemon_with_fetched_log(dir.path(), 2);
    let size = json(
        &daemon,
        &["audit", "verify", path_str(&file), "--audit-key", &key],
    )["entries"]
        .as_u64()
        .unwrap();
    let before = std::fs::read(&file).unwrap();

    // Someone rewrites the stored history the file already covers: every
    // node of the old tree and the entries themselves.
    let db = rusqlite::Connection::open(daemon.state_dir().join("rkm.sqlite3")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.execute(
        "UPDATE audit_nodes SET hash = randomblob(32) WHERE ((idx + 1) << level) <= ?1",
        [size as i64],
    )
    .unwrap();
    db.execute(
        "UPDATE audit_entries SET entry = CAST(replace(CAST(entry AS TEXT), 'firmware', 'FIRMWARE') AS BLOB) WHERE idx < ?1",
        [size as i64],
    )
    .unwrap();
    drop(db);
    note(&daemon, "after the rewrite");

    let output = daemon
        .rkm(&["audit", "fetch", "-o", path_str(&file), "--audit-key", &key])
        .unwrap();
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(VERIFICATION_FAILED), "{message}");
    assert!(message.contains("history rewritten"), "{message}");
    assert!(
        message.contains(&format!("checkpoint at size {size} in")),
        "names the file's size: {message}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "the file was changed"
    );
}

#[test]
fn every_kind_of_tampering_with_a_fetched_file_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, key, file) = daemon_with_fetched_log(dir.path(), 6);
    let lines = read_lines(&file);
    let checkpoints = checkpoint_lines(&lines);
    assert!(checkpoints.len() >= 2, "two fetches give two checkpoints");
    let last_size = lines.iter().filter(|l| l.starts_with("E ")).count() as u64;

    // A flipped byte in an entry: the range and the checkpoint are named, and
    // the re-read names the entry when it no longer decodes.
    let flipped = tampered(&file, "flipped", |lines| {
        let at = entry_line(lines, 3);
        let mut bytes = lines[at].clone().into_bytes();
        let brace = bytes.iter().position(|&b| b == b'{').unwrap();
        bytes[brace] ^= 0x01;
        lines[at] = String::from_utf8(bytes).unwrap();
    });
    verify_fails(
        &daemon,
        &flipped,
        &key,
        &[
            "do not hash to the checkpoint at size",
            "expected root",
            "entry 3",
        ],
    );
    // A flipped letter inside a message still decodes: the range is named.
    let flipped = tampered(&file, "flipped-letter", |lines| {
        let at = entry_line(lines, last_size - 2);
        lines[at] = lines[at].replacen("firmware", "firmwarf", 1);
    });
    verify_fails(
        &daemon,
        &flipped,
        &key,
        &["do not hash to the checkpoint at size", "found"],
    );

    // An entry deleted between two entries, and one deleted right before a
    // checkpoint: either way the missing index is named.
    let i = entry_followed_by_entry(&lines);
    let deleted = tampered(&file, "deleted", |lines| {
        lines.remove(entry_line(lines, i));
    });
    let expected = format!("expected entry {i}, found entry {}", i + 1);
    verify_fails(&daemon, &deleted, &key, &[&expected]);
    let before_checkpoint = entry_index(&lines[checkpoints[1] - 1]);
    let deleted = tampered(&file, "deleted-before-checkpoint", |lines| {
        lines.remove(checkpoints[1] - 1);
    });
    let expected = format!("entry {before_checkpoint} is missing");
    verify_fails(&daemon, &deleted, &key, &[&expected]);

    let swapped = tampered(&file, "swapped", |lines| {
        let (a, b) = (entry_line(lines, i), entry_line(lines, i + 1));
        lines.swap(a, b);
    });
    let expected = format!("expected entry {i}, found entry {}", i + 1);
    verify_fails(&daemon, &swapped, &key, &[&expected]);

    let truncated = tampered(&file, "truncated", |lines| {
        lines.truncate(entry_line(lines, last_size - 1) + 1);
    });
    verify_fails(
        &daemon,
        &truncated,
        &key,
        &["no checkpoint covers", "truncated"],
    );
    let cut = file.with_file_name("cut");
    let text = std::fs::read(&file).unwrap();
    std::fs::write(&cut, &text[..text.len() - 7]).unwrap();
    verify_fails(&daemon, &cut, &key, &["without a newline", "truncated"]);

    let forged = tampered(&file, "forged", |lines| {
        let at = checkpoints[0];
        lines[at] = note_line::encode(&note_line::forge(&note_line::decode(lines, &lines[at])));
    });
    verify_fails(
        &daemon,
        &forged,
        &key,
        &["checkpoint claiming size", "does not verify"],
    );

    // The signature of one checkpoint under the body of another.
    let swapped_signature = tampered(&file, "swapped-signature", |lines| {
        let (first, second) = (checkpoints[0], checkpoints[1]);
        let a = note_line::decode(lines, &lines[first]);
        let b = note_line::decode(lines, &lines[second]);
        let (body, _) = a.rsplit_once("\n\n").unwrap();
        let (_, signature) = b.rsplit_once("\n\n").unwrap();
        lines[first] = note_line::encode(&format!("{body}\n\n{signature}"));
    });
    verify_fails(&daemon, &swapped_signature, &key, &["does not verify"]);

    // Whole checkpoint lines swapped: each is in the wrong place.
    let swapped_checkpoints = tampered(&file, "swapped-checkpoints", |lines| {
        lines.swap(checkpoints[0], checkpoints[1]);
    });
    verify_fails(
        &daemon,
        &swapped_checkpoints,
        &key,
        &["checkpoint at size", "missing before it"],
    );

    // Another daemon's log and key: its file does not verify with ours, ours
    // not with its key, and its checkpoint in our file is not signed by ours.
    let other = Daemon::start().unwrap();
    let other_key = audit_key(&other);
    let other_file = dir.path().join("other.log");
    fetch(&other, &other_file, &other_key);
    verify_fails(&daemon, &file, &other_key, &["another log"]);
    verify_fails(&daemon, &other_file, &key, &["another log"]);
    let foreign = tampered(&file, "foreign-checkpoint", |lines| {
        let theirs = read_lines(&other_file);
        let at = checkpoints[0];
        lines[at] = theirs[*checkpoint_lines(&theirs).last().unwrap()].clone();
    });
    verify_fails(&daemon, &foreign, &key, &["no signature by key"]);

    // The untouched file still verifies.
    let output = verify(&daemon, &file, &key);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn verify_json_reports_the_failure_too() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, key, file) = daemon_with_fetched_log(dir.path(), 4);
    let i = entry_followed_by_entry(&read_lines(&file));
    let deleted = tampered(&file, "deleted", |lines| {
        lines.remove(entry_line(lines, i));
    });
    let output = daemon
        .rkm(&[
            "audit",
            "verify",
            path_str(&deleted),
            "--audit-key",
            &key,
            "--output",
            "json",
        ])
        .unwrap();
    assert_eq!(output.status.code(), Some(VERIFICATION_FAILED));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["verified"], false);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains(&format!("expected entry {i}, found entry {}", i + 1)),
        "{report}"
    );
}
