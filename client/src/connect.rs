//! Reaching rkmd: over its Unix socket (the default) or a loopback TCP address.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

/// Where rkmd listens.
#[derive(Debug, Clone)]
pub enum Target {
    Socket(PathBuf),
    Tcp(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Socket(path) => write!(f, "socket {}", path.display()),
            Target::Tcp(url) => write!(f, "{url}"),
        }
    }
}

/// rkmd could not be reached.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot reach rkmd at {target}: {reason}; is rkmd running? Start it with `rkmd serve`, or point rkm at it with --socket or RKM_SOCKET"
)]
pub struct ConnectError {
    pub target: String,
    pub reason: String,
}

impl Target {
    /// The socket given, else `$RKM_STATE_DIR/rkmd.sock`, else rkmd's default.
    pub fn resolve(socket: Option<PathBuf>, endpoint: Option<String>) -> Self {
        if let Some(url) = endpoint {
            return Target::Tcp(url);
        }
        Target::Socket(socket.unwrap_or_else(|| {
            std::env::var_os("RKM_STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/lib/rkm"))
                .join("rkmd.sock")
        }))
    }

    /// Opens a channel to rkmd.
    ///
    /// # Errors
    /// Nothing listens at the target.
    pub async fn connect(&self) -> Result<Channel, ConnectError> {
        let failed = |reason: String| ConnectError {
            target: self.to_string(),
            reason,
        };
        match self {
            Target::Socket(path) => {
                if !path.exists() {
                    return Err(failed("the socket does not exist".to_owned()));
                }
                let path = path.clone();
                // The URI is required by the API but unused: the connector dials the socket.
                Endpoint::from_static("http://rkmd.local")
                    .connect_with_connector(tower::service_fn(move |_| {
                        let path = path.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(TokioIo::new(stream))
                        }
                    }))
                    .await
                    .map_err(|error| failed(source_chain(&error)))
            }
            Target::Tcp(url) => Endpoint::from_shared(url.clone())
                .map_err(|error| failed(error.to_string()))?
                .connect()
                .await
                .map_err(|error| failed(source_chain(&error))),
        }
    }
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
