//! End to end: rkmd's TCP listener speaks TLS 1.3 only, and the real rkm
//! reaches it with the organisation's CA and a client certificate, or, as
//! a custodian, with the server's certificate pinned on first use or given.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use rkm_tests::binaries::{binary, with_clean_env};
use rkm_tests::custodians::{
    assert_fails, assert_ok, assert_ok_json, path_str, wait_for_audit_entry,
};
use rkm_tests::{Daemon, DaemonBuilder};
use serde_json::Value;

fn serving_tls() -> Daemon {
    let mut daemon = DaemonBuilder::default().tls().initialised().unwrap();
    daemon.serve().unwrap();
    daemon
}

/// `rkm ARGS` with only `HOME` (and PATH) set: a person's own machine.
fn rkm_at_home(home: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(binary("rkm"));
    with_clean_env(&mut command)
        .env("HOME", home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running rkm")
}

fn audit_key_of(status: &Value) -> &str {
    status["audit_key"]["verifier_key"]
        .as_str()
        .expect("status reports the audit key")
}

#[test]
fn status_over_tls_with_an_operator_certificate_answers_until_rkmd_stops() {
    let mut daemon = serving_tls();
    let over_tls = assert_ok_json(
        &daemon
            .rkm_over_tls(Some("operator"), &["status", "--output", "json"])
            .unwrap(),
        "status over TLS",
    );
    let over_socket = assert_ok_json(
        &daemon
            .rkm_over_socket(&["status", "--output", "json"])
            .unwrap(),
        "status over the socket",
    );
    assert_eq!(
        audit_key_of(&over_tls),
        audit_key_of(&over_socket),
        "TLS and the socket reach the same rkmd"
    );
    assert!(
        daemon.log().contains("listening on TCP with TLS 1.3"),
        "{}",
        daemon.log()
    );

    let endpoint = daemon.endpoint().unwrap().to_owned();
    let status = daemon.stop_with("TERM").unwrap();
    assert!(status.success(), "rkmd exited with {status}");
    assert_fails(
        &daemon.rkm_over_tls(Some("operator"), &["status"]).unwrap(),
        3,
        &[&endpoint, "is rkmd running?"],
        "status after rkmd stopped",
    );
}

#[test]
fn plaintext_on_the_tcp_port_is_refused_by_rkm_and_by_rkmd_and_audited() {
    let daemon = serving_tls();
    let endpoint = daemon.endpoint().unwrap();
    let plaintext = endpoint.replace("https://", "http://");
    assert_fails(
        &daemon
            .rkm_over_tls(Some("operator"), &["--endpoint", &plaintext, "status"])
            .unwrap(),
        2,
        &["is plaintext", "TLS only", "https://"],
        "rkm given an http:// endpoint",
    );

    // A plaintext HTTP/2 client (grpcurl -plaintext, say) gets the
    // connection closed, and no answer.
    let addr = endpoint.trim_start_matches("https://");
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(
        !answer.windows(4).any(|w| w == b"HTTP") && answer.len() < 64,
        "rkmd answered plaintext: {answer:?}"
    );

    wait_for_audit_entry(
        &daemon,
        "access.refused",
        "the plaintext connection",
        |entry| {
            entry["details"]["method"] == "tls-handshake"
                && entry["actor"] == "anonymous"
                && entry["details"]["peer"]
                    .as_str()
                    .is_some_and(|peer| peer.starts_with("tcp:127.0.0.1:"))
                && entry["details"]["reason"]
                    .as_str()
                    .is_some_and(|reason| reason.contains("plaintext"))
        },
    );
}

#[test]
fn a_custodian_pins_rkmd_on_first_use_and_refuses_another_certificate() {
    let daemon = serving_tls();
    let endpoint = daemon.endpoint().unwrap();
    let home = tempfile::tempdir().unwrap();
    // A custodian has no certificate and no CA file: rkm pins the server's
    // certificate on the first connection (status itself is staff-only,
    // and refused after the handshake).
    let first = rkm_at_home(home.path(), &["--endpoint", endpoint, "status"]);
    let first_stderr = String::from_utf8_lossy(&first.stderr).into_owned();
    assert!(
        first_stderr.contains("trusting rkmd at") && first_stderr.contains("on first use"),
        "{first_stderr}"
    );
    let known = home.path().join(".config/rkm/known_servers");
    let pinned = std::fs::read_to_string(&known).unwrap();
    let address = endpoint.trim_start_matches("https://");
    assert!(
        pinned.starts_with(&format!("{address} sha256:")),
        "{pinned}"
    );
    assert_eq!(
        std::fs::metadata(&known).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let second = rkm_at_home(home.path(), &["--endpoint", endpoint, "status"]);
    assert!(
        !String::from_utf8_lossy(&second.stderr).contains("first use"),
        "pinned once, trusted silently after"
    );

    // The pin names another certificate: an impostor, or a renewal the
    // custodian has not checked. Nothing is sent.
    let other = format!("{address} sha256:{}\n", "ab".repeat(32));
    std::fs::write(&known, other).unwrap();
    assert_fails(
        &rkm_at_home(home.path(), &["--endpoint", endpoint, "status"]),
        3,
        &["impostor", "known_servers"],
        "status with another certificate pinned",
    );
}

#[test]
fn a_given_server_fingerprint_is_the_only_certificate_accepted() {
    let daemon = serving_tls();
    let endpoint = daemon.endpoint().unwrap();
    let pki = daemon.pki_dir().unwrap();
    let fingerprint = server_fingerprint(pki);
    let home = tempfile::tempdir().unwrap();
    let right = rkm_at_home(
        home.path(),
        &[
            "--endpoint",
            endpoint,
            "--server-fingerprint",
            &fingerprint,
            "--cert",
            path_str(&pki.join("auditor.pem")),
            "--cert-key",
            path_str(&pki.join("auditor-key.pem")),
            "status",
        ],
    );
    assert_ok(&right, "status with the right fingerprint");
    assert!(
        !home.path().join(".config/rkm/known_servers").exists(),
        "a given fingerprint is not pinned on first use"
    );
    let wrong = format!("sha256:{}", "0".repeat(64));
    assert_fails(
        &rkm_at_home(
            home.path(),
            &[
                "--endpoint",
                endpoint,
                "--server-fingerprint",
                &wrong,
                "status",
            ],
        ),
        3,
        &["impostor", &wrong, "given by --server-fingerprint"],
        "status with a wrong fingerprint",
    );
    assert_fails(
        &rkm_at_home(
            home.path(),
            &[
                "--endpoint",
                endpoint,
                "--server-fingerprint",
                "sha256:12",
                "status",
            ],
        ),
        1,
        &["sha256:<64 hex digits>"],
        "status with a malformed fingerprint",
    );
}

/// The fingerprint `rkmd dev-pki` printed: SHA-256 of server.pem's DER.
fn server_fingerprint(pki: &Path) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let text = std::fs::read_to_string(pki.join("server.pem")).unwrap();
    let body: String = text
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(der)))
}

