//! Reading a spec: YAML with positions, then serde into the types, then the
//! semantic checks. Errors from each stage carry file, line, column and path.

use std::path::Path;

use marked_yaml::{LoadError, LoaderOptions};

use crate::error::{did_you_mean, SpecError, SpecErrors};
use crate::locate::locate;
use crate::types::Spec;
use crate::validate::validate;

/// Reads and parses the spec at `path`.
pub fn load_file(path: &Path) -> Result<Spec, SpecErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&file, &text),
        Err(e) => Err(SpecErrors(vec![SpecError {
            file,
            line: 0,
            column: 0,
            path: String::new(),
            message: format!("cannot read spec: {e}"),
            hint: None,
        }])),
    }
}

/// Parses spec text; `file` is only used in error messages.
pub fn parse(file: &str, text: &str) -> Result<Spec, SpecErrors> {
    let opts = LoaderOptions::default().error_on_duplicate_keys(true);
    let root = marked_yaml::parse_yaml_with_options(0, text, opts)
        .map_err(|e| SpecErrors(vec![load_error(file, &e)]))?;
    let spec: Spec = marked_yaml::from_node(&root).map_err(|e| {
        let path = e.path().unwrap_or("").to_string();
        SpecErrors(vec![serde_error(file, &root, path, e.into_inner())])
    })?;
    let problems = validate(&spec);
    if problems.is_empty() {
        return Ok(spec);
    }
    Err(SpecErrors(
        problems
            .into_iter()
            .map(|p| {
                let (line, column) = locate(&root, &p.path, p.at_key);
                SpecError {
                    file: file.into(),
                    line,
                    column,
                    path: p.path,
                    message: p.message,
                    hint: p.hint,
                }
            })
            .collect(),
    ))
}

fn load_error(file: &str, e: &LoadError) -> SpecError {
    let (marker, message) = match e {
        LoadError::TopLevelMustBeMapping(m) => (Some(*m), "the spec must be a YAML mapping".into()),
        LoadError::TopLevelMustBeSequence(m) => (Some(*m), "unexpected top-level sequence".into()),
        LoadError::UnexpectedAnchor(m) => (Some(*m), "YAML anchors are not supported".into()),
        LoadError::MappingKeyMustBeScalar(m) => {
            (Some(*m), "mapping keys must be plain scalars".into())
        }
        LoadError::UnexpectedTag(m) => (Some(*m), "YAML tags are not supported".into()),
        LoadError::ScanError(m, s) => (Some(*m), format!("invalid YAML: {}", scan_message(s))),
        LoadError::DuplicateKey(d) => (
            d.key.span().start().copied(),
            format!("duplicate key `{}`", d.key.as_str()),
        ),
        #[allow(unreachable_patterns)]
        other => (None, other.to_string()),
    };
    let (line, column) = marker.map_or((1, 1), |m| (m.line(), m.column()));
    SpecError {
        file: file.into(),
        line,
        column,
        path: String::new(),
        message,
        hint: None,
    }
}

fn scan_message(s: &impl std::fmt::Display) -> String {
    let full = s.to_string();
    // yaml-rust appends "at byte N line L column C"; our prefix already says where.
    full.split(" at byte ").next().unwrap_or(&full).to_string()
}

fn serde_error(
    file: &str,
    root: &marked_yaml::Node,
    mut path: String,
    e: marked_yaml::spanned_serde::Error,
) -> SpecError {
    let (line, column) = e
        .start_mark()
        .map_or_else(|| locate(root, &path, false), |m| (m.line(), m.column()));
    let (message, hint) = match &e {
        marked_yaml::spanned_serde::Error::UnknownFieldError(field, expected, _) => {
            if !path.ends_with(field.as_str()) {
                path = if path.is_empty() {
                    field.clone()
                } else {
                    format!("{path}.{field}")
                };
            }
            let hint = did_you_mean(field, expected.iter().copied())
                .or_else(|| Some(format!("valid keys here: {}", expected.join(", "))));
            (format!("unknown key `{field}`"), hint)
        }
        marked_yaml::spanned_serde::Error::NotBoolean(_) => ("expected true or false".into(), None),
        marked_yaml::spanned_serde::Error::IntegerParseFailure(_, _) => {
            ("expected a whole number".into(), None)
        }
        marked_yaml::spanned_serde::Error::FloatParseFailure(_, _) => {
            ("expected a number".into(), None)
        }
        marked_yaml::spanned_serde::Error::Other(msg, _) => other_message(msg),
    };
    SpecError {
        file: file.into(),
        line,
        column,
        path,
        message,
        hint,
    }
}

/// Rewrites serde's generic messages into spec terms, with a suggestion for
/// misspelt enum values.
fn other_message(msg: &str) -> (String, Option<String>) {
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        let (got, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let options: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let hint = did_you_mean(got, options.iter().copied())
            .unwrap_or_else(|| format!("expected one of: {}", options.join(", ")));
        return (format!("unknown value `{got}`"), Some(hint));
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.trim_end_matches('`');
        return (format!("missing required key `{field}`"), None);
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        return (format!("wrong type: {rest}"), None);
    }
    (msg.to_string(), None)
}
