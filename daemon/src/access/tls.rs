//! The TCP listener: TLS 1.3 only (rustls, ring provider), ALPN `h2`,
//! client certificates verified against the configured trust anchors and
//! optional (custodians have none; they sign their requests). A certificate
//! from another CA, an expired one, and a plaintext peer fail the handshake;
//! each failure counts against the peer's IP and is audited with the
//! certificate it presented (subject and fingerprint), aggregated by the
//! [`Guard`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::PresentedCertificate;
use super::guard::{Admission, Guard, Refusal};
use super::peer::{PeerInfo, TlsConnection};

/// How long a peer has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the TLS settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the {what} {}: {reason}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the {what} {} holds no certificate", path.display())]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error(
        "the TLS private key {} is readable by other users (mode {mode:o}); run chmod 600 on it",
        path.display()
    )]
    KeyExposed { path: PathBuf, mode: u32 },
    #[error("the TLS settings are unusable: {0}")]
    Rustls(String),
}

/// What every TLS connection is served with.
#[derive(Debug)]
pub struct TlsServer {
    provider: Arc<CryptoProvider>,
    certified: Arc<rustls::sign::CertifiedKey>,
    client_verifier: Arc<dyn ClientCertVerifier>,
}

impl TlsServer {
    /// Loads the server's certificate chain and key, and the trust anchors of
    /// client certificates.
    ///
    /// # Errors
    /// A file is missing, malformed, or the key is exposed.
    pub fn load(
        certificate: &Path,
        private_key: &Path,
        client_ca: &Path,
    ) -> Result<Self, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = read_certificates("TLS certificate", certificate)?;
        check_key_mode(private_key)?;
        let key =
            PrivateKeyDer::from_pem_file(private_key).map_err(|error| TlsSetupError::Read {
                what: "TLS private key",
                path: private_key.to_owned(),
                reason: error.to_string(),
            })?;
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|error| TlsSetupError::Rustls(error.to_string()))?;
        let certified = Arc::new(rustls::sign::CertifiedKey::new(chain, signing_key));
        certified.keys_match().map_err(|error| {
            TlsSetupError::Rustls(format!("the certificate and key do not match: {error}"))
        })?;
        let mut roots = RootCertStore::empty();
        for anchor in read_certificates("client CA", client_ca)? {
            roots
                .add(anchor)
                .map_err(|error| TlsSetupError::Rustls(format!("client CA: {error}")))?;
        }
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|error| TlsSetupError::Rustls(error.to_string()))?;
        Ok(Self {
            provider,
            certified,
            client_verifier,
        })
    }

    /// A config for one connection, whose verifier remembers what the peer
    /// presented so a refused handshake can be audited with it.
    fn connection_config(
        &self,
        presented: Arc<Mutex<Option<CertificateDer<'static>>>>,
    ) -> Result<Arc<ServerConfig>, rustls::Error> {
        let verifier = Arc::new(RecordingVerifier {
            inner: self.client_verifier.clone(),
            presented,
        });
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(OneCertificate(self.certified.clone())));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
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

