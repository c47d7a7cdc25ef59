//! House rule: every crate's `lib.rs` (or `main.rs`) and every module under
//! `crates/*/src` opens with a `//!` comment that says what it owns.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn opens_with_module_doc(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.starts_with("//!"))
}

#[test]
fn every_module_opens_with_a_doc_comment() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in std::fs::read_dir(&crates).expect("crates/").flatten() {
        let src = krate.path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(files.len() > 100, "found only {} modules", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !opens_with_module_doc(&std::fs::read_to_string(f).unwrap_or_default()))
        .map(|f| f.strip_prefix(&crates).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these modules do not open with a `//!` comment saying what they own: {missing:?}"
    );
}

#[test]
fn the_check_sees_a_missing_header() {
    assert!(opens_with_module_doc("\n//! owns x\nuse y;"));
    assert!(!opens_with_module_doc("use y;\n//! late"));
    assert!(!opens_with_module_doc("/// item doc\nfn f() {}"));
}