#[test]
fn a_client_key_others_can_read_is_refused_before_connecting() {
    let daemon = serving_tls();
    let pki = daemon.pki_dir().unwrap();
    let key = pki.join("operator-key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_fails(
        &daemon.rkm_over_tls(Some("operator"), &["status"]).unwrap(),
        1,
        &["can be read by others", "mode 0644", "chmod 600"],
        "status with a world-readable key",
    );
    let cert_only = daemon
        .rkm_over_tls(
            None,
            &["--cert", path_str(&pki.join("operator.pem")), "status"],
        )
        .unwrap();
    assert_fails(
        &cert_only,
        1,
        &["--cert and --cert-key go together"],
        "cert without key",
    );
}

#[test]
fn an_encrypted_client_key_opens_with_its_passphrase_file_and_not_without() {
    let daemon = serving_tls();
    let pki = daemon.pki_dir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let encrypted = dir.path().join("operator-key.enc.pem");
    encrypt_key(
        &pki.join("operator-key.pem"),
        &encrypted,
        b"correct horse battery",
    );
    let passphrase = dir.path().join("passphrase");
    rkm_tests::write_secret_file(&passphrase, "correct horse battery\n");
    let cert = pki.join("operator.pem");
    let with = |passphrase_file: &Path| {
        daemon
            .rkm_over_tls(
                None,
                &[
                    "--cert",
                    path_str(&cert),
                    "--cert-key",
                    path_str(&encrypted),
                    "--cert-key-passphrase-file",
                    path_str(passphrase_file),
                    "status",
                ],
            )
            .unwrap()
    };
    assert_ok(&with(&passphrase), "status with an encrypted key");
    let wrong = dir.path().join("wrong");
    rkm_tests::write_secret_file(&wrong, "incorrect horse\n");
    let refused = assert_fails(
        &with(&wrong),
        1,
        &["cannot decrypt the private key", "passphrase is wrong"],
        "status with the wrong key passphrase",
    );
    assert!(!refused.contains("incorrect horse"), "{refused}");
    // No passphrase file and no terminal: rkm says so rather than hang.
    let no_terminal = daemon
        .rkm_over_tls(
            None,
            &[
                "--cert",
                path_str(&cert),
                "--cert-key",
                path_str(&encrypted),
                "status",
            ],
        )
        .unwrap();
    assert_eq!(no_terminal.status.code(), Some(1));
}

