//! Any `:authority` on the socket: a connection wrapper that rewrites the
//! `:authority` of every request to `localhost` before the HTTP/2 server
//! reads it.
//!
//! Why a wrapper and not a tower layer: stock gRPC clients send something
//! that is not an RFC 3986 authority for a `unix:` target (grpc-core, so
//! Python's `grpcio`, sends the percent-encoded socket path, e.g.
//! `tmp%2Frkm%2Frkmd.sock`; grpc-java sends the path itself), and h2 answers
//! such a request with RST_STREAM(PROTOCOL_ERROR) while it turns the headers
//! into an `http::Request`, before any tower layer or route sees it. So the
//! fix sits below h2, on the bytes the client sends:
//!
//! * Frames other than HEADERS and CONTINUATION pass through untouched
//!   (flow control is not affected: header frames are not flow controlled).
//! * A header block (HEADERS plus its CONTINUATIONs, RFC 9113 §6.2, §6.10) is
//!   decoded with HPACK (RFC 7541) by a decoder that follows the client's
//!   dynamic table, `:authority` is replaced, and the block is encoded again
//!   as literals without indexing and without Huffman coding (RFC 7541
//!   §6.2.2), so h2's own dynamic table stays empty and never disagrees with
//!   ours. The re-encoded block goes out in frames of at most 16384 octets,
//!   which every HTTP/2 peer accepts (RFC 9113 §4.2); padding is dropped.
//!
//! The socket has no virtual hosts and nothing reads the authority, so
//! every request gets the same one; the TCP listener is not wrapped.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The `:authority` every request on the socket is given.
pub const SOCKET_AUTHORITY: &[u8] = b"localhost";

/// RFC 9113 §3.4: what an HTTP/2 client sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const PRIORITY_LEN: usize = 5;
/// The frame size every peer accepts (RFC 9113 §4.2).
const SAFE_FRAME_SIZE: usize = 16_384;
/// SETTINGS_HEADER_TABLE_SIZE as rkmd's HTTP/2 server announces it (the
/// RFC's default, which tonic does not change): the most a client's
/// encoder may use, so the most our decoder accepts.
const HEADER_TABLE_SIZE: usize = 4096;
/// Largest header block buffered; h2 refuses header lists over 16 KiB, so
/// a longer encoding is refused here rather than held in memory.
const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Largest decoded header list (RFC 9113 §6.5.2 size: name, value and 32
/// octets per field) re-encoded. HPACK lets a small block name a large
/// table entry many times over, so the decoded size is bounded on its
/// own; h2 refuses lists over 16 KiB anyway.
const MAX_HEADER_LIST: usize = 64 * 1024;

/// Why a connection's bytes could not be rewritten; the connection is
/// closed, as h2 would close it for the same input.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("HPACK decoding of a header block failed: {0}")]
    Hpack(loona_hpack::decoder::DecoderError),
    #[error("a header block is larger than {MAX_HEADER_BLOCK} octets")]
    HeaderBlockTooLarge,
    #[error("a header list decodes to more than {MAX_HEADER_LIST} octets")]
    HeaderListTooLarge,
    #[error("a frame of type {kind:#x} interrupted a header block (RFC 9113 §6.10)")]
    InterruptedHeaderBlock { kind: u8 },
    #[error("a HEADERS frame's padding or priority is longer than the frame")]
    MalformedHeadersFrame,
}

/// Where the client's byte stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Preface,
    Frames,
    /// Not HTTP/2 (a wrong preface): passed on as it is, for h2 to refuse.
    Opaque,
}

/// A header block whose END_HEADERS has not come yet.
struct PendingBlock {
    stream_id: u32,
    /// END_STREAM and PRIORITY, as the HEADERS frame had them.
    flags: u8,
    priority: Vec<u8>,
    fragments: Vec<u8>,
}

/// The rewriting of the client-to-server bytes of one connection, without
/// I/O: [`AuthorityRewriter::push`] takes what the client sent, and
/// [`AuthorityRewriter::output`] holds what the server is to read.
pub struct AuthorityRewriter {
    stage: Stage,
    input: BytesMut,
    output: BytesMut,
    /// Payload octets of the frame being passed through still to come.
    passing: usize,
    pending: Option<PendingBlock>,
    decoder: loona_hpack::Decoder<'static>,
}

