//! An append-only file of JSON lines with an in-memory index: the local
//! store of service events and of audit records.
//!
//! One writer thread owns the file. It takes whatever is waiting, writes it
//! in one go, `fdatasync`s once (group commit, so 50 concurrent writers cost
//! about one disk flush, not 50), and only then makes the entries visible to
//! queries and tells each waiting caller. A failed write is cut off the file
//! again, so a line is either whole and acknowledged or absent.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, RwLock};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::Record;

#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot write to {path}")]
pub struct WriteError {
    pub path: String,
    /// Shared: one failed write answers every caller of its batch.
    #[source]
    pub cause: Arc<std::io::Error>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open {path}")]
pub struct OpenError {
    path: String,
    #[source]
    cause: std::io::Error,
}

/// An entry with its position in the journal (0 is the oldest).
#[derive(Debug, Clone)]
pub struct Positioned<T> {
    pub position: u64,
    pub entry: T,
}

/// Time window and order of a scan.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// Only entries older than this position (the cursor of a next page).
    pub before_position: Option<u64>,
}

struct Index<T> {
    entries: Vec<T>,
    by_database: HashMap<String, Vec<u32>>,
    by_key: HashMap<String, u32>,
}

impl<T: Record> Index<T> {
    fn insert(&mut self, entry: T) {
        if let Some(key) = entry.key() {
            if let Some(&at) = self.by_key.get(key) {
                self.entries[at as usize] = entry;
                return;
            }
        }
        let at = u32::try_from(self.entries.len()).expect("fewer than 4 billion entries");
        if let Some(db) = entry.database() {
            self.by_database.entry(db.to_owned()).or_default().push(at);
        }
        if let Some(key) = entry.key() {
            self.by_key.insert(key.to_owned(), at);
        }
        self.entries.push(entry);
    }
}

struct Pending<T> {
    /// `None`: a flush, answered once everything sent before is written.
    entry: Option<T>,
    /// Whether the entry is in the index already.
    indexed: bool,
    done: Option<oneshot::Sender<Result<(), WriteError>>>,
}

pub struct Journal<T: Record> {
    index: Arc<RwLock<Index<T>>>,
    writer: mpsc::Sender<Pending<T>>,
    /// Whether the last write reached the disk; `/readyz` reports it.
    healthy: Arc<AtomicBool>,
    path: PathBuf,
    /// Lines of the file that were not records when it was opened.
    unreadable: u64,
}

impl<T: Record> Journal<T> {
    /// Reads the file (a torn last line, from a crash mid-write, is cut off)
    /// and starts the writer thread.
    pub fn open(path: &Path) -> Result<Journal<T>, OpenError> {
        let err = |cause: std::io::Error| OpenError {
            path: path.display().to_string(),
            cause,
        };
        let mut index = Index {
            entries: Vec::new(),
            by_database: HashMap::new(),
            by_key: HashMap::new(),
        };
        let (valid_len, unreadable) = read_file(path, &mut index).map_err(err)?;
        // Records name users, addresses and databases: for this account only,
        // also when an older version made the file readable by others.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
        file.set_len(valid_len).map_err(err)?;
        let index = Arc::new(RwLock::new(index));
        let healthy = Arc::new(AtomicBool::new(true));
        let (writer, rx) = mpsc::channel();
        let name = path
            .file_stem()
            .map_or("journal".into(), |s| s.to_string_lossy().into_owned());
        let state = Writer {
            file,
            len: valid_len,
            path: path.to_owned(),
            index: index.clone(),
            healthy: healthy.clone(),
        };
        std::thread::Builder::new()
            .name(format!("pgplane-{name}"))
            .spawn(move || state.run(rx))
            .map_err(err)?;
        Ok(Journal {
            index,
            writer,
            healthy,
            path: path.to_owned(),
            unreadable,
        })
    }

    /// Appends and waits until the line is on disk; only then is the entry
    /// visible to queries.
    pub async fn append(&self, entry: T) -> Result<(), WriteError> {
        let (done, wait) = oneshot::channel();
        self.send(Pending {
            entry: Some(entry),
            indexed: false,
            done: Some(done),
        })?;
        wait.await.unwrap_or_else(|_| Err(self.stopped()))
    }

