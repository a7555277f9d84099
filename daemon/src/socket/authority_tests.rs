//! The rewriter against RFC 7541 Appendix C.4 (Huffman-coded requests that
//! share a dynamic table), split and padded frames, and bad input.

use super::*;

const SETTINGS: u8 = 0x4;
const DATA: u8 = 0x0;

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut bytes = length[1..].to_vec();
    bytes.extend_from_slice(&[kind, flags]);
    bytes.extend_from_slice(&stream_id.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

#[derive(Debug, PartialEq)]
struct Frame {
    kind: u8,
    flags: u8,
    stream_id: u32,
    payload: Vec<u8>,
}

/// Splits what the server reads into its preface and frames.
fn frames_of(bytes: &[u8]) -> Vec<Frame> {
    assert!(bytes.starts_with(PREFACE), "no preface");
    let mut rest = &bytes[PREFACE.len()..];
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let length = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        frames.push(Frame {
            kind: rest[3],
            flags: rest[4],
            stream_id: u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]),
            payload: rest[9..9 + length].to_vec(),
        });
        rest = &rest[9 + length..];
    }
    frames
}

/// Decodes a rewritten block as h2 would; it must need no dynamic table.
fn headers_of(block: &[u8]) -> Vec<(String, String)> {
    let mut decoder = loona_hpack::Decoder::new();
    decoder.set_max_allowed_table_size(0);
    decoder
        .decode(block)
        .unwrap()
        .into_iter()
        .map(|(name, value)| {
            (
                String::from_utf8(name).unwrap(),
                String::from_utf8(value).unwrap(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn rewrite_all(input: &[u8]) -> Vec<u8> {
    let mut rewriter = AuthorityRewriter::default();
    rewriter.push(input).unwrap();
    rewriter.output().to_vec()
}

/// RFC 7541 C.4.1, C.4.2, C.4.3: three requests with Huffman coding; the
/// second and third take `:authority` from the dynamic table.
const RFC_REQUESTS: [&[u8]; 3] = [
    &[
        0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90,
        0xf4, 0xff,
    ],
    &[
        0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
    ],
    &[
        0x82, 0x87, 0x85, 0xbf, 0x40, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f, 0x89,
        0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf,
    ],
];

#[test]
fn huffman_requests_sharing_a_dynamic_table_get_the_socket_authority() {
    let mut input = PREFACE.to_vec();
    input.extend(frame(SETTINGS, 0, 0, &[]));
    for (index, block) in RFC_REQUESTS.iter().enumerate() {
        let stream_id = 1 + 2 * u32::try_from(index).unwrap();
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, stream_id, block));
    }
    // One byte at a time: frames split anywhere are put together.
    let mut rewriter = AuthorityRewriter::default();
    for byte in &input {
        rewriter.push(&[*byte]).unwrap();
    }
    let frames = frames_of(rewriter.output());
    assert_eq!(frames.len(), 4);
    assert_eq!(frames[0].kind, SETTINGS);
    let expected = [
        pairs(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "localhost"),
        ]),
        pairs(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "localhost"),
            ("cache-control", "no-cache"),
        ]),
        pairs(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "localhost"),
            ("custom-key", "custom-value"),
        ]),
    ];
    for (frame, expected) in frames[1..].iter().zip(expected) {
        assert_eq!(frame.kind, HEADERS);
        assert_eq!(frame.flags, END_HEADERS | END_STREAM);
        assert_eq!(headers_of(&frame.payload), expected);
    }
    assert_eq!(frames[3].stream_id, 5);
}

#[test]
fn grpcio_unix_authority_is_replaced_and_other_frames_pass_unchanged() {
    let mut encoder = loona_hpack::Encoder::new();
    let block = encoder.encode([
        (&b":method"[..], &b"POST"[..]),
        (b":scheme", b"http"),
        (b":path", b"/grpc.health.v1.Health/Check"),
        (b":authority", b"tmp%2Frkm-state%2Frkmd.sock"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]);
    let data = frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, END_HEADERS, 1, &block));
    input.extend(&data);
    let output = rewrite_all(&input);
    let frames = frames_of(&output);
    assert_eq!(
        headers_of(&frames[0].payload),
        pairs(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/grpc.health.v1.Health/Check"),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ])
    );
    assert!(output.ends_with(&data), "the DATA frame changed");
}

