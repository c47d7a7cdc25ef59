//! Rendering listings as a table, JSON or YAML.

use serde::Serialize;

use crate::cli::Format;

pub fn render<T: Serialize>(
    format: Format,
    rows: &[T],
    headers: &[&str],
    cells: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(rows)?),
        Format::Yaml => print!("{}", serde_saphyr::to_string(&rows)?),
        Format::Table => {
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
                println!("{}", s.join("  ").trim_end());
            };
            line(headers.iter().map(|h| h.to_string()).collect());
            for r in body {
                line(r);
            }
        }
    }
    Ok(())
}

/// One value (not a listing) as JSON or YAML; tables are the caller's.
pub fn print_value<T: Serialize>(format: Format, value: &T) -> anyhow::Result<()> {
    match format {
        Format::Yaml => print!("{}", serde_saphyr::to_string(value)?),
        _ => println!("{}", serde_json::to_string_pretty(value)?),
    }
    Ok(())
}
