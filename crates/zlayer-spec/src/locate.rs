//! Maps a key path back to the line and column of its node in the YAML text.

use marked_yaml::Node;

/// Splits `services.web.endpoints[1].port` into its map keys and sequence indexes.
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        for idx in rest.split('[') {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                out.push(Segment::Index(i));
            }
        }
    }
    out
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// Line and column (1-based) of the deepest node on `path`. When `at_key` is
/// set and the path ends in a map key, the key itself is pointed at.
pub(crate) fn locate(root: &Node, path: &str, at_key: bool) -> (usize, usize) {
    let mut node = root;
    let mut pos = mark(root);
    for seg in segments(path) {
        match seg {
            Segment::Key(k) => {
                let Some(map) = node.as_mapping() else { break };
                let Some((key, value)) = map.iter().find(|(key, _)| key.as_str() == k) else {
                    break;
                };
                pos = if at_key {
                    key.span().start().map_or(pos, |m| (m.line(), m.column()))
                } else {
                    mark(value)
                };
                node = value;
            }
            Segment::Index(i) => {
                let Some(item) = node.as_sequence().and_then(|s| s.get(i)) else {
                    break;
                };
                node = item;
                pos = mark(item);
            }
        }
    }
    pos
}

fn mark(node: &Node) -> (usize, usize) {
    node.span()
        .start()
        .map_or((1, 1), |m| (m.line(), m.column()))
}

/// Line and column of the key path `path` in spec `text`, for errors found
/// after parsing (a missing image, an unset `$E:` variable).
pub fn position(text: &str, path: &str) -> (usize, usize) {
    match marked_yaml::parse_yaml(0, text) {
        Ok(root) => locate(&root, path, false),
        Err(_) => (1, 1),
    }
}
