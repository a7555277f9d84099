//! Reaching rkmd: over its Unix socket (local administration, the default)
//! or its TCP listener, which speaks TLS 1.3 only. Operators, auditors and
//! admins present a client certificate from the organisation's CA;
//! custodians present none (they sign each request with their identity key)
//! and authenticate the server by the CA or by its pinned certificate.

mod client_config;
pub mod stubs;
mod tls;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

pub use client_config::{ClientConfigError, ClientFile};
pub use tls::{TlsOptions, TlsSetupError};

/// How to reach rkmd: the connection options every command shares. Each is
/// also read from the environment, then from the client config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectArgs {
    /// rkmd's Unix socket [default: $RKM_STATE_DIR/rkmd.sock, else /var/lib/rkm/rkmd.sock].
    #[arg(long, env = "RKM_SOCKET", global = true, help_heading = "Connection")]
    pub socket: Option<PathBuf>,
    /// rkmd's TLS endpoint instead of the socket, e.g. https://rkm.example.org:7443.
    #[arg(
        long,
        env = "RKM_ENDPOINT",
        global = true,
        help_heading = "Connection",
        conflicts_with = "socket"
    )]
    pub endpoint: Option<String>,
    /// The CA certificate(s) that issued rkmd's server certificate (PEM).
    #[arg(
        long = "ca",
        id = "tls_ca",
        env = "RKM_CA",
        value_name = "FILE",
        global = true,
        help_heading = "Connection"
    )]
    pub ca: Option<PathBuf>,
    /// Your client certificate (PEM), for operators, auditors and admins;
    /// custodians need none.
    #[arg(
        long = "cert",
        id = "tls_cert",
        env = "RKM_CERT",
        value_name = "FILE",
        global = true,
        help_heading = "Connection"
    )]
    pub cert: Option<PathBuf>,
    /// The private key of --cert (PEM, readable by you alone). `--key`
    /// names a recovery key elsewhere, hence the longer name.
    #[arg(
        long = "cert-key",
        env = "RKM_CERT_KEY",
        value_name = "FILE",
        global = true,
        help_heading = "Connection"
    )]
    pub cert_key: Option<PathBuf>,
    /// Read the passphrase of an encrypted --cert-key from this file instead of
    /// prompting. Passphrases are never given as arguments.
    #[arg(
        long,
        env = "RKM_CERT_KEY_PASSPHRASE_FILE",
        value_name = "FILE",
        global = true,
        help_heading = "Connection"
    )]
    pub cert_key_passphrase_file: Option<PathBuf>,
    /// Pin rkmd's server certificate by its fingerprint (sha256:HEX, as the
    /// operator or `rkmd dev-pki` gives it).
    #[arg(
        long,
        env = "RKM_SERVER_FINGERPRINT",
        value_name = "SHA256",
        global = true,
        help_heading = "Connection"
    )]
    pub server_fingerprint: Option<String>,
    /// The client config file [default: $XDG_CONFIG_HOME/rkm/client.toml, else ~/.config/rkm/client.toml].
    #[arg(
        long,
        env = "RKM_CLIENT_CONFIG",
        value_name = "FILE",
        global = true,
        help_heading = "Connection"
    )]
    pub client_config: Option<PathBuf>,
}

/// Where rkmd listens.
#[derive(Debug)]
pub enum Target {
    Socket(PathBuf),
    Tls(TlsTarget),
}

/// rkmd's TLS endpoint, with what proves each side. The TLS configuration
/// is built on first connection, so commands that never connect never read
/// keys or prompt for a passphrase.
#[derive(Debug)]
pub struct TlsTarget {
    url: String,
    options: TlsOptions,
    config: OnceLock<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Socket(path) => write!(f, "socket {}", path.display()),
            Target::Tls(target) => write!(f, "{}", target.url),
        }
    }
}

/// rkmd could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach rkmd at {target}: {reason}{}", if *.handshake_failed { "" } else { NOT_RUNNING_HINT })]
pub struct ConnectError {
    pub target: String,
    pub reason: String,
    /// rkmd answered, but the TLS handshake failed: the reason says why,
    /// and asking whether rkmd runs would mislead.
    pub handshake_failed: bool,
}

/// The socket is there, but this user may not use it: a permissions
/// matter (exit 4), not a daemon that is down.
#[derive(Debug, thiserror::Error)]
#[error(
    "permission denied on rkmd's socket {}: your user may not open it or its directory. Ask the administrator to add you to the socket's group (listen.socket_group, with listen.socket_mode 0660), run rkm as rkmd's user, or use --endpoint",
    path.display()
)]
pub struct SocketDenied {
    pub path: PathBuf,
}

