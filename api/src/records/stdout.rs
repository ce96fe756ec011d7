//! The records pgplane writes for operators (DESIGN.md "Records"): one JSON
//! object per line on standard output, where a log shipper takes them to Loki.

use std::io::Write;

use serde::Serialize;

/// Prints `record` as one JSON line on standard output, whole: the lock keeps
/// concurrent lines from interleaving.
pub fn print_line(record: &impl Serialize) {
    let mut line = serde_json::to_vec(record).expect("a record always serializes");
    line.push(b'\n');
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&line);
    let _ = out.flush();
}
