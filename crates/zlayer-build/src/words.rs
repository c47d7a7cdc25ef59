//! Dockerfile word processing: splitting `ENV`/`LABEL`/`ARG` lines into
//! words, and expanding `$VAR`, `${VAR}`, `${VAR:-word}` and `${VAR:+word}`
//! with quote removal, as Docker does for the instructions that take
//! variables. No crate implements Docker's rules (single quotes are literal,
//! a backslash escapes outside quotes and only `"`, `$` and `\` inside
//! double quotes, an unset variable is empty), so they are written out here.

use std::collections::BTreeMap;

pub type Vars = BTreeMap<String, String>;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WordError {
    #[error("unterminated quote {0}")]
    Unterminated(char),
    #[error("unterminated `${{` (missing `}}`)")]
    UnterminatedBrace,
    #[error("unsupported variable modifier in `${{{0}}}` (zlayer supports ${{VAR}}, ${{VAR:-default}} and ${{VAR:+alternative}})")]
    Modifier(String),
}

/// Splits on whitespace outside quotes, keeping quotes and escapes as written.
pub fn split_raw(s: &str) -> Result<Vec<String>, WordError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                cur.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                cur.push('\\');
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (_, c) => cur.push(c),
        }
    }
    if let Some(q) = quote {
        return Err(WordError::Unterminated(q));
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    Ok(words)
}

/// Expands variables and removes quotes and escapes.
pub fn expand(s: &str, vars: &Vars) -> Result<String, WordError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\'' => {
                let end = find(&chars, i + 1, '\'').ok_or(WordError::Unterminated('\''))?;
                out.extend(&chars[i + 1..end]);
                i = end + 1;
            }
            '"' => {
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(WordError::Unterminated('"')),
                        Some('"') => break,
                        Some('\\') if matches!(chars.get(i + 1), Some('"' | '$' | '\\')) => {
                            out.push(chars[i + 1]);
                            i += 2;
                        }
                        Some('$') => i = variable(&chars, i, vars, &mut out)?,
                        Some(c) => {
                            out.push(*c);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            '\\' => {
                match chars.get(i + 1) {
                    Some(c) => out.push(*c),
                    None => out.push('\\'),
                }
                i += 2;
            }
            '$' => i = variable(&chars, i, vars, &mut out)?,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// `NAME=value` words (each expanded), or the legacy `NAME value...` form.
pub fn key_values(s: &str, vars: &Vars) -> Result<Vec<(String, String)>, WordError> {
    let raw = split_raw(s)?;
    if let Some(first) = raw.first() {
        if !first.contains('=') {
            let value = s.trim_start()[first.len()..].trim();
            return Ok(vec![(expand(first, vars)?, expand(value, vars)?)]);
        }
    }
    raw.iter()
        .map(|w| {
            let (k, v) = w.split_once('=').unwrap_or((w, ""));
            Ok((expand(k, vars)?, expand(v, vars)?))
        })
        .collect()
}

fn find(chars: &[char], from: usize, c: char) -> Option<usize> {
    (from..chars.len()).find(|&j| chars[j] == c)
}

/// The `}` closing a `${` whose body starts at `from`, skipping nested `${...}`.
fn closing_brace(chars: &[char], from: usize) -> Option<usize> {
    let mut depth = 0;
    let mut j = from;
    while j < chars.len() {
        match chars[j] {
            '$' if chars.get(j + 1) == Some(&'{') => {
                depth += 1;
                j += 1;
            }
            '}' if depth == 0 => return Some(j),
            '}' => depth -= 1,
            _ => {}
        }
        j += 1;
    }
    None
}

fn is_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands the variable at `chars[at] == '$'`; returns the index after it.
fn variable(chars: &[char], at: usize, vars: &Vars, out: &mut String) -> Result<usize, WordError> {
    let lookup = |name: &str| vars.get(name).cloned().unwrap_or_default();
    match chars.get(at + 1) {
        Some('{') => {
            let end = closing_brace(chars, at + 2).ok_or(WordError::UnterminatedBrace)?;
            let inner: String = chars[at + 2..end].iter().collect();
            let name_len = inner.chars().take_while(|c| is_name(*c)).count();
            let (name, rest) = inner.split_at(name_len);
            let value = vars.get(name).filter(|v| !v.is_empty());
            match rest {
                "" => out.push_str(&lookup(name)),
                r if r.starts_with(":-") => match value {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&expand(&r[2..], vars)?),
                },
                r if r.starts_with(":+") => {
                    if value.is_some() {
                        out.push_str(&expand(&r[2..], vars)?)
                    }
                }
                _ => return Err(WordError::Modifier(inner)),
            }
            Ok(end + 1)
        }
        Some(c) if is_name(*c) => {
            let len = chars[at + 1..].iter().take_while(|c| is_name(**c)).count();
            let name: String = chars[at + 1..at + 1 + len].iter().collect();
            out.push_str(&lookup(&name));
            Ok(at + 1 + len)
        }
        _ => {
            out.push('$');
            Ok(at + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [("A", "one"), ("B", "two words"), ("E", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands_like_docker() {
        let v = vars();
        assert_eq!(expand("$A/${A}x", &v).unwrap(), "one/onex");
        assert_eq!(expand("${NOPE}", &v).unwrap(), "");
        assert_eq!(
            expand("${E:-d}|${A:-d}|${A:+alt}|${E:+alt}", &v).unwrap(),
            "d|one|alt|"
        );
        assert_eq!(expand("'$A' \"$A\" \\$A", &v).unwrap(), "$A one $A");
        assert_eq!(expand("\"a\\\"b\\n\"", &v).unwrap(), "a\"b\\n");
        assert_eq!(expand("cost: 5$", &v).unwrap(), "cost: 5$");
        assert_eq!(expand("${A:-${B}}", &v).unwrap(), "one");
        assert_eq!(expand("${E:-$B}", &v).unwrap(), "two words");
    }

    #[test]
    fn refuses_what_docker_refuses() {
        let v = vars();
        assert_eq!(expand("'abc", &v), Err(WordError::Unterminated('\'')));
        assert_eq!(expand("${A", &v), Err(WordError::UnterminatedBrace));
        assert!(matches!(
            expand("${A/x/y}", &v),
            Err(WordError::Modifier(_))
        ));
    }

    #[test]
    fn key_value_forms() {
        let v = vars();
        assert_eq!(
            key_values("X=1 Y=\"a b\" Z=$A", &v).unwrap(),
            vec![
                ("X".into(), "1".into()),
                ("Y".into(), "a b".into()),
                ("Z".into(), "one".into())
            ]
        );
        assert_eq!(
            key_values("X  hello   world", &v).unwrap(),
            vec![("X".into(), "hello   world".into())]
        );
        assert_eq!(
            key_values("\"my label\"=v", &v).unwrap(),
            vec![("my label".into(), "v".into())]
        );
    }
}