#[test]
fn padded_prioritised_block_in_continuations_is_put_together() {
    let mut encoder = loona_hpack::Encoder::new();
    let block = encoder.encode([
        (&b":method"[..], &b"POST"[..]),
        (b":path", b"/rkm.v1.SystemService/GetStatus"),
        (b":authority", b"/var/run/rkmd.sock"),
    ]);
    let (first, second) = block.split_at(7);
    let priority = [0x80, 0, 0, 3, 15];
    let mut payload = vec![4]; // pad length
    payload.extend(priority);
    payload.extend(first);
    payload.extend([0; 4]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, PADDED | PRIORITY, 7, &payload));
    input.extend(frame(CONTINUATION, END_HEADERS, 7, second));
    let frames = frames_of(&rewrite_all(&input));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].flags, PRIORITY | END_HEADERS);
    assert_eq!(frames[0].payload[..PRIORITY_LEN], priority);
    assert_eq!(
        headers_of(&frames[0].payload[PRIORITY_LEN..]),
        pairs(&[
            (":method", "POST"),
            (":path", "/rkm.v1.SystemService/GetStatus"),
            (":authority", "localhost"),
        ])
    );
}

#[test]
fn long_block_is_sent_in_frames_every_peer_accepts() {
    let long_value = "v".repeat(40_000);
    let mut encoder = loona_hpack::Encoder::new();
    let block = encoder.encode([
        (&b":path"[..], &b"/x"[..]),
        (b"x-long", long_value.as_bytes()),
    ]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, END_HEADERS, 1, &block));
    let frames = frames_of(&rewrite_all(&input));
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0].kind, HEADERS);
    assert_eq!(frames[0].flags, 0);
    assert_eq!(frames[1].kind, CONTINUATION);
    assert_eq!(frames[1].flags, 0);
    assert_eq!(frames[2].flags, END_HEADERS);
    assert!(frames.iter().all(|f| f.payload.len() <= SAFE_FRAME_SIZE));
    let whole: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
    assert_eq!(
        headers_of(&whole),
        pairs(&[(":path", "/x"), ("x-long", &long_value)])
    );
}

#[test]
fn frame_interrupting_a_header_block_is_refused() {
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, 0, 1, &[0x82]));
    input.extend(frame(DATA, 0, 1, &[]));
    let mut rewriter = AuthorityRewriter::default();
    let error = rewriter.push(&input).unwrap_err();
    assert!(matches!(
        error,
        RewriteError::InterruptedHeaderBlock { kind: DATA }
    ));
}

#[test]
fn oversized_header_block_is_refused() {
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, 0, 1, &[0x82]));
    let fragment = vec![0; SAFE_FRAME_SIZE];
    for _ in 0..4 {
        input.extend(frame(CONTINUATION, 0, 1, &fragment));
    }
    let error = AuthorityRewriter::default().push(&input).unwrap_err();
    assert!(matches!(error, RewriteError::HeaderBlockTooLarge));
}

#[test]
fn small_block_that_decodes_to_a_huge_list_is_refused_without_holding_it() {
    // One 4,000-octet field put in the dynamic table, then named 10,000
    // times by its one-octet index (62): 14 KB on the wire, 40 MB decoded.
    let mut block = vec![0x40];
    encode_string(b"x", &mut block);
    encode_string(&[b'v'; 4000], &mut block);
    block.extend(std::iter::repeat_n(0x80 | 62, 10_000));
    assert!(block.len() < MAX_HEADER_BLOCK);
    let mut input = PREFACE.to_vec();
    let (first, rest) = block.split_at(SAFE_FRAME_SIZE.min(block.len()));
    let flags = if rest.is_empty() { END_HEADERS } else { 0 };
    input.extend(frame(HEADERS, flags, 1, first));
    if !rest.is_empty() {
        input.extend(frame(CONTINUATION, END_HEADERS, 1, rest));
    }
    let mut rewriter = AuthorityRewriter::default();
    let error = rewriter.push(&input).unwrap_err();
    assert!(matches!(error, RewriteError::HeaderListTooLarge), "{error}");
    assert!(
        rewriter.output().len() <= PREFACE.len(),
        "nothing was passed on"
    );
}

#[test]
fn undecodable_block_is_refused() {
    let mut input = PREFACE.to_vec();
    // Index 70 is in neither table.
    input.extend(frame(HEADERS, END_HEADERS, 1, &[0x80 | 70]));
    let error = AuthorityRewriter::default().push(&input).unwrap_err();
    assert!(matches!(error, RewriteError::Hpack(_)));
}

#[test]
fn bytes_that_are_not_http2_pass_unchanged() {
    let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(rewrite_all(input), input);
}

#[tokio::test]
async fn wrapped_connection_reads_the_rewritten_bytes() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut client, server) = tokio::io::duplex(64);
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, END_HEADERS, 1, RFC_REQUESTS[0]));
    let expected = rewrite_all(&input);
    let writer = tokio::spawn(async move {
        client.write_all(&input).await.unwrap();
        client.shutdown().await.unwrap();
    });
    let mut read = Vec::new();
    AnyAuthority::new(server)
        .read_to_end(&mut read)
        .await
        .unwrap();
    writer.await.unwrap();
    assert_eq!(read, expected);
}
