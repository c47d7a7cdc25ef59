//! Response bodies: whole ones, and streams (a followed log, an exec's
//! output) that reach the caller as they are produced.

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

/// Every response body the API sends.
pub type Body = BoxBody<Bytes, std::io::Error>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body fed by a channel: each `Ok` is sent as it arrives, an `Err` ends
/// the response early, and the body ends when every sender is dropped.
pub fn channel(rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>) -> Body {
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        let next = rx.recv().await?;
        Some((next.map(hyper::body::Frame::data), rx))
    });
    http_body_util::StreamBody::new(frames).boxed()
}

/// An exec's output on the wire, framed as Docker's attach stream is: an
/// 8-byte header (stream kind, three zero bytes, payload length as a
/// big-endian u32) before each payload. Kind 1 is stdout, 2 stderr, and a
/// last frame of kind 3 carries the exit code (a big-endian i32).
pub mod exec_stream {
    use hyper::body::Bytes;

    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Frame {
        Stdout(Bytes),
        Stderr(Bytes),
        Exit(i32),
    }

    const HEADER: usize = 8;
    /// The largest payload a reader accepts in one frame.
    pub const MAX_FRAME: usize = 1 << 20;

    pub fn encode(frame: &Frame) -> Bytes {
        let (kind, payload): (u8, &[u8]) = match frame {
            Frame::Stdout(b) => (1, b),
            Frame::Stderr(b) => (2, b),
            Frame::Exit(code) => return header_and(3, &code.to_be_bytes()),
        };
        header_and(kind, payload)
    }

    fn header_and(kind: u8, payload: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.extend_from_slice(&[kind, 0, 0, 0]);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out.into()
    }

    /// Reassembles frames from chunks cut anywhere.
    #[derive(Default)]
    pub struct Decoder {
        buf: Vec<u8>,
    }

    impl Decoder {
        pub fn push(&mut self, chunk: &[u8]) {
            self.buf.extend_from_slice(chunk);
        }

        /// The next whole frame, if one has arrived.
        pub fn next_frame(&mut self) -> Result<Option<Frame>, String> {
            if self.buf.len() < HEADER {
                return Ok(None);
            }
            let len =
                u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
            if len > MAX_FRAME {
                return Err(format!("an exec frame of {len} bytes (limit {MAX_FRAME})"));
            }
            if self.buf.len() < HEADER + len {
                return Ok(None);
            }
            let kind = self.buf[0];
            let payload: Vec<u8> = self.buf.drain(..HEADER + len).skip(HEADER).collect();
            match (kind, payload.len()) {
                (1, _) => Ok(Some(Frame::Stdout(payload.into()))),
                (2, _) => Ok(Some(Frame::Stderr(payload.into()))),
                (3, 4) => Ok(Some(Frame::Exit(i32::from_be_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ])))),
                (k, n) => Err(format!("an exec frame of kind {k} with {n} bytes")),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn frames_cut_anywhere_come_back_whole_and_bad_ones_are_refused() {
            let frames = [
                Frame::Stdout(Bytes::from_static(b"hello\n")),
                Frame::Stderr(Bytes::from_static(b"")),
                Frame::Exit(-3),
            ];
            let wire: Vec<u8> = frames.iter().flat_map(|f| encode(f).to_vec()).collect();
            for cut in 1..wire.len() {
                let mut d = Decoder::default();
                let mut got = Vec::new();
                for part in wire.chunks(cut) {
                    d.push(part);
                    while let Some(f) = d.next_frame().unwrap() {
                        got.push(f);
                    }
                }
                assert_eq!(got, frames);
            }
            let mut d = Decoder::default();
            d.push(&[9, 0, 0, 0, 0, 0, 0, 1, 0]);
            assert!(d.next_frame().is_err());
            let mut d = Decoder::default();
            d.push(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
            assert!(d.next_frame().is_err());
        }
    }
}
