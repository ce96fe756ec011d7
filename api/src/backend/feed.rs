//! The databases as a backend last showed them, and every change to them as
//! it happens: what the `watch=true` stream is made of. A backend publishes
//! each database whenever it builds it anew (after a watcher pass, a write,
//! a watch event); the feed compares with what it holds and tells its
//! subscribers only of real changes, so a pass that changed nothing costs
//! them nothing.
//!
//! A subscription is taken under the same lock as every publication: its
//! snapshot and the changes it receives after it join without a gap or an
//! overlap, as a Kubernetes list and a watch from its resourceVersion do.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::model::Database;

/// How many changes the feed keeps for subscribers that have not taken
/// them yet. A subscriber further behind is told it lost some (and the
/// stream then asks its client to resync); memory does not grow with it.
pub const FEED_CAPACITY: usize = 4096;

/// What happened to one database.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    /// Made, or any field of it changed: the whole database as it is now.
    Changed(Database),
    /// Gone: the database as it was last shown.
    Deleted(Database),
}

impl FeedEvent {
    pub fn database(&self) -> &Database {
        match self {
            FeedEvent::Changed(db) | FeedEvent::Deleted(db) => db,
        }
    }
}

/// A change as subscribers receive it; its encoding (for a stream: the
/// whole event, as bytes) is made once, by whichever subscriber needs it
/// first, and shared by all: a thousand streams send one buffer.
#[derive(Debug)]
pub struct Published {
    pub change: FeedEvent,
    encoded: OnceLock<Bytes>,
}

impl Published {
    fn new(change: FeedEvent) -> Arc<Published> {
        Arc::new(Published {
            change,
            encoded: OnceLock::new(),
        })
    }

    /// The going of `database`, for a subscriber that stops seeing it.
    pub fn deleted(database: Database) -> Arc<Published> {
        Published::new(FeedEvent::Deleted(database))
    }

    /// The database of the change, as JSON.
    pub fn json(&self) -> Vec<u8> {
        serde_json::to_vec(self.change.database()).expect("a database always serializes")
    }

    /// The change as `encode` encodes it, encoded once for every subscriber.
    pub fn encoded(&self, encode: impl FnOnce(&Published) -> Bytes) -> Bytes {
        self.encoded.get_or_init(|| encode(self)).clone()
    }
}

/// A subscription: every database at the moment it was taken, sorted by
/// name, and the changes from that moment on.
pub struct Subscription {
    pub snapshot: Vec<Database>,
    pub changes: broadcast::Receiver<Arc<Published>>,
}

pub struct Feed {
    shown: Mutex<BTreeMap<String, Database>>,
    sender: broadcast::Sender<Arc<Published>>,
}

impl Default for Feed {
    fn default() -> Feed {
        Feed {
            shown: Mutex::new(BTreeMap::new()),
            sender: broadcast::channel(FEED_CAPACITY).0,
        }
    }
}

impl Feed {
    /// Tells subscribers of `database` if it differs from what was shown.
    pub fn publish(&self, database: Database) {
        let mut shown = self.shown.lock().expect("not poisoned");
        if shown.get(&database.name) == Some(&database) {
            return;
        }
        shown.insert(database.name.clone(), database.clone());
        // No subscriber is no error: the change is simply not sent.
        let _ = self
            .sender
            .send(Published::new(FeedEvent::Changed(database)));
    }

    /// Tells subscribers that `name` is gone, if it was shown.
    pub fn remove(&self, name: &str) {
        let mut shown = self.shown.lock().expect("not poisoned");
        if let Some(last) = shown.remove(name) {
            let _ = self.sender.send(Published::new(FeedEvent::Deleted(last)));
        }
    }

    pub fn subscribe(&self) -> Subscription {
        let shown = self.shown.lock().expect("not poisoned");
        Subscription {
            snapshot: shown.values().cloned().collect(),
            changes: self.sender.subscribe(),
        }
    }

    /// The names shown now, for a backend that must find what vanished.
    pub fn names(&self) -> Vec<String> {
        let shown = self.shown.lock().expect("not poisoned");
        shown.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::State;

    fn db(name: &str, ready: u32) -> Database {
        Database::test()
            .named(name)
            .in_state(State::Creating, ready)
    }

    #[test]
    fn only_real_changes_are_sent_and_a_snapshot_joins_its_changes() {
        let feed = Feed::default();
        feed.publish(db("a", 0));
        let mut early = feed.subscribe();
        assert_eq!(early.snapshot, vec![db("a", 0)]);

        feed.publish(db("a", 0));
        feed.publish(db("a", 1));
        feed.publish(db("b", 0));
        let late = feed.subscribe();
        feed.remove("a");
        feed.remove("never-shown");

        let mut seen = Vec::new();
        while let Ok(p) = early.changes.try_recv() {
            seen.push(p.change.clone());
        }
        assert_eq!(
            seen,
            vec![
                FeedEvent::Changed(db("a", 1)),
                FeedEvent::Changed(db("b", 0)),
                FeedEvent::Deleted(db("a", 1)),
            ],
            "the unchanged publication is not sent"
        );
        assert_eq!(late.snapshot, vec![db("a", 1), db("b", 0)]);
        let mut late = late;
        assert_eq!(
            late.changes.try_recv().unwrap().change,
            FeedEvent::Deleted(db("a", 1)),
            "a later subscriber gets what came after its snapshot only"
        );
        assert_eq!(feed.names(), vec!["b".to_owned()]);
    }
}
