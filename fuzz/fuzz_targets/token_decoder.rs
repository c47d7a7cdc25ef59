//! Join and API token decoding on arbitrary strings: an error, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = zlayer_state::token::JoinToken::decode(s);
        let _ = zlayer_state::token::JoinToken::decode_api(s);
    }
});
