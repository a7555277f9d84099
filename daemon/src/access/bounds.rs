//! Request bodies read within their method's limits
//! ([`rkm_proto::access::limits`]): a unary message is read only if its
//! frame announces a size within the method's read limit, then checked field
//! by field; a client stream is checked message by message as it passes.
//! Nothing over a limit is buffered, decoded or stored.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf as _, Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt as _;
use rkm_proto::access::limits::scan::{FieldScan, ValueDigest};
use rkm_proto::access::limits::{LimitError, MethodLimits, check_message};
use tonic::Status;
use tonic::body::Body;

use super::guard::{Guard, Refusal};

/// The gRPC frame prefix: compression flag and big-endian length.
const FRAME_HEADER: usize = 5;

/// Why a request body was not taken.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("requests to rkmd are sent uncompressed")]
    Compressed,
    #[error("a call to this method carries exactly one request message")]
    NotOne,
    #[error("the request did not arrive whole")]
    Broken,
}

/// The one message of a unary request, checked against the method's
/// limits as it arrives: a field whose header announces more than its limit
/// is refused by name and its value only hashed as it streams past; a
/// message is buffered up to `limits.max_read()` at most.
pub async fn read_unary(mut body: Body, limits: &MethodLimits) -> Result<Vec<u8>, BodyError> {
    let mut buffered = BytesMut::new();
    let mut announced: Option<usize> = None;
    let mut scan = FieldScan::new(limits.request);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| BodyError::Broken)?.into_data() else {
            continue;
        };
        buffered.extend_from_slice(&data);
        if announced.is_none() && buffered.len() >= FRAME_HEADER {
            announced = Some(announced_len(&buffered)?);
        }
        let Some(len) = announced else {
            continue;
        };
        if buffered.len() > FRAME_HEADER + len {
            return Err(BodyError::NotOne);
        }
        let message = &buffered[FRAME_HEADER..];
        if let Some(oversized) = scan.advance(message)? {
            let mut digest = ValueDigest::new(oversized.clone());
            digest.feed(message.get(oversized.value_at..).unwrap_or_default());
            while !digest.done() {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            digest.feed(&data);
                        }
                    }
                    Some(Err(_)) | None => break,
                }
            }
            return Err(digest.finish().into());
        }
        if message.len() > limits.max_read() {
            return Err(too_large(limits, len).into());
        }
    }
    let Some(len) = announced else {
        return Err(BodyError::NotOne);
    };
    if buffered.len() != FRAME_HEADER + len {
        return Err(BodyError::Broken);
    }
    let message = buffered.split_off(FRAME_HEADER).to_vec();
    check_message(limits.request, &message)?;
    Ok(message)
}

fn announced_len(header: &[u8]) -> Result<usize, BodyError> {
    if header[0] != 0 {
        return Err(BodyError::Compressed);
    }
    Ok(u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize)
}

fn too_large(limits: &MethodLimits, len: usize) -> LimitError {
    LimitError::MessageTooLarge {
        message: limits.request.name,
        len,
        max: limits.max_message(),
    }
}

/// `message` framed again as the body of a unary request.
pub fn reframe(message: &[u8]) -> Body {
    let mut framed = Vec::with_capacity(message.len() + FRAME_HEADER);
    framed.push(0);
    framed.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    framed.extend_from_slice(message);
    Body::new(http_body_util::Full::new(Bytes::from(framed)))
}

/// What the audit entry of a limit refusal records besides its reason: the
/// field, its length and limit, and the value's start and SHA-256.
pub fn refusal_details(error: &LimitError) -> Vec<(&'static str, String)> {
    match error {
        LimitError::FieldTooLong {
            message,
            field,
            len,
            max,
            start,
            sha256,
        } => vec![
            ("message", (*message).to_owned()),
            ("field", (*field).to_owned()),
            ("length", len.to_string()),
            ("limit", max.to_string()),
            ("value_start", start.clone()),
            ("value_sha256", sha256.clone()),
        ],
        LimitError::MessageTooLarge { message, len, max } => vec![
            ("message", (*message).to_owned()),
            ("length", len.to_string()),
            ("limit", max.to_string()),
        ],
        LimitError::TooManyEntries {
            message,
            field,
            max,
        } => vec![
            ("message", (*message).to_owned()),
            ("field", (*field).to_owned()),
            ("limit", max.to_string()),
        ],
        LimitError::Repeated { message, field } => vec![
            ("message", (*message).to_owned()),
            ("field", (*field).to_owned()),
        ],
        LimitError::Malformed { message } => vec![("message", (*message).to_owned())],
    }
}

