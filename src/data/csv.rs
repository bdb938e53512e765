//! CSV tables, and turning them into features the way the d2l house-price recipe does:
//! numeric columns standardized (sample standard deviation) with missing values set to 0,
//! categorical columns one-hot encoded with an extra "missing" column.
//!
//! The parser follows RFC 4180: comma-separated, fields optionally in double quotes (with `""`
//! for a quote inside), CRLF or LF line ends. A quoted field may hold commas, quotes and line
//! ends, which it keeps as written (a review text spanning lines keeps its `\r\n`). A leading
//! UTF-8 byte-order mark is skipped; blank lines between records are skipped. A ragged row, an
//! unterminated quote or invalid UTF-8 is an [`Error::Format`] naming the file and the line a
//! record starts on.

use crate::{Error, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const FORMAT: &str = "CSV";

/// Cells treated as missing values.
const MISSING: [&str; 6] = ["", "NA", "NaN", "nan", "N/A", "null"];

/// A table of text cells with a header row. Missing cells are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The file the table came from (for errors).
    pub path: PathBuf,
    /// Column names.
    pub headers: Vec<String>,
    /// Rows of cells, one per header.
    pub rows: Vec<Vec<Option<String>>>,
}

impl Table {
    /// Reads and parses a CSV file with a header row.
    pub fn read(path: impl AsRef<Path>) -> Result<Table> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Table::parse(&bytes, path)
    }

    /// Parses CSV bytes; `path` names the source in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Table> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            Error::format(path, FORMAT, format!("line {line}: invalid UTF-8"))
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut records = parse_records(text)
            .map_err(|(line, why)| Error::format(path, FORMAT, format!("line {line}: {why}")))?;
        if records.is_empty() {
            return Err(Error::format(path, FORMAT, "the file is empty: no header row"));
        }
        let headers: Vec<String> = records.remove(0).into_iter().map(|(_, f)| f).collect();
        let mut rows = Vec::with_capacity(records.len());
        for record in records {
            let line = record.first().map_or(0, |(l, _)| *l);
            if record.len() != headers.len() {
                return Err(Error::format(
                    path,
                    FORMAT,
                    format!("line {line}: {} fields, the header has {}", record.len(), headers.len()),
                ));
            }
            rows.push(record.into_iter().map(|(_, f)| (!MISSING.contains(&f.trim())).then_some(f)).collect());
        }
        Ok(Table { path: path.to_path_buf(), headers, rows })
    }

    /// The index of column `name`.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::format(&self.path, FORMAT, format!("no column named {name:?}")))
    }

    /// Column `name` as numbers (every cell must be present and numeric).
    pub fn numbers(&self, name: &str) -> Result<Vec<f64>> {
        let c = self.column(name)?;
        self.rows
            .iter()
            .enumerate()
            .map(|(r, row)| {
                row[c].as_deref().and_then(|v| v.trim().parse::<f64>().ok()).ok_or_else(|| {
                    Error::format(
                        &self.path,
                        FORMAT,
                        format!("row {}: column {name:?} is not a number", r + 1),
                    )
                })
            })
            .collect()
    }
}

/// A record: its fields, each with the line it starts on.
type Record = Vec<(usize, String)>;

/// Splits text into records. Skips blank lines (but not a line holding only `""`: that is a
/// record of one empty field). Errors are (line, reason).
fn parse_records(text: &str) -> std::result::Result<Vec<Record>, (usize, String)> {
    let mut records = Vec::new();
    let mut record: Record = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut field_line = 1;
    let mut quoted = false;
    // whether the current field was quoted: then even an empty one makes a record
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                quoted = true;
                was_quoted = true;
                at_field_start = false;
            }
            ',' => {
                record.push((field_line, std::mem::take(&mut field)));
                field_line = line;
                at_field_start = true;
                was_quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if !(record.is_empty() && field.is_empty() && !was_quoted) {
                    record.push((field_line, std::mem::take(&mut field)));
                    records.push(std::mem::take(&mut record));
                }
                line += 1;
                field_line = line;
                at_field_start = true;
                was_quoted = false;
            }
            _ => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if quoted {
        return Err((field_line, "a quoted field is never closed".into()));
    }
    if !(record.is_empty() && field.is_empty() && !was_quoted) {
        record.push((field_line, field));
        records.push(record);
    }
    Ok(records)
}

/// A numeric feature matrix with column names.
#[derive(Debug, Clone)]
pub struct Features {
    /// Column names (`LotArea`, `MSZoning=RL`, `MSZoning=<missing>`, …).
    pub names: Vec<String>,
    /// Row-major values, rows × names.len().
    pub values: Vec<f32>,
    /// Rows.
    pub rows: usize,
}

/// The d2l recipe over the rows of several tables (training and test sets together, so that
/// both get the same encoding), leaving out the columns in `drop`: a column whose present cells
/// all parse as numbers is standardized with its mean and sample standard deviation and its
/// missing cells set to 0; any other column is one-hot encoded, categories in sorted order,
/// plus a column marking missing cells.
pub fn prepare(tables: &[&Table], drop: &[&str]) -> Result<Features> {
    let first = tables.first().ok_or_else(|| Error::Invalid("prepare: no tables".into()))?;
    let columns: Vec<&String> = first.headers.iter().filter(|h| !drop.contains(&h.as_str())).collect();
    // each column's cells across all tables
    let mut cells: Vec<Vec<Option<&str>>> = vec![Vec::new(); columns.len()];
    for t in tables {
        for (k, name) in columns.iter().enumerate() {
            let c = t.column(name)?;
            cells[k].extend(t.rows.iter().map(|row| row[c].as_deref()));
        }
    }
    let rows = cells.first().map_or(0, Vec::len);
    let mut names = Vec::new();
    let mut out_columns: Vec<Vec<f32>> = Vec::new();
    for (name, col) in columns.iter().zip(&cells) {
        let numeric: Option<Vec<Option<f64>>> = col
            .iter()
            .map(|c| match c {
                None => Some(None),
                Some(s) => s.trim().parse::<f64>().ok().map(Some),
            })
            .collect();
        match numeric {
            Some(values) => {
                let present: Vec<f64> = values.iter().flatten().copied().collect();
                let n = present.len() as f64;
                let mean = present.iter().sum::<f64>() / n.max(1.0);
                let var = present.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0).max(1.0);
                let std = if var > 0.0 { var.sqrt() } else { 1.0 };
                names.push(name.to_string());
                out_columns
                    .push(values.iter().map(|v| v.map_or(0.0, |v| ((v - mean) / std) as f32)).collect());
            }
            None => {
                let categories: BTreeSet<&str> = col.iter().flatten().copied().collect();
                for cat in &categories {
                    names.push(format!("{name}={cat}"));
                    out_columns.push(col.iter().map(|c| (*c == Some(cat)) as u8 as f32).collect());
                }
                names.push(format!("{name}=<missing>"));
                out_columns.push(col.iter().map(|c| c.is_none() as u8 as f32).collect());
            }
        }
    }
    let mut values = Vec::with_capacity(rows * names.len());
    for r in 0..rows {
        values.extend(out_columns.iter().map(|c| c[r]));
    }
    Ok(Features { names, values, rows })
}