/// Writes `plain` (a PKCS#8 PEM key) to `out` encrypted as OpenSSL's
/// `pkcs8 -topk8 -v2 aes-256-cbc` does (PBES2, PBKDF2-SHA256, AES-256-CBC).
fn encrypt_key(plain: &Path, out: &Path, passphrase: &[u8]) {
    use pkcs8::der::Decode as _;
    use pkcs8::der::pem::LineEnding;
    let text = std::fs::read_to_string(plain).unwrap();
    let document = pkcs8::SecretDocument::from_pem(&text).unwrap().1;
    let info = pkcs8::PrivateKeyInfo::from_der(document.as_bytes()).unwrap();
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    getrandom::fill(&mut salt).unwrap();
    getrandom::fill(&mut iv).unwrap();
    let parameters =
        pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(2048, &salt, &iv).unwrap();
    let encrypted = info.encrypt_with_params(parameters, passphrase).unwrap();
    let pem = encrypted
        .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .unwrap();
    std::fs::write(out, pem.as_bytes()).unwrap();
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_client_config_file_gives_the_endpoint_ca_and_certificate() {
    let daemon = serving_tls();
    let pki = daemon.pki_dir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let config_dir = home.path().join(".config/rkm");
    std::fs::create_dir_all(&config_dir).unwrap();
    for file in ["ca.pem", "auditor.pem", "auditor-key.pem"] {
        std::fs::copy(pki.join(file), config_dir.join(file)).unwrap();
    }
    std::fs::write(
        config_dir.join("client.toml"),
        format!(
            "endpoint = {:?}\nca = \"ca.pem\"\ncert = \"auditor.pem\"\ncert_key = \"auditor-key.pem\"\n",
            daemon.endpoint().unwrap()
        ),
    )
    .unwrap();
    let status = assert_ok_json(
        &rkm_at_home(home.path(), &["status", "--output", "json"]),
        "status from client.toml",
    );
    assert!(status["audit_key"]["verifier_key"].is_string(), "{status}");
    std::fs::write(config_dir.join("client.toml"), "endpoint = 7443\n").unwrap();
    assert_fails(
        &rkm_at_home(home.path(), &["status"]),
        2,
        &["client.toml is malformed"],
        "status with a malformed client.toml",
    );
    // A CA file the config names but that is not there is named, with
    // where rkm looked (relative to the config file).
    std::fs::write(
        config_dir.join("client.toml"),
        format!(
            "endpoint = {:?}\nca = \"moved-ca.pem\"\n",
            daemon.endpoint().unwrap()
        ),
    )
    .unwrap();
    let missing = config_dir.join("moved-ca.pem");
    let refused = rkm_at_home(home.path(), &["status"]);
    assert_ne!(refused.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&missing.display().to_string()) && !stderr.contains("is rkmd running"),
        "{stderr}"
    );
}