/// A client stream whose every message is checked against the method's
/// limits as it passes. The first message over a limit ends the stream with
/// InvalidArgument (which the handler sees) and is audited here; a field
/// announced over its limit is refused once its value has streamed past,
/// hashed, never buffered.
pub struct CheckedStream {
    inner: Body,
    limits: &'static MethodLimits,
    /// Bytes of the message being received (within its read limit).
    pending: BytesMut,
    /// The fields of the message at the front of `pending`.
    scan: FieldScan,
    /// The value of an oversized field, being hashed as it arrives.
    discarding: Option<ValueDigest>,
    refusal: Option<(Arc<Guard>, Refusal)>,
    failed: bool,
}

/// What [`CheckedStream::take_checked`] found wrong.
enum Unchecked {
    Refused(LimitError),
    /// A field announced over its limit: its value is now being hashed.
    Oversized,
}

impl From<LimitError> for Unchecked {
    fn from(error: LimitError) -> Self {
        Unchecked::Refused(error)
    }
}

impl CheckedStream {
    /// Checks `inner`'s messages; `refusal` is the audit entry of a refusal
    /// (reason and details are filled in when one happens).
    pub fn new(
        inner: Body,
        limits: &'static MethodLimits,
        guard: Arc<Guard>,
        refusal: Refusal,
    ) -> Self {
        Self {
            inner,
            limits,
            pending: BytesMut::new(),
            scan: FieldScan::new(limits.request),
            discarding: None,
            refusal: Some((guard, refusal)),
            failed: false,
        }
    }

    /// The complete messages at the front of `pending`, checked and framed,
    /// or what is wrong with the first one that is not within the limits.
    fn take_checked(&mut self) -> Result<Option<Bytes>, Unchecked> {
        let malformed = || LimitError::Malformed {
            message: self.limits.request.name,
        };
        let mut end = 0;
        loop {
            let rest = &self.pending[end..];
            if rest.len() < FRAME_HEADER {
                break;
            }
            let len = announced_len(rest).map_err(|_| malformed())?;
            let message = &rest[FRAME_HEADER..];
            if message.len() >= len {
                check_message(self.limits.request, &message[..len])?;
                end += FRAME_HEADER + len;
                self.scan = FieldScan::new(self.limits.request);
                continue;
            }
            if let Some(oversized) = self.scan.advance(message)? {
                let mut digest = ValueDigest::new(oversized.clone());
                digest.feed(message.get(oversized.value_at..).unwrap_or_default());
                self.discarding = Some(digest);
                return Err(Unchecked::Oversized);
            }
            if message.len() > self.limits.max_read() {
                return Err(too_large(self.limits, len).into());
            }
            break;
        }
        Ok((end > 0).then(|| self.pending.split_to(end).freeze()))
    }

    fn refuse(&mut self, error: &LimitError) -> Status {
        self.failed = true;
        self.pending.clear();
        if let Some((guard, mut refusal)) = self.refusal.take() {
            refusal.reason = error.kind();
            refusal.details = refusal_details(error);
            tokio::spawn(async move { guard.refused(refusal).await });
        }
        Status::invalid_argument(error.to_string())
    }

    /// Feeds `data` to the oversized value being hashed; the refusal once
    /// it has all passed.
    fn discard(&mut self, data: &[u8]) -> Option<Status> {
        let digest = self.discarding.as_mut()?;
        digest.feed(data);
        if !digest.done() {
            return None;
        }
        let error = self.discarding.take()?.finish();
        Some(self.refuse(&error))
    }
}

impl HttpBody for CheckedStream {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        loop {
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(status))) => return Poll::Ready(Some(Err(status))),
                Poll::Ready(None) => {
                    if let Some(digest) = this.discarding.take() {
                        let error = digest.finish();
                        return Poll::Ready(Some(Err(this.refuse(&error))));
                    }
                    if this.pending.is_empty() {
                        return Poll::Ready(None);
                    }
                    this.failed = true;
                    return Poll::Ready(Some(Err(Status::invalid_argument(
                        "the request stream ended inside a message",
                    ))));
                }
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            let mut data = match frame.into_data() {
                Ok(data) => data,
                Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
            };
            if this.discarding.is_some() {
                if let Some(status) = this.discard(&data) {
                    return Poll::Ready(Some(Err(status)));
                }
                continue;
            }
            while data.has_remaining() {
                let chunk = data.chunk();
                this.pending.extend_from_slice(chunk);
                let n = chunk.len();
                data.advance(n);
            }
            match this.take_checked() {
                Ok(Some(messages)) => return Poll::Ready(Some(Ok(Frame::data(messages)))),
                Ok(None) => {}
                Err(Unchecked::Refused(error)) => {
                    return Poll::Ready(Some(Err(this.refuse(&error))));
                }
                Err(Unchecked::Oversized) => {
                    this.pending.clear();
                    if let Some(status) = this.discard(&[]) {
                        return Poll::Ready(Some(Err(status)));
                    }
                }
            }
        }
    }
}
