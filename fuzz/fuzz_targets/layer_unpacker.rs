//! The layer unpacker on arbitrary bytes (plain, gzip or zstd tar), into a
//! fresh temp dir with small limits: an error or a layer, never a panic,
//! and nothing written outside the temp dir (every path is resolved inside
//! it; the unit and e2e tests check the host side).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let limits = zlayer_image::LayerLimits {
        max_bytes: 16 << 20,
        max_entries: 4096,
    };
    let _ = zlayer_image::unpack_layer_limited(data, dir.path(), limits);
});
