//! The node API's one parse point (method, path, body), and a member's
//! forwarded-write body, on arbitrary input: an error, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The first line is "METHOD PATH", the rest the body.
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (head, body) = data.split_at(split);
    let body = body.get(1..).unwrap_or_default();
    let head = String::from_utf8_lossy(head);
    let (method, path) = head.split_once(' ').unwrap_or(("GET", &head));
    if let Ok(m) = hyper::Method::from_bytes(method.as_bytes()) {
        let _ = zlayer_api::parse_request(&m, path, body);
    }
    let _ = serde_json::from_slice::<zlayer_state::Command>(body);
});
