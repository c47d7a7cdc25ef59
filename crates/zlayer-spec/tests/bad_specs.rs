//! Every malformed spec under `tests/bad/` must fail with exactly the message
//! in its sibling `.err` file (`check(input, expect)` style).

use std::path::Path;

#[test]
fn malformed_specs_give_exact_messages() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "expected at least 20 malformed specs");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(case).unwrap();
        let got = match zlayer_spec::parse(name, &text) {
            Ok(_) => "<accepted>".to_string(),
            Err(e) => e.to_string(),
        };
        let expect_file = case.with_extension("err");
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(&expect_file, format!("{got}\n")).unwrap();
            continue;
        }
        let expect = std::fs::read_to_string(&expect_file).unwrap_or_default();
        if expect.trim_end() != got {
            failures.push(format!(
                "{name}:\n  expected: {}\n  got:      {got}",
                expect.trim_end()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shipped_specs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            zlayer_spec::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn defaults_are_filled_in() {
    let spec = zlayer_spec::parse(
        "t.yaml",
        "version: v1\ndeployment: d\nservices:\n  a:\n    image: { name: demo }\n",
    )
    .unwrap();
    let a = &spec.services["a"];
    assert_eq!(a.scale.initial_replicas(), 1);
    assert_eq!(a.rtype, zlayer_spec::ResourceType::Service);
    assert_eq!(a.image.pull_policy, zlayer_spec::PullPolicy::IfNotPresent);
    assert_eq!(a.stop.grace.0.as_secs(), 10);
}