fn check_key_mode(path: &Path) -> Result<(), TlsSetupError> {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata = std::fs::metadata(path).map_err(|error| TlsSetupError::Read {
        what: "TLS private key",
        path: path.to_owned(),
        reason: error.to_string(),
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsSetupError::KeyExposed {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[derive(Debug)]
struct OneCertificate(Arc<rustls::sign::CertifiedKey>);

impl ResolvesServerCert for OneCertificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    presented: Arc<Mutex<Option<CertificateDer<'static>>>>,
}

impl ClientCertVerifier for RecordingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Ok(mut presented) = self.presented.lock() {
            *presented = Some(end_entity.clone().into_owned());
        }
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Subject, common name and fingerprint of a certificate (DER).
pub fn describe_certificate(der: &[u8]) -> PresentedCertificate {
    use x509_cert::der::Decode as _;
    let fingerprint = format!(
        "sha256:{}",
        hex::encode(rkm_proto::access::request_digest(der))
    );
    let Ok(certificate) = x509_cert::Certificate::from_der(der) else {
        return PresentedCertificate {
            subject: "(unparsable certificate)".to_owned(),
            common_name: String::new(),
            fingerprint,
        };
    };
    let subject = &certificate.tbs_certificate.subject;
    let mut common_name = String::new();
    for rdn in subject.0.iter() {
        for attribute in rdn.0.iter() {
            if attribute.oid == x509_cert::der::oid::db::rfc4519::CN {
                if let Ok(text) = attribute
                    .value
                    .decode_as::<x509_cert::der::asn1::Utf8StringRef<'_>>()
                {
                    common_name = text.as_str().to_owned();
                } else if let Ok(text) = attribute
                    .value
                    .decode_as::<x509_cert::der::asn1::PrintableStringRef<'_>>()
                {
                    common_name = text.as_str().to_owned();
                }
            }
        }
    }
    PresentedCertificate {
        subject: subject.to_string(),
        common_name,
        fingerprint,
    }
}

/// Accepts TCP connections on `listener` and yields those that complete
/// the TLS handshake. Each handshake runs in its own task, so a slow peer
/// holds up nobody; the stream ends when the server drops it.
pub fn incoming(
    listener: TcpListener,
    server: Arc<TlsServer>,
    guard: Arc<Guard>,
) -> ReceiverStream<Result<TlsConnection, std::io::Error>> {
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = sender.closed() => return,
            };
            let (tcp, addr) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause, go on.
                    tracing::warn!(%error, "accepting a TCP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let sender = sender.clone();
            let server = server.clone();
            let guard = guard.clone();
            tokio::spawn(async move {
                if let Some(connection) = handshake(tcp, addr, &server, &guard).await {
                    let _ = sender.send(Ok(connection)).await;
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}

async fn handshake(
    tcp: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
    server: &TlsServer,
    guard: &Guard,
) -> Option<TlsConnection> {
    let peer_key = format!("ip:{}", addr.ip());
    let peer = format!("tcp:{addr}");
    match guard.admission(&[&peer_key]) {
        Admission::Locked { until } => {
            guard
                .refused(Refusal {
                    actor: "anonymous".to_owned(),
                    peer,
                    method: "tls-handshake".to_owned(),
                    subject: None,
                    reason: format!(
                        "locked out after repeated failures until {}",
                        rkm_proto::encoding::time::format_rfc3339_seconds(until)
                    ),
                    details: Vec::new(),
                })
                .await;
            return None;
        }
        Admission::Delay(delay) => tokio::time::sleep(delay).await,
        Admission::Admit => {}
    }
    let presented = Arc::new(Mutex::new(None));
    let config = match server.connection_config(presented.clone()) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "building the TLS configuration");
            return None;
        }
    };
    let accepted = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_rustls::TlsAcceptor::from(config).accept(tcp),
    )
    .await;
    let failure = match accepted {
        Ok(Ok(stream)) => {
            let certificate = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|der| describe_certificate(der));
            return Some(TlsConnection::new(
                stream,
                PeerInfo::Tls { addr, certificate },
            ));
        }
        Ok(Err(error)) => handshake_reason(&error),
        Err(_) => format!("no TLS handshake within {} s", HANDSHAKE_TIMEOUT.as_secs()),
    };
    let presented = presented.lock().ok().and_then(|p| p.clone());
    let (actor, details) = match presented {
        Some(der) => {
            let certificate = describe_certificate(&der);
            (
                format!("cert:{} {}", certificate.subject, certificate.fingerprint),
                vec![("certificate", certificate.subject)],
            )
        }
        None => ("anonymous".to_owned(), Vec::new()),
    };
    tracing::info!(%peer, %failure, "TLS handshake refused");
    guard.failed(&[&peer_key], &peer).await;
    guard
        .refused(Refusal {
            actor,
            peer,
            method: "tls-handshake".to_owned(),
            subject: None,
            reason: failure,
            details,
        })
        .await;
    None
}

/// The handshake error in an auditor's words.
fn handshake_reason(error: &std::io::Error) -> String {
    use rustls::CertificateError;
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => "client certificate expired".to_owned(),
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        )) => "client certificate not valid yet".to_owned(),
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            "client certificate not issued by a trusted CA".to_owned()
        }
        // A CA of the same name as a trusted one signed it, or it was forged.
        Some(rustls::Error::InvalidCertificate(CertificateError::BadSignature)) => {
            "client certificate not issued by a trusted CA (its issuer's signature does not verify)"
                .to_owned()
        }
        Some(rustls::Error::InvalidCertificate(other)) => {
            format!("client certificate refused: {other:?}")
        }
        Some(rustls::Error::InvalidMessage(_)) => {
            "not a TLS 1.3 client (plaintext, or an older protocol)".to_owned()
        }
        Some(rustls::Error::PeerIncompatible(reason)) => {
            format!("TLS client incompatible: {reason:?}")
        }
        Some(other) => format!("TLS handshake failed: {other}"),
        None => format!("TLS handshake failed: {error}"),
    }
}
