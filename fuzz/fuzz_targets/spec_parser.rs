//! The spec parser and validator on arbitrary text: an error, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = zlayer_spec::parse("fuzz.yaml", text);
    }
});
