//! Links the binary as a position-dependent executable. Each container's
//! shim is this binary, waiting; a PIE would carry its relocated read-only
//! data as private dirty pages (about 0.7 MiB) in every shim.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