impl Default for AuthorityRewriter {
    fn default() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            stage: Stage::Preface,
            input: BytesMut::new(),
            output: BytesMut::new(),
            passing: 0,
            pending: None,
            decoder,
        }
    }
}

impl AuthorityRewriter {
    /// Takes bytes the client sent and rewrites every complete header block.
    ///
    /// # Errors
    /// A header block cannot be decoded, is too large, or is interrupted.
    pub fn push(&mut self, received: &[u8]) -> Result<(), RewriteError> {
        self.input.extend_from_slice(received);
        loop {
            match self.stage {
                Stage::Preface => {
                    let seen = self.input.len().min(PREFACE.len());
                    if self.input[..seen] != PREFACE[..seen] {
                        self.stage = Stage::Opaque;
                    } else if seen < PREFACE.len() {
                        return Ok(());
                    } else {
                        let preface = self.input.split_to(PREFACE.len());
                        self.output.extend_from_slice(&preface);
                        self.stage = Stage::Frames;
                    }
                }
                Stage::Opaque => {
                    let rest = self.input.split();
                    self.output.extend_from_slice(&rest);
                    return Ok(());
                }
                Stage::Frames => {
                    if !self.next_frame()? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// What the server is to read next.
    pub fn output(&mut self) -> &mut BytesMut {
        &mut self.output
    }

    /// Handles the next frame, or part of a passed-through one; false when
    /// more input is needed.
    fn next_frame(&mut self) -> Result<bool, RewriteError> {
        if self.passing > 0 {
            let available = self.passing.min(self.input.len());
            if available == 0 {
                return Ok(false);
            }
            let passed = self.input.split_to(available);
            self.output.extend_from_slice(&passed);
            self.passing -= available;
            return Ok(true);
        }
        if self.input.len() < FRAME_HEADER_LEN {
            return Ok(false);
        }
        let header = &self.input[..FRAME_HEADER_LEN];
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let kind = header[3];
        let flags = header[4];
        let stream_id =
            u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let continues_block = self
            .pending
            .as_ref()
            .is_some_and(|pending| kind == CONTINUATION && pending.stream_id == stream_id);
        if self.pending.is_some() && !continues_block {
            return Err(RewriteError::InterruptedHeaderBlock { kind });
        }
        if kind != HEADERS && !continues_block {
            let header = self.input.split_to(FRAME_HEADER_LEN);
            self.output.extend_from_slice(&header);
            self.passing = length;
            return Ok(true);
        }
        if length > MAX_HEADER_BLOCK {
            return Err(RewriteError::HeaderBlockTooLarge);
        }
        if self.input.len() < FRAME_HEADER_LEN + length {
            return Ok(false);
        }
        let mut frame = self.input.split_to(FRAME_HEADER_LEN + length);
        frame.advance(FRAME_HEADER_LEN);
        if kind == HEADERS {
            self.pending = Some(headers_frame(stream_id, flags, &frame)?);
        } else if let Some(pending) = self.pending.as_mut() {
            pending.fragments.extend_from_slice(&frame);
            if pending.fragments.len() > MAX_HEADER_BLOCK {
                return Err(RewriteError::HeaderBlockTooLarge);
            }
        }
        if flags & END_HEADERS != 0
            && let Some(block) = self.pending.take()
        {
            self.rewrite(&block)?;
        }
        Ok(true)
    }

    /// Decodes a whole header block, replaces `:authority` and writes the
    /// block out again.
    fn rewrite(&mut self, block: &PendingBlock) -> Result<(), RewriteError> {
        let mut encoded = Vec::with_capacity(block.fragments.len() * 2);
        let mut list_size = 0usize;
        self.decoder
            .decode_with_cb(&block.fragments, |name, value| {
                // The decoder must still see every field to keep its
                // table in step; past the bound nothing more is kept.
                list_size = list_size.saturating_add(name.len() + value.len() + 32);
                if list_size > MAX_HEADER_LIST {
                    return;
                }
                let value: &[u8] = if *name == *b":authority" {
                    SOCKET_AUTHORITY
                } else {
                    &value
                };
                encoded.push(0x00); // literal without indexing, new name
                encode_string(&name, &mut encoded);
                encode_string(value, &mut encoded);
            })
            .map_err(RewriteError::Hpack)?;
        if list_size > MAX_HEADER_LIST {
            return Err(RewriteError::HeaderListTooLarge);
        }
        let first_room = SAFE_FRAME_SIZE - block.priority.len();
        let (first, mut rest) = encoded.split_at(first_room.min(encoded.len()));
        let mut flags = block.flags;
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        self.write_frame(HEADERS, flags, block.stream_id, &[&block.priority, first]);
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(SAFE_FRAME_SIZE.min(rest.len()));
            let flags = if after.is_empty() { END_HEADERS } else { 0 };
            self.write_frame(CONTINUATION, flags, block.stream_id, &[chunk]);
            rest = after;
        }
        Ok(())
    }

    fn write_frame(&mut self, kind: u8, flags: u8, stream_id: u32, parts: &[&[u8]]) {
        let length: usize = parts.iter().map(|part| part.len()).sum();
        // At most SAFE_FRAME_SIZE, so it fits the 24-bit length field.
        let length = u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes();
        self.output.extend_from_slice(&length[1..]);
        self.output.extend_from_slice(&[kind, flags]);
        self.output.extend_from_slice(&stream_id.to_be_bytes());
        for part in parts {
            self.output.extend_from_slice(part);
        }
    }
}

/// The pending block a HEADERS frame's payload starts (RFC 9113 §6.2).
fn headers_frame(stream_id: u32, flags: u8, payload: &[u8]) -> Result<PendingBlock, RewriteError> {
    let mut payload = payload;
    let mut padding = 0;
    if flags & PADDED != 0 {
        let (&pad_length, rest) = payload
            .split_first()
            .ok_or(RewriteError::MalformedHeadersFrame)?;
        padding = usize::from(pad_length);
        payload = rest;
    }
    let mut priority = Vec::new();
    if flags & PRIORITY != 0 {
        let (fields, rest) = payload
            .split_at_checked(PRIORITY_LEN)
            .ok_or(RewriteError::MalformedHeadersFrame)?;
        priority = fields.to_vec();
        payload = rest;
    }
    let fragment_len = payload
        .len()
        .checked_sub(padding)
        .ok_or(RewriteError::MalformedHeadersFrame)?;
    Ok(PendingBlock {
        stream_id,
        flags: flags & (END_STREAM | PRIORITY),
        priority,
        fragments: payload[..fragment_len].to_vec(),
    })
}

/// An HPACK string literal without Huffman coding (RFC 7541 §5.2): its
/// length as an integer with a 7-bit prefix (§5.1), then its octets.
fn encode_string(text: &[u8], out: &mut Vec<u8>) {
    const PREFIX_MAX: usize = 0x7f;
    let mut length = text.len();
    if length < PREFIX_MAX {
        out.push(length as u8);
    } else {
        out.push(PREFIX_MAX as u8);
        length -= PREFIX_MAX;
        while length >= 0x80 {
            out.push((length & 0x7f) as u8 | 0x80);
            length >>= 7;
        }
        out.push(length as u8);
    }
    out.extend_from_slice(text);
}

/// A socket connection whose requests all carry `:authority: localhost`;
/// writes, and what the transport knows of the peer, are the inner
/// connection's.
pub struct AnyAuthority<IO> {
    inner: IO,
    rewriter: AuthorityRewriter,
    closed: bool,
}

impl<IO> AnyAuthority<IO> {
    pub fn new(inner: IO) -> Self {
        Self {
            inner,
            rewriter: AuthorityRewriter::default(),
            closed: false,
        }
    }
}

impl<IO: std::fmt::Debug> std::fmt::Debug for AnyAuthority<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnyAuthority")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<IO: Connected> Connected for AnyAuthority<IO> {
    type ConnectInfo = IO::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for AnyAuthority<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let output = this.rewriter.output();
            if !output.is_empty() || buf.remaining() == 0 {
                let taken = output.split_to(output.len().min(buf.remaining()));
                buf.put_slice(&taken);
                return Poll::Ready(Ok(()));
            }
            if this.closed {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut received = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut received))?;
            if received.filled().is_empty() {
                this.closed = true;
                continue;
            }
            this.rewriter.push(received.filled()).map_err(|error| {
                tracing::debug!(%error, "closing a socket connection");
                io::Error::new(io::ErrorKind::InvalidData, error)
            })?;
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AnyAuthority<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "authority_tests.rs"]
mod tests;