const NOT_RUNNING_HINT: &str =
    "; is rkmd running? Start it with `rkmd serve`, or point rkm at it with --socket or --endpoint";

/// The connection options do not make a usable target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "--endpoint {0:?} is plaintext: rkmd's TCP listener speaks TLS only; use https://HOST:PORT"
    )]
    Plaintext(String),
    #[error("--endpoint {0:?} is not https://HOST:PORT")]
    NotAnEndpoint(String),
    #[error(transparent)]
    ClientConfig(#[from] ClientConfigError),
}

impl ConnectArgs {
    /// The target these options name: the endpoint if one is given (here,
    /// in the environment or in the client config file), else the socket.
    ///
    /// # Errors
    /// The client config file is malformed, or the endpoint is not https.
    pub fn resolve(self) -> Result<Target, TargetError> {
        let file = ClientFile::load(self.client_config.as_deref())?;
        let endpoint = self.endpoint.or_else(|| {
            (self.socket.is_none())
                .then(|| file.endpoint.clone())
                .flatten()
        });
        let Some(url) = endpoint else {
            return Ok(Target::Socket(self.socket.or(file.socket).unwrap_or_else(
                || {
                    std::env::var_os("RKM_STATE_DIR")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| PathBuf::from("/var/lib/rkm"))
                        .join("rkmd.sock")
                },
            )));
        };
        let uri: tonic::codegen::http::Uri = url
            .parse()
            .map_err(|_| TargetError::NotAnEndpoint(url.clone()))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") => return Err(TargetError::Plaintext(url)),
            _ => return Err(TargetError::NotAnEndpoint(url)),
        }
        let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else {
            return Err(TargetError::NotAnEndpoint(url));
        };
        let options = TlsOptions {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            ca: self.ca.or(file.ca),
            cert: self.cert.or(file.cert),
            key: self.cert_key.or(file.cert_key),
            key_passphrase_file: self
                .cert_key_passphrase_file
                .or(file.cert_key_passphrase_file),
            server_fingerprint: self.server_fingerprint.or(file.server_fingerprint),
            known_servers: client_config::known_servers_file(),
        };
        Ok(Target::Tls(TlsTarget {
            url,
            options,
            config: OnceLock::new(),
        }))
    }
}

impl Target {
    /// Opens a channel to rkmd.
    ///
    /// # Errors
    /// Nothing listens at the target, the TLS handshake fails (the server's
    /// certificate is not trusted or not the pinned one), or the client's
    /// certificate or key cannot be read.
    pub async fn connect(&self) -> anyhow::Result<Channel> {
        let failed = |reason: String| ConnectError {
            target: self.to_string(),
            reason,
            handshake_failed: false,
        };
        match self {
            Target::Socket(path) => {
                // Not `exists()`: it reads a directory we may not enter as
                // "no socket".
                match std::fs::symlink_metadata(path) {
                    Ok(_) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                        return Err(SocketDenied { path: path.clone() }.into());
                    }
                    Err(_) => return Err(failed("the socket does not exist".to_owned()).into()),
                }
                let path_shown = path.clone();
                let path = path.clone();
                // The URI is required by the API but unused: the connector dials the socket.
                Ok(Endpoint::from_static("http://rkmd.local")
                    .connect_with_connector(tower::service_fn(move |_| {
                        let path = path.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(TokioIo::new(stream))
                        }
                    }))
                    .await
                    .map_err(|error| {
                        if permission_denied(&error) {
                            anyhow::Error::new(SocketDenied {
                                path: path_shown.clone(),
                            })
                        } else {
                            failed(source_chain(&error)).into()
                        }
                    })?)
            }
            Target::Tls(target) => {
                let config = match target.config.get() {
                    Some(config) => config.clone(),
                    None => {
                        let config = target.options.client_config()?;
                        target.config.get_or_init(|| config).clone()
                    }
                };
                let connector = tls::Connector::new(config, target.options.clone());
                Ok(Endpoint::from_shared(target.url.clone())
                    .map_err(|error| failed(error.to_string()))?
                    .connect_with_connector(connector)
                    .await
                    .map_err(|error| ConnectError {
                        handshake_failed: tls::is_handshake_failure(&error),
                        ..failed(source_chain(&error))
                    })?)
            }
        }
    }
}

/// Whether an I/O error in `error`'s chain is EACCES.
fn permission_denied(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
        {
            return true;
        }
        cause = error.source();
    }
    false
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // hyper and tonic wrap the connector's error and repeat its text.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
