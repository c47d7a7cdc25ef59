//! Rendering listings as a table, JSON or YAML. Each is written to stdout
//! whole, in one write: a reader that stops early (`| grep -q`, `| head`)
//! then finds it all in the pipe, and one that is already gone ends the
//! command quietly instead of a panic on a broken pipe.

use std::io::Write;

use serde::Serialize;

use crate::cli::Format;

pub fn render<T: Serialize>(
    format: Format,
    rows: &[T],
    headers: &[&str],
    cells: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<()> {
    let text = match format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(rows)?),
        Format::Yaml => serde_saphyr::to_string(&rows)?,
        Format::Table => table(rows, headers, cells),
    };
    emit(&text)
}

fn table<T>(rows: &[T], headers: &[&str], cells: impl Fn(&T) -> Vec<String>) -> String {
    let body: Vec<Vec<String>> = rows.iter().map(&cells).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &body {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cols: Vec<String>| {
        let s: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        format!("{}\n", s.join("  ").trim_end())
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for r in body {
        out.push_str(&line(r));
    }
    out
}

/// One value (not a listing) as JSON or YAML; tables are the caller's.
pub fn print_value<T: Serialize>(format: Format, value: &T) -> anyhow::Result<()> {
    let text = match format {
        Format::Yaml => serde_saphyr::to_string(value)?,
        _ => format!("{}\n", serde_json::to_string_pretty(value)?),
    };
    emit(&text)
}

/// Writes `text` to stdout at once; a reader that has gone is no error.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_pads_each_column_to_its_widest_cell() {
        let rows = [("a", "long value"), ("bbbb", "x")];
        let text = table(&rows, &["NAME", "V"], |r| vec![r.0.into(), r.1.into()]);
        assert_eq!(text, "NAME  V\na     long value\nbbbb  x\n");
    }
}
