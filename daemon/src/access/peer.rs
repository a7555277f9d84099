//! The connections rkmd serves, each carrying what the transport proved
//! about its peer: the uid of a Unix socket peer (from the kernel), or the
//! address and verified client certificate of a TLS peer. tonic puts this
//! [`PeerInfo`] in every request's extensions, where the access layer reads
//! it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tonic::transport::server::Connected;

use super::PresentedCertificate;

/// What the transport established about a connection's peer.
#[derive(Debug, Clone)]
pub enum PeerInfo {
    /// A Unix socket peer; `uid` is None if the kernel did not say.
    Local { uid: Option<u32> },
    /// A TLS peer, with the client certificate it presented, if any (only a
    /// certificate that verified against the trust anchors gets this far).
    Tls {
        addr: SocketAddr,
        certificate: Option<PresentedCertificate>,
    },
}

impl PeerInfo {
    /// The peer as audit entries show it.
    pub fn describe(&self) -> String {
        match self {
            PeerInfo::Local { .. } => "socket".to_owned(),
            PeerInfo::Tls { addr, .. } => format!("tcp:{addr}"),
        }
    }

    /// The key that counts this peer's failures: its IP, or its uid.
    pub fn lockout_key(&self) -> String {
        match self {
            PeerInfo::Local { uid: Some(uid) } => format!("uid:{uid}"),
            PeerInfo::Local { uid: None } => "uid:unknown".to_owned(),
            PeerInfo::Tls { addr, .. } => format!("ip:{}", addr.ip()),
        }
    }
}

/// A Unix socket connection and its peer's uid.
#[derive(Debug)]
pub struct LocalConnection {
    stream: UnixStream,
    peer: PeerInfo,
}

impl LocalConnection {
    /// Wraps an accepted socket connection, asking the kernel who connected.
    pub fn new(stream: UnixStream) -> Self {
        let uid = stream.peer_cred().ok().map(|credentials| credentials.uid());
        Self {
            stream,
            peer: PeerInfo::Local { uid },
        }
    }
}

/// A TLS connection over TCP and what its handshake proved.
#[derive(Debug)]
pub struct TlsConnection {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: PeerInfo,
}

impl TlsConnection {
    pub fn new(stream: tokio_rustls::server::TlsStream<TcpStream>, peer: PeerInfo) -> Self {
        Self { stream, peer }
    }
}

impl Connected for LocalConnection {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl Connected for TlsConnection {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

macro_rules! delegate_io {
    ($connection:ty) => {
        impl AsyncRead for $connection {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.stream).poll_read(cx, buf)
            }
        }

        impl AsyncWrite for $connection {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.stream).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.stream.is_write_vectored()
            }

            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.stream).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.stream).poll_shutdown(cx)
            }
        }
    };
}

delegate_io!(LocalConnection);
delegate_io!(TlsConnection);
