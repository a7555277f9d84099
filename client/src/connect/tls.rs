//! The client side of rkmd's TLS listener: TLS 1.3 only, ALPN h2, the
//! server authenticated by the organisation's CA or by the fingerprint of
//! its certificate (given, or pinned on first use in `known_servers`), and
//! the client certificate, if any, read from a key file only its owner can
//! read.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use secrecy::ExposeSecret as _;
use sha2::{Digest as _, Sha256};
use tonic::codegen::http::Uri;

use super::client_config::{KnownServers, normalise_fingerprint};
use crate::passphrase::{prompt, read_passphrase_file};

/// What the client needs to open a TLS connection to rkmd.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    pub host: String,
    pub port: u16,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub key_passphrase_file: Option<PathBuf>,
    pub server_fingerprint: Option<String>,
    pub known_servers: Option<PathBuf>,
}

/// The TLS options cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the {what} {}: {reason}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{} holds no certificate: give the PEM file of the {what}", path.display())]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error(
        "the private key {} can be read by others (mode {mode:04o}): `chmod 600` it, and ask for a new certificate if others may have read it",
        path.display()
    )]
    KeyExposed { path: PathBuf, mode: u32 },
    #[error("--cert and --cert-key go together: give both (or neither, as a custodian)")]
    CertWithoutKey,
    #[error("cannot decrypt the private key {}: the passphrase is wrong or the file is damaged", path.display())]
    Decrypt { path: PathBuf },
    #[error("the server fingerprint {given:?} is not sha256:<64 hex digits>")]
    Fingerprint { given: String },
    #[error("the TLS configuration is refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the CA file gives no usable trust anchor: {0}")]
    Anchors(String),
}

impl TlsOptions {
    /// Reads the CA, the client certificate and its key (prompting for the
    /// key's passphrase if it is encrypted and no file is given).
    ///
    /// # Errors
    /// A file cannot be read, the key is readable by others, the passphrase
    /// is wrong, or a fingerprint is malformed.
    pub fn client_config(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pin = match &self.server_fingerprint {
            Some(given) => Some(CertificatePin {
                fingerprint: normalise_fingerprint(given).ok_or_else(|| {
                    TlsSetupError::Fingerprint {
                        given: given.clone(),
                    }
                })?,
                pinned_in: None,
            }),
            // Without a CA, the certificate pinned on first use is the
            // server's identity: refuse another before sending anything.
            None if self.ca.is_none() => {
                KnownServers::pinned(self.known_servers.as_deref(), &self.server_address())?.map(
                    |fingerprint| CertificatePin {
                        fingerprint,
                        pinned_in: self.known_servers.clone(),
                    },
                )
            }
            None => None,
        };
        let by_ca = match &self.ca {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for certificate in read_certificates("CA certificate", path)? {
                    roots
                        .add(certificate)
                        .map_err(|error| TlsSetupError::Anchors(error.to_string()))?;
                }
                Some(
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|error| TlsSetupError::Anchors(error.to_string()))?,
                )
            }
            None => None,
        };
        let verifier = Arc::new(ServerVerifier {
            by_ca,
            pin,
            provider: provider.clone(),
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsSetupError::from)?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = read_certificates("client certificate", cert)?;
                builder
                    .with_client_auth_cert(chain, self.read_key(key)?)
                    .map_err(TlsSetupError::from)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(TlsSetupError::CertWithoutKey.into()),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// `host:port`, as `known_servers` names the server.
    pub fn server_address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn read_key(&self, path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
        use std::os::unix::fs::PermissionsExt as _;
        let read_error = |reason: String| TlsSetupError::Read {
            what: "private key",
            path: path.to_owned(),
            reason,
        };
        let metadata = std::fs::metadata(path).map_err(|error| read_error(error.to_string()))?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TlsSetupError::KeyExposed {
                path: path.to_owned(),
                mode,
            }
            .into());
        }
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path).map_err(|error| read_error(error.to_string()))?,
        );
        if !text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Ok(PrivateKeyDer::from_pem_slice(text.as_bytes())
                .map_err(|error| read_error(error.to_string()))?);
        }
        let passphrase = match &self.key_passphrase_file {
            Some(file) => read_passphrase_file(file)?,
            None => prompt(&format!("Passphrase of the key {}: ", path.display()))?,
        };
        let (_, document) = pkcs8::der::SecretDocument::from_pem(&text)
            .map_err(|error| read_error(error.to_string()))?;
        let encrypted = pkcs8::EncryptedPrivateKeyInfo::try_from(document.as_bytes())
            .map_err(|error| read_error(error.to_string()))?;
        let decrypted = encrypted
            .decrypt(passphrase.expose_secret().as_bytes())
            .map_err(|_| TlsSetupError::Decrypt {
                path: path.to_owned(),
            })?;
        Ok(PrivateKeyDer::Pkcs8(decrypted.as_bytes().to_vec().into()))
    }
}

fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let read_error = |reason: String| TlsSetupError::Read {
        what,
        path: path.to_owned(),
        reason,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| read_error(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| read_error(error.to_string()))?;
    if certificates.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

/// `sha256:<hex>` of a certificate's DER, the form `rkmd dev-pki` prints.
pub fn certificate_fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// Trusts rkmd's certificate if the CA issued it (for the endpoint's name),
/// and, when a fingerprint is pinned, only if it is that certificate. With
/// neither, any certificate passes here and the connector pins it on first
/// use; the handshake signature is checked either way, so the server proves
/// it holds the certificate's key.
#[derive(Debug)]
struct ServerVerifier {
    by_ca: Option<Arc<WebPkiServerVerifier>>,
    pin: Option<CertificatePin>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(by_ca) = &self.by_ca {
            by_ca.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        if let Some(pin) = &self.pin {
            let presented = certificate_fingerprint(end_entity);
            if presented != pin.fingerprint {
                let (pinned, then) = match &pin.pinned_in {
                    Some(file) => (
                        format!("{} pinned in {}", pin.fingerprint, file.display()),
                        ", then delete its line from that file",
                    ),
                    None => (
                        format!("{} given by --server-fingerprint", pin.fingerprint),
                        "",
                    ),
                };
                return Err(rustls::Error::General(format!(
                    "rkmd presented the certificate {presented}, not the {pinned}: this may be an impostor; if rkmd's certificate was renewed, check the new fingerprint with the operator{then}"
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("rkm speaks TLS 1.3 only".to_owned()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The one certificate accepted, and where it was pinned (None: given).
#[derive(Debug)]
struct CertificatePin {
    fingerprint: String,
    pinned_in: Option<PathBuf>,
}

/// Whether a connection failed in the TLS handshake (the server's
/// certificate, or the protocol), not for want of a listener.
pub fn is_handshake_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.downcast_ref::<rustls::Error>().is_some()
            || error
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Dials rkmd's TCP listener and runs the TLS handshake, for tonic.
#[derive(Clone)]
pub struct Connector {
    connector: tokio_rustls::TlsConnector,
    options: TlsOptions,
}

impl Connector {
    pub fn new(config: Arc<rustls::ClientConfig>, options: TlsOptions) -> Self {
        Self {
            connector: tokio_rustls::TlsConnector::from(config),
            options,
        }
    }
}

type TlsStream = TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl tower::Service<Uri> for Connector {
    type Response = TlsStream;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<TlsStream, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let connector = self.connector.clone();
        let options = self.options.clone();
        Box::pin(async move {
            let name = ServerName::try_from(options.host.clone())
                .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
            let tcp = tokio::net::TcpStream::connect((options.host.as_str(), options.port)).await?;
            let stream = connector.connect(name, tcp).await?;
            let presented = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|certificate| certificate_fingerprint(certificate))
                .ok_or_else(|| std::io::Error::other("rkmd presented no certificate"))?;
            if options.ca.is_none() && options.server_fingerprint.is_none() {
                KnownServers::check_or_pin(
                    options.known_servers.as_deref(),
                    &options.server_address(),
                    &presented,
                )
                .map_err(std::io::Error::other)?;
            }
            Ok(TokioIo::new(stream))
        })
    }
}
