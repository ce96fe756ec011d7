//! How client commands print resources: `-o table` (columns that fit the
//! terminal), `-o json` (the API's own objects, for jq) or `-o yaml`.

use std::io::IsTerminal;

use chrono::{DateTime, Utc};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Rows of cells under headers.
pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Each column's width: its widest cell or header, and at least `floor`'s.
    pub fn widths(&self, floor: &[usize]) -> Vec<usize> {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        for (w, f) in widths.iter_mut().zip(floor) {
            *w = (*w).max(*f);
        }
        widths
    }

    /// The table as lines no wider than `width`: the widest columns give
    /// way first, their cells cut with `…`.
    pub fn render(&self, width: Option<usize>) -> String {
        self.render_in(self.widths(&[]), width)
    }

    /// As [`Table::render`], with the columns at least `widths` wide.
    pub fn render_in(&self, mut widths: Vec<usize>, width: Option<usize>) -> String {
        let columns = self.headers.len();
        if let Some(width) = width {
            let gaps = 3 * columns.saturating_sub(1);
            while widths.iter().sum::<usize>() + gaps > width {
                // The first column (a name) is never cut: a cut name is ambiguous.
                let Some((widest, &w)) = widths.iter().enumerate().skip(1).max_by_key(|(_, w)| **w)
                else {
                    break;
                };
                if w <= 4 {
                    break;
                }
                widths[widest] = w - 1;
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                let cell = cut(cell, *w);
                if i + 1 < columns {
                    line.push_str(&format!("{cell:<w$}   "));
                } else {
                    line.push_str(&cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn cut(cell: &str, width: usize) -> String {
    if cell.chars().count() <= width {
        cell.to_owned()
    } else {
        let mut s: String = cell.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// The width of the terminal standard output is, when it is one.
pub fn terminal_width() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the winsize it is given.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        return Some(size.ws_col as usize);
    }
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok())
}

/// Prints a value in the format asked for; `table` builds the table form.
pub fn print(value: &Value, format: Format, table: impl FnOnce(&Value) -> Table) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).expect("JSON prints")
        ),
        Format::Yaml => print!("{}", serde_yaml::to_string(value).expect("YAML prints")),
        Format::Table => print!("{}", table(value).render(terminal_width())),
    }
}

/// A field as a cell: strings bare, absent as `-`.
pub fn cell(value: &Value, key: &str) -> String {
    match value.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// `k=v,k=v` of an object of strings.
pub fn pairs(value: &Value, key: &str) -> String {
    match value.get(key).and_then(Value::as_object) {
        Some(map) if !map.is_empty() => map
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".into(),
    }
}

/// How long ago an RFC 3339 time was, as kubectl shows ages: `45s`, `12m`, `3h`, `5d`.
pub fn age(value: &Value, key: &str, now: DateTime<Utc>) -> String {
    let Some(at) = value
        .get(key)
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    else {
        return "-".into();
    };
    let secs = (now - at.with_timezone(&Utc)).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 120 * 60 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A database's table row: the columns `db list` and `db get` show.
pub fn database_row(db: &Value, now: DateTime<Utc>) -> Vec<String> {
    vec![
        cell(db, "name"),
        cell(db, "state"),
        format!("{}/{}", cell(db, "ready_instances"), cell(db, "instances")),
        cell(db, "postgres_version"),
        cell(db, "storage"),
        pairs(db, "labels"),
        cell(db, "owner"),
        cell(db, "source"),
        age(db, "created_at", now),
    ]
}

pub const DATABASE_HEADERS: &[&str] = &[
    "NAME", "STATE", "READY", "VERSION", "STORAGE", "LABELS", "OWNER", "SOURCE", "AGE",
];

pub fn databases(items: &[Value]) -> Table {
    let now = Utc::now();
    let mut table = Table::new(DATABASE_HEADERS);
    for db in items {
        table.row(database_row(db, now));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_fits_the_width_by_cutting_its_widest_column() {
        let mut t = Table::new(&["NAME", "LABELS"]);
        t.row(vec![
            "orders".into(),
            "team=payments,tier=gold,region=eu".into(),
        ]);
        let wide = t.render(None);
        assert_eq!(
            wide.lines().nth(1).unwrap(),
            "orders   team=payments,tier=gold,region=eu"
        );
        let narrow = t.render(Some(24));
        for line in narrow.lines() {
            assert!(line.chars().count() <= 24, "{line:?}");
        }
        assert_eq!(narrow.lines().nth(1).unwrap(), "orders   team=payments,…");
    }
}
