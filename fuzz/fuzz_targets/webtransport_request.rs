//! A whole WebTransport request stream (after the stream signal) as the server reads it
//! (`crates/weir/src/webtransport/call.rs`, `crates/weir/src/edge/request.rs`), with the
//! codec's state machines composed the same way: the header block judged by its 5-byte prefix
//! (`peek_header`) and decoded (`RequestHead::decode`), the bytes behind it taken over
//! (`take_buffered`), in version 2 the end-of-request frame found (`EndOfRequest`, held-back
//! bytes fed again), and the body checked by the edge's message decoder (`decode_run`); the
//! head's content type, metadata and timeout read as the edge reads them.
//!
//! For any bytes cut any way, either version and any message limit: no panic, and the same
//! outcome whatever the cuts — the head or the reason it was refused, the bytes the edge
//! forwards, its verdict, and whether (and with how many bytes after it) the request ended.
//! A path the head accepts is a valid URI, as the server needs it to be.
#![no_main]

mod chunks;

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use libfuzzer_sys::fuzz_target;
use weir_codec::content_type::ContentType;
use weir_codec::frame::{FLAG_TRAILERS, FrameDecoder, FrameError, HEADER_LEN};
use weir_codec::webtransport::request::{EndOfRequest, Scan};
use weir_codec::webtransport::{HeadError, RequestHead};
use weir_codec::{metadata, timeout};

/// The server's limit on the header block (as `max_header_list_size` bounds it).
const HEAD_LIMIT: usize = 1024;

#[derive(Debug, PartialEq)]
enum Refused {
    NotHeaderBlock(u8),
    TooLarge(usize),
    Frame(FrameError),
    NoHead,
    Head(HeadError),
}

#[derive(Debug, PartialEq)]
struct Outcome {
    head: Result<(String, HeaderMap), Refused>,
    /// What the edge forwarded to the service.
    body: Vec<u8>,
    /// The edge's verdict on the body.
    verdict: Result<(), FrameError>,
    /// Version 2: the end-of-request frame came, with this many bytes after it (unless the
    /// edge failed the body first).
    end: Option<usize>,
}

fn refused(why: Refused) -> Outcome {
    Outcome {
        head: Err(why),
        body: Vec::new(),
        verdict: Ok(()),
        end: None,
    }
}

/// The edge's request body: frames checked and forwarded run by run.
struct Edge {
    frames: FrameDecoder,
    body: Vec<u8>,
}

impl Edge {
    fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        self.frames.push(Bytes::copy_from_slice(bytes));
        while let Some(run) = self.frames.decode_run()? {
            self.body.extend_from_slice(&run);
        }
        Ok(())
    }
}

fn read(v2: bool, limit: usize, chunks: &[&[u8]]) -> Outcome {
    // The header block, judged by its prefix before its payload is buffered.
    let mut decoder = FrameDecoder::new(HEAD_LIMIT);
    let mut next = chunks.iter();
    let frame = loop {
        if let Some((flags, len)) = decoder.peek_header() {
            if flags != FLAG_TRAILERS {
                return refused(Refused::NotHeaderBlock(flags));
            }
            if len > HEAD_LIMIT {
                return refused(Refused::TooLarge(len));
            }
        }
        match decoder.decode() {
            Ok(Some(frame)) => break frame,
            Ok(None) => {}
            Err(e) => return refused(Refused::Frame(e)),
        }
        match next.next() {
            Some(chunk) => decoder.push(Bytes::copy_from_slice(chunk)),
            None => {
                return refused(match decoder.finish() {
                    Ok(()) => Refused::NoHead,
                    Err(e) => Refused::Frame(e),
                });
            }
        }
    };
    assert_eq!(frame.payload().len() + HEADER_LEN, frame.encode().len());
    let head = match RequestHead::decode(frame.payload()) {
        Ok(head) => head,
        Err(e) => {
            let _ = e.to_status();
            return refused(Refused::Head(e));
        }
    };
    assert!(
        head.path().parse::<http::Uri>().is_ok(),
        "{:?}",
        head.path()
    );
    admit(head.headers());

    // The body: what came with the header block, then the rest of the stream.
    let early = decoder.take_buffered();
    assert!(decoder.is_at_boundary());
    let rest: Vec<&[u8]> = std::iter::once(&early[..])
        .chain(next.copied())
        .filter(|c| !c.is_empty())
        .collect();
    let mut edge = Edge {
        frames: FrameDecoder::messages(limit),
        body: Vec::new(),
    };
    let mut end = None;
    let verdict = (|| {
        if !v2 {
            for chunk in &rest {
                edge.push(chunk)?;
            }
            return edge.frames.finish();
        }
        let mut scanner = EndOfRequest::default();
        let mut held: Vec<u8> = Vec::new();
        for (i, chunk) in rest.iter().enumerate() {
            held.extend_from_slice(chunk);
            match scanner.scan(&held) {
                Scan::Body { settled } => {
                    edge.push(&held[..settled])?;
                    held.drain(..settled);
                }
                Scan::End { body, after } => {
                    let later: usize = rest[i + 1..].iter().map(|c| c.len()).sum();
                    end = Some(after + later);
                    edge.push(&held[..body])?;
                    return edge.frames.finish();
                }
            }
        }
        // FIN: the held-back bytes go to the edge, which finds the frame incomplete.
        edge.push(&held)?;
        edge.frames.finish()
    })();
    if verdict.is_err() {
        end = None;
    }
    let (path, headers) = head.into_parts();
    Outcome {
        head: Ok((path, headers)),
        body: edge.body,
        verdict,
        end,
    }
}

/// What the edge reads from a head (`crates/weir/src/edge/head.rs`): content type, metadata,
/// timeout.
fn admit(headers: &HeaderMap) {
    if let Some(ct) = headers.get(CONTENT_TYPE).and_then(ContentType::from_header) {
        assert_eq!(ContentType::from_header(&ct.to_header_value()), Some(ct));
    }
    for (name, value) in headers {
        if metadata::validate(name, value).is_ok() && metadata::is_binary(name) {
            let bytes = metadata::decode_binary(name, value).expect("validated");
            assert_eq!(
                metadata::decode_binary(name, &metadata::encode_binary(&bytes)).as_ref(),
                Ok(&bytes)
            );
        }
    }
    if let Some(value) = headers.get("grpc-timeout") {
        let _ = timeout::parse(value.as_bytes());
    }
}

fuzz_target!(|input: (u8, u8, u16, &[u8])| {
    let (mode, step, split, data) = input;
    let v2 = mode & 1 == 1;
    let limit = usize::from(mode >> 1) * 8;
    let expected = read(v2, limit, &[data]);
    for chunks in chunks::chunkings(step, split, data) {
        assert_eq!(read(v2, limit, &chunks), expected);
    }
});