    /// Waits until every entry appended before is written (or failed): at
    /// shutdown, so that what [`Journal::append_later`] took is not lost.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        let flush = Pending {
            entry: None,
            indexed: true,
            done: Some(done),
        };
        if self.send(flush).is_ok() {
            let _ = wait.await;
        }
    }

    /// Makes the entry visible at once and appends it without waiting; a
    /// failed write is logged and shows in `/readyz`.
    pub fn append_later(&self, entry: T) {
        self.index
            .write()
            .expect("not poisoned")
            .insert(entry.clone());
        let pending = Pending {
            entry: Some(entry),
            indexed: true,
            done: None,
        };
        if let Err(e) = self.send(pending) {
            tracing::error!(error = %e, "journal writer is gone");
        }
    }

    fn send(&self, pending: Pending<T>) -> Result<(), WriteError> {
        self.writer.send(pending).map_err(|_| self.stopped())
    }

    fn stopped(&self) -> WriteError {
        WriteError {
            path: self.path.display().to_string(),
            cause: Arc::new(std::io::Error::other("the journal's writer thread stopped")),
        }
    }

    /// How many lines of the file were not records when it was opened.
    pub fn unreadable(&self) -> u64 {
        self.unreadable
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Up to `limit` entries matching `keep`, newest first. With `database`,
    /// only that database's entries are looked at (through the index).
    pub fn scan(
        &self,
        database: Option<&str>,
        window: &Window,
        limit: usize,
        keep: impl Fn(&T) -> bool,
    ) -> Vec<Positioned<T>> {
        let index = self.index.read().expect("not poisoned");
        let in_window = |pos: u64, e: &T| {
            window.before_position.is_none_or(|b| pos < b)
                && window.since.is_none_or(|s| e.ts() >= s)
                && window.until.is_none_or(|u| e.ts() < u)
        };
        let take = |pos: u64| -> Option<Positioned<T>> {
            let e = &index.entries[pos as usize];
            (in_window(pos, e) && keep(e)).then(|| Positioned {
                position: pos,
                entry: e.clone(),
            })
        };
        match database {
            Some(db) => index.by_database.get(db).map_or_else(Vec::new, |at| {
                at.iter()
                    .rev()
                    .filter_map(|&p| take(u64::from(p)))
                    .take(limit)
                    .collect()
            }),
            None => (0..index.entries.len() as u64)
                .rev()
                .filter_map(take)
                .take(limit)
                .collect(),
        }
    }

    /// The newest entry, if any.
    pub fn last(&self) -> Option<T> {
        self.index
            .read()
            .expect("not poisoned")
            .entries
            .last()
            .cloned()
    }

    /// The newest entry of `database`, if any.
    pub fn last_of(&self, database: &str) -> Option<T> {
        let index = self.index.read().expect("not poisoned");
        let at = *index.by_database.get(database)?.last()?;
        Some(index.entries[at as usize].clone())
    }

    pub fn len(&self) -> usize {
        self.index.read().expect("not poisoned").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Writer<T: Record> {
    file: File,
    /// Length of the file's whole, acknowledged lines.
    len: u64,
    path: PathBuf,
    index: Arc<RwLock<Index<T>>>,
    healthy: Arc<AtomicBool>,
}

impl<T: Record> Writer<T> {
    fn run(mut self, rx: mpsc::Receiver<Pending<T>>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let mut bytes = Vec::with_capacity(batch.len() * 256);
            for entry in batch.iter().filter_map(|p| p.entry.as_ref()) {
                serde_json::to_writer(&mut bytes, entry).expect("an entry always serializes");
                bytes.push(b'\n');
            }
            let result = if bytes.is_empty() {
                Ok(())
            } else {
                self.file
                    .write_all(&bytes)
                    .and_then(|()| self.file.sync_data())
            };
            match result {
                Ok(()) => {
                    self.len += bytes.len() as u64;
                    self.healthy.store(true, Ordering::Relaxed);
                    let mut index = self.index.write().expect("not poisoned");
                    for p in batch.iter().filter(|p| !p.indexed) {
                        if let Some(entry) = &p.entry {
                            index.insert(entry.clone());
                        }
                    }
                    drop(index);
                    for p in batch {
                        if let Some(done) = p.done {
                            let _ = done.send(Ok(()));
                        }
                    }
                }
                Err(e) => {
                    // Cut off whatever part of the batch reached the file, so
                    // no line is left that nobody was told was written.
                    let _ = self.file.set_len(self.len);
                    self.healthy.store(false, Ordering::Relaxed);
                    tracing::error!(path = %self.path.display(), error = %e, entries = batch.len(), "journal write failed");
                    let error = WriteError {
                        path: self.path.display().to_string(),
                        cause: Arc::new(e),
                    };
                    for p in batch {
                        if let Some(done) = p.done {
                            let _ = done.send(Err(error.clone()));
                        }
                    }
                }
            }
        }
    }
}

/// Loads the file's entries into `index`; answers the length of its whole
/// lines and how many of them were not records (kept, but not indexed).
fn read_file<T: Record>(path: &Path, index: &mut Index<T>) -> std::io::Result<(u64, u64)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let mut valid = 0u64;
    let mut unreadable = 0u64;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        match serde_json::from_str::<T>(&line) {
            Ok(e) => index.insert(e),
            Err(e) => {
                unreadable += 1;
                tracing::warn!(path = %path.display(), offset = valid, error = %e, "skipping a line that is not a record")
            }
        }
        valid += n as u64;
    }
    Ok((valid, unreadable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Note {
        ts: DateTime<Utc>,
        db: String,
        id: String,
        text: String,
    }

    impl Record for Note {
        const LOG_TYPE: &'static str = "note";

        fn ts(&self) -> DateTime<Utc> {
            self.ts
        }
        fn database(&self) -> Option<&str> {
            Some(&self.db)
        }
        fn key(&self) -> Option<&str> {
            Some(&self.id)
        }
    }

    fn note(db: &str, id: &str, text: &str) -> Note {
        Note {
            ts: Utc::now(),
            db: db.into(),
            id: id.into(),
            text: text.into(),
        }
    }

    #[tokio::test]
    async fn entries_survive_a_reopen_a_torn_line_is_cut_and_keys_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.jsonl");
        let j: Journal<Note> = Journal::open(&path).unwrap();
        j.append(note("a", "1", "first")).await.unwrap();
        j.append(note("b", "2", "second")).await.unwrap();
        j.append(note("a", "1", "first, corrected")).await.unwrap();
        assert_eq!(j.len(), 2, "a correction replaces in place");
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"ts\":\"2026-").unwrap();
        let j: Journal<Note> = Journal::open(&path).unwrap();
        let a = j.scan(Some("a"), &Window::default(), 10, |_| true);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].entry.text, "first, corrected");
        assert_eq!(j.last_of("b").unwrap().text, "second");
        j.append(note("c", "3", "third")).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4);
        for line in text.lines() {
            serde_json::from_str::<Note>(line).expect("every line whole");
        }
    }

    #[tokio::test]
    async fn a_flush_waits_for_what_was_appended_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.jsonl");
        let j: Journal<Note> = Journal::open(&path).unwrap();
        for i in 0..200 {
            j.append_later(note("x", &i.to_string(), "later"));
        }
        j.flush().await;
        // What a restart reads right after the flush.
        let reopened: Journal<Note> = Journal::open(&path).unwrap();
        assert_eq!(reopened.len(), 200);
        j.flush().await;
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 200);
    }

    #[tokio::test]
    async fn scans_are_newest_first_within_window_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let j: Journal<Note> = Journal::open(&dir.path().join("n.jsonl")).unwrap();
        let t0 = Utc::now();
        for i in 0..6 {
            let mut n = note(if i % 2 == 0 { "even" } else { "odd" }, &i.to_string(), "");
            n.ts = t0 + chrono::Duration::seconds(i);
            j.append(n).await.unwrap();
        }
        let ids = |v: Vec<Positioned<Note>>| -> Vec<String> {
            v.into_iter().map(|p| p.entry.id).collect()
        };
        let all = Window::default();
        assert_eq!(ids(j.scan(None, &all, 3, |_| true)), ["5", "4", "3"]);
        assert_eq!(
            ids(j.scan(Some("even"), &all, 10, |_| true)),
            ["4", "2", "0"]
        );
        let page = Window {
            before_position: Some(4),
            ..Window::default()
        };
        assert_eq!(ids(j.scan(None, &page, 2, |_| true)), ["3", "2"]);
        let time = Window {
            since: Some(t0 + chrono::Duration::seconds(1)),
            until: Some(t0 + chrono::Duration::seconds(4)),
            before_position: None,
        };
        assert_eq!(ids(j.scan(Some("odd"), &time, 10, |_| true)), ["3", "1"]);
        assert_eq!(ids(j.scan(None, &all, 10, |n| n.id == "2")), ["2"]);
        assert!(j.scan(Some("none"), &all, 10, |_| true).is_empty());
    }

    #[tokio::test]
    async fn concurrent_writers_are_all_acknowledged_in_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.jsonl");
        let j = Arc::new(Journal::<Note>::open(&path).unwrap());
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let j = j.clone();
                tokio::spawn(async move { j.append(note("x", &i.to_string(), "w")).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(j.len(), 50);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut ids: Vec<u32> = text
            .lines()
            .map(|l| serde_json::from_str::<Note>(l).unwrap().id.parse().unwrap())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..50).collect::<Vec<_>>());
    }
}
