//! `/ws`: a WebSocket echo (RFC 6455), enough for the ingress tests: the
//! handshake, then every text or binary frame sent back, until close.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Frames larger than this end the connection (the demo needs no more).
const MAX_FRAME: u64 = 1 << 20;

/// The 101 answer, with the echo spawned on the upgraded connection.
pub fn upgrade(mut req: Request<Incoming>) -> Response<http_body_util::Full<hyper::body::Bytes>> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        let mut r = Response::new("missing sec-websocket-key\n".into());
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let accept = {
        use base64::Engine;
        let mut h = Sha1::new();
        h.update(key.as_bytes());
        h.update(GUID.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(up) = on_upgrade.await {
            let _ = echo(TokioIo::new(up)).await;
        }
    });
    let mut r = Response::new(Default::default());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("upgrade", "websocket".parse().expect("header"));
    h.insert("connection", "upgrade".parse().expect("header"));
    h.insert(
        "sec-websocket-accept",
        accept.parse().expect("base64 is a header value"),
    );
    r
}

async fn echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
) -> std::io::Result<()> {
    loop {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await?;
        let opcode = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7f {
            126 => u64::from(s.read_u16().await?),
            127 => s.read_u64().await?,
            n => u64::from(n),
        };
        if len > MAX_FRAME {
            return Ok(());
        }
        let mut mask = [0u8; 4];
        if masked {
            s.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).await?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        let mut out = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&payload);
        s.write_all(&out).await?;
        if opcode == 8 {
            return Ok(());
        }
    }
}
