//! The code's layers point down only: each top-level module of `api/src`
//! has a rank, and no module names (`crate::x`) a module of a higher rank,
//! nor is there any cycle among the top-level modules. Below the HTTP layer
//! nothing names axum, an HTTP status or the HTTP error type. This reads
//! the source itself, so a new edge fails here naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Higher ranks may import lower ones (and their own rank, without cycles).
const RANKS: &[(&str, u8)] = &[
    ("main", 7),
    ("chain", 0),
    ("cli", 7),
    ("client", 6),
    ("serve", 7),
    ("http", 6),
    ("app", 5),
    ("backend", 4),
    ("auth", 3),
    ("records", 3),
    ("metrics", 1),
    ("config", 1),
    ("states", 1),
    ("model", 0),
    ("secret", 0),
    ("files", 0),
    ("lib", 8),
];

/// Modules allowed to speak HTTP (the API itself, and the wiring that serves it).
const HTTP_SPEAKERS: &[&str] = &["http", "client", "serve", "cli", "main", "lib"];

fn rank(module: &str) -> u8 {
    RANKS
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, r)| *r)
        .unwrap_or_else(|| panic!("module {module} has no rank in tests/layers.rs: give it one"))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_owned()
}

/// The code of a file without comments, string literals and its unit tests
/// (tests may reach across layers to build what they check).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        // Drop string literals: a message may mention a module by name.
        let mut in_string = false;
        let mut escaped = false;
        for c in line.chars() {
            match (in_string, c) {
                (true, '\\') if !escaped => escaped = true,
                (true, '"') if !escaped => in_string = false,
                (true, _) => escaped = false,
                (false, '"') => in_string = true,
                (false, c) => out.push(c),
            }
        }
        out.push('\n');
    }
    out
}

/// The top-level modules a piece of code names: `crate::x`, and each `x`
/// of `use crate::{x::.., y}`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for part in split_top_level(&group[..end]) {
                let name = ident(part.trim());
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Every edge `from -> to` between top-level modules, with a file that makes it.
fn edges() -> BTreeMap<(String, String), PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut edges = BTreeMap::new();
    for file in files {
        let from = module_of(&src, &file);
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        for to in named_modules(&code) {
            if to != from {
                edges.entry((from.clone(), to)).or_insert(file.clone());
            }
        }
    }
    edges
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let mut wrong = Vec::new();
    for ((from, to), file) in edges() {
        if rank(&to) > rank(&from) {
            wrong.push(format!(
                "{from} (rank {}) imports {to} (rank {}) in {}",
                rank(&from),
                rank(&to),
                file.display()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports pointing up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn there_is_no_import_cycle_among_the_modules() {
    let edges = edges();
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from).or_default().push(to);
    }
    // A depth-first search that reports the first back edge it meets.
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node);
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = visit(node, &graph, &mut path, &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn nothing_below_http_speaks_http() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        if HTTP_SPEAKERS.contains(&module_of(&src, &file).as_str()) {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        for word in ["axum", "StatusCode", "HttpError", "IntoResponse", "problem"] {
            if code.contains(word) {
                wrong.push(format!("{} names {word}", file.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_scanner_sees_grouped_and_inline_imports() {
    let code = code_of(
        "use crate::{model::{A, B}, records::C};\nfn f() { crate::app::x(); } // crate::http\nlet s = \"crate::cli\";\n",
    );
    let names: Vec<_> = named_modules(&code).into_iter().collect();
    assert_eq!(names, ["app", "model", "records"]);
}
