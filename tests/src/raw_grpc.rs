//! Calling any rkmd method with the raw bytes of its request, over TLS, as
//! nobody, with a client certificate, or signed as a custodian: for the
//! access tests, which call every method with every kind of caller and
//! replay, move and age custodians' signed requests.

use std::time::Duration;

use rkm_client::connect::ConnectArgs;
use rkm_proto::access::{ACCESS_REFUSED_METADATA, CUSTODIAN_AUTH_METADATA};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::BinaryMetadataValue;
use tonic::transport::Channel;

use crate::Daemon;

/// Sends and receives protobuf messages as the bytes they are, so one
/// client calls every method.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf as _;
        let mut item = vec![0; src.remaining()];
        src.copy_to_slice(&mut item);
        Ok(Some(item))
    }
}

/// A request message whose field `field` is the string `value`, and
/// nothing else: enough for the access layer, which reads only that field.
pub fn naming(field: u32, value: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    prost::encoding::string::encode(field, &value.to_owned(), &mut bytes);
    bytes
}

/// What became of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The access layer let it through (the handler may still refuse the
    /// request: that is not the layer's business).
    Admitted,
    /// Refused by the access layer, with this code and message.
    Refused(tonic::Code, String),
}

impl Outcome {
    /// The refusal's message, if refused.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            Outcome::Admitted => None,
            Outcome::Refused(_, message) => Some(message),
        }
    }
}

/// Calls `method` with `body`, carrying the custodian authentication
/// `auth` if given. Every method is called as a stream of one message,
/// which on the wire is exactly a unary call.
///
/// # Panics
/// The channel fails or `method` is not a path.
pub async fn call(
    channel: &Channel,
    method: &str,
    body: Vec<u8>,
    auth: Option<BinaryMetadataValue>,
) -> Outcome {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let mut request = tonic::Request::new(tokio_stream::once(body));
    request.set_timeout(Duration::from_secs(30));
    if let Some(auth) = auth {
        request
            .metadata_mut()
            .insert_bin(CUSTODIAN_AUTH_METADATA, auth);
    }
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(method).expect("a gRPC path");
    match grpc.streaming(request, path, RawCodec).await {
        Err(status) if status.metadata().get(ACCESS_REFUSED_METADATA).is_some() => {
            Outcome::Refused(status.code(), status.message().to_owned())
        }
        _ => Outcome::Admitted,
    }
}

/// Calls `method` with the request messages `messages` (a stream, so a
/// client-streaming method gets them all), and returns the status the call
/// ended with, whoever decided it: the access layer or the handler.
///
/// # Panics
/// The channel fails or `method` is not a path.
pub async fn call_for_status(
    channel: &Channel,
    method: &str,
    messages: Vec<Vec<u8>>,
    auth: Option<BinaryMetadataValue>,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone())
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    grpc.ready().await.expect("channel ready");
    let mut request = tonic::Request::new(tokio_stream::iter(messages));
    request.set_timeout(Duration::from_secs(60));
    if let Some(auth) = auth {
        request
            .metadata_mut()
            .insert_bin(CUSTODIAN_AUTH_METADATA, auth);
    }
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(method).expect("a gRPC path");
    let mut responses = grpc.streaming(request, path, RawCodec).await?.into_inner();
    while responses.message().await?.is_some() {}
    Ok(())
}

/// A TLS channel to `daemon` (built with [`crate::DaemonBuilder::tls`])
/// trusting its CA and presenting the client certificate `client` (a
/// dev-pki file stem), or none.
///
/// # Panics
/// The daemon does not serve TLS, or the connection fails.
pub async fn tls_channel(daemon: &Daemon, client: Option<&str>) -> Channel {
    let pki = daemon.pki_dir().expect("a daemon serving TLS");
    // An empty client config: none of the tester's may creep in.
    let no_config = pki.join("empty-client.toml");
    std::fs::write(&no_config, "").unwrap();
    let args = ConnectArgs {
        endpoint: Some(daemon.endpoint().expect("serving").to_owned()),
        ca: Some(pki.join("ca.pem")),
        cert: client.map(|name| pki.join(format!("{name}.pem"))),
        cert_key: client.map(|name| pki.join(format!("{name}-key.pem"))),
        client_config: Some(no_config),
        ..ConnectArgs::default()
    };
    args.resolve()
        .unwrap()
        .connect()
        .await
        .expect("TLS connection")
}
