//! `rkmd dev-pki DIR`: a development PKI for the demo and tests — a CA, the
//! TLS listener's certificate, and client certificates for the admin,
//! operator and auditor roles — plus the settings that use them. Production
//! uses the organisation's own PKI (see the README); nothing here is meant
//! to outlive a development machine.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// The client certificates made, as `NAME.pem` / `NAME-key.pem`, with the
/// common name the settings grant the role to.
pub const CLIENTS: [(&str, &str); 3] = [
    ("admin", "rkm-admin"),
    ("operator", "rkm-operator"),
    ("auditor", "rkm-auditor"),
];

/// Why the development PKI could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DevPkiError {
    #[error("{} already exists: choose an empty directory (dev-pki never overwrites keys)", path.display())]
    Exists { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// What `make` wrote.
#[derive(Debug)]
pub struct DevPki {
    pub dir: PathBuf,
    /// `sha256:<hex>` of the server certificate, for custodians who pin it.
    pub server_fingerprint: String,
}

/// Makes the PKI in `dir` (created 0700), valid for `days`, with the server
/// certificate also naming every one of `hosts`.
///
/// # Errors
/// A file exists already, a write fails, or rcgen refuses a parameter.
pub fn make(
    dir: &Path,
    hosts: &[String],
    extra_clients: &[String],
    days: u32,
) -> Result<DevPki, DevPkiError> {
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| DevPkiError::Write { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(write_error(dir))?;
    let now = SystemTime::now();
    let until = now + Duration::from_secs(u64::from(days) * 86_400);

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name("rkm development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca, now, until);
    let ca_certificate = ca.self_signed(&ca_key)?;
    write(dir, "ca-key.pem", &ca_key.serialize_pem(), 0o600)?;
    let issuer = Issuer::new(ca, ca_key);
    write(dir, "ca.pem", &ca_certificate.pem(), 0o644)?;

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(hosts.iter().cloned());
    let mut server = CertificateParams::new(Vec::<String>::new())?;
    server.subject_alt_names = names
        .iter()
        .map(|host| match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(host.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    server.distinguished_name = name("rkmd");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut server, now, until);
    let server_key = KeyPair::generate()?;
    let server_certificate = server.signed_by(&server_key, &issuer)?;
    write(dir, "server.pem", &server_certificate.pem(), 0o644)?;
    write(dir, "server-key.pem", &server_key.serialize_pem(), 0o600)?;

    let mut clients: Vec<(String, String)> = CLIENTS
        .iter()
        .map(|(file, cn)| ((*file).to_owned(), (*cn).to_owned()))
        .collect();
    clients.extend(
        extra_clients
            .iter()
            .map(|name| (name.clone(), name.clone())),
    );
    for (file, common_name) in &clients {
        let (certificate, key) = client_certificate(&issuer, common_name, now, until)?;
        write(dir, &format!("{file}.pem"), &certificate, 0o644)?;
        write(dir, &format!("{file}-key.pem"), &key, 0o600)?;
    }
    let absolute = std::fs::canonicalize(dir).map_err(write_error(dir))?;
    let at = |file: &str| absolute.join(file).display().to_string();
    let settings = format!(
        "# Made by `rkmd dev-pki`: development only.\n[tls]\ncertificate = {:?}\nprivate_key = {:?}\nclient_ca = {:?}\n\n[access]\nadmin = [\"cn:rkm-admin\"]\noperator = [\"cn:rkm-operator\"]\nauditor = [\"cn:rkm-auditor\"]\n",
        at("server.pem"),
        at("server-key.pem"),
        at("ca.pem"),
    );
    write(dir, "rkmd-tls.toml", &settings, 0o644)?;
    Ok(DevPki {
        dir: absolute,
        server_fingerprint: format!(
            "sha256:{}",
            hex::encode(rkm_proto::access::request_digest(server_certificate.der()))
        ),
    })
}

/// A client certificate for `common_name` issued by `issuer`, valid from
/// `not_before` to `not_after` (tests make expired ones with it); PEM
/// certificate and PKCS#8 key.
///
/// # Errors
/// rcgen refuses a parameter.
pub fn client_certificate(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<(String, String), DevPkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name(common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, not_before, not_after);
    let key = KeyPair::generate()?;
    let certificate = params.signed_by(&key, issuer)?;
    Ok((certificate.pem(), key.serialize_pem()))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn validity(params: &mut CertificateParams, not_before: SystemTime, not_after: SystemTime) {
    params.not_before = time::OffsetDateTime::from(not_before);
    params.not_after = time::OffsetDateTime::from(not_after);
}

fn write(dir: &Path, file: &str, contents: &str, mode: u32) -> Result<(), DevPkiError> {
    let path = dir.join(file);
    // create_new: never overwrite a key; the mode is set at creation, so
    // the key is never readable by others, even for a moment.
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => DevPkiError::Exists { path: path.clone() },
            _ => DevPkiError::Write {
                path: path.clone(),
                source,
            },
        })?;
    out.write_all(contents.as_bytes())
        .and_then(|()| out.sync_all())
        .map_err(|source| DevPkiError::Write { path, source })
}
