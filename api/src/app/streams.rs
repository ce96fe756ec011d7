//! The change streams: what a `watch=true` list and a `follow=true` event
//! query send, and how many may be open. This module decides what each
//! stream carries (the snapshot, the changes its query selects, the stored
//! events before the live ones, with none lost or sent twice at the seam);
//! `http::sse` frames it and paces it to the client.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, watch};

use super::{App, AppError};
use crate::backend::{BackendError, FeedEvent, Published};
use crate::metrics::Metrics;
use crate::model::Database;
use crate::records::{EventQuery, ServiceEvent};

/// The open streams, bounded by `PGPLANE_MAX_STREAMS`, and the signal that
/// ends them all at shutdown.
pub struct Streams {
    open: Arc<AtomicUsize>,
    max: usize,
    stop: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

/// One open stream's place: given back when the stream ends.
pub struct StreamSlot {
    open: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    /// Turns `true` when pgplane shuts down.
    pub stopping: watch::Receiver<bool>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.metrics.streams_open.dec();
    }
}

impl StreamSlot {
    /// Counts changes a client did not get because it was cut off.
    pub fn dropped(&self, n: u64) {
        self.metrics.stream_events_dropped.inc_by(n);
    }
}

impl Streams {
    pub fn new(max: u32, metrics: Arc<Metrics>) -> Streams {
        Streams {
            open: Arc::new(AtomicUsize::new(0)),
            max: max as usize,
            stop: watch::channel(false).0,
            metrics,
        }
    }

    fn open(&self) -> Result<StreamSlot, AppError> {
        let taken = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(AppError::TooManyStreams(self.max));
        }
        self.metrics.streams_open.inc();
        Ok(StreamSlot {
            open: self.open.clone(),
            metrics: self.metrics.clone(),
            stopping: self.stop.subscribe(),
        })
    }

    /// Ends every open stream (at shutdown, so connections can drain).
    pub fn stop_all(&self) {
        let _ = self.stop.send(true);
    }
}

/// What a stream's source yields next.
pub enum Next<T> {
    Item(T),
    /// The source lost this many items for this client: it must resync.
    Lost(u64),
    /// The source is gone (pgplane is stopping).
    End,
}

/// The changes a `watch=true` stream sends after its snapshot.
pub struct DatabaseWatch {
    changes: broadcast::Receiver<Arc<Published>>,
    labels: BTreeMap<String, String>,
    /// With a label filter: the databases the client holds, so one that
    /// stops matching is sent as deleted and one that starts as changed,
    /// as a Kubernetes watch with a label selector does.
    held: Option<HashSet<String>>,
}

impl DatabaseWatch {
    pub async fn next(&mut self) -> Next<Arc<Published>> {
        loop {
            let published = match self.changes.recv().await {
                Ok(p) => p,
                Err(broadcast::error::RecvError::Lagged(n)) => return Next::Lost(n),
                Err(broadcast::error::RecvError::Closed) => return Next::End,
            };
            let Some(held) = &mut self.held else {
                return Next::Item(published);
            };
            let db = published.change.database();
            let was = held.contains(&db.name);
            let now =
                matches!(published.change, FeedEvent::Changed(_)) && selects(&self.labels, db);
            match (was, now) {
                (_, true) => {
                    held.insert(db.name.clone());
                    return Next::Item(published);
                }
                (true, false) => {
                    held.remove(&db.name);
                    return Next::Item(match &published.change {
                        FeedEvent::Deleted(_) => published,
                        FeedEvent::Changed(db) => Published::deleted(db.clone()),
                    });
                }
                (false, false) => continue,
            }
        }
    }
}

fn selects(labels: &BTreeMap<String, String>, db: &Database) -> bool {
    labels.iter().all(|(k, v)| db.labels.get(k) == Some(v))
}

/// The events a `follow=true` stream sends after the stored ones.
pub struct EventFollow {
    live: broadcast::Receiver<ServiceEvent>,
    database: Option<String>,
    /// The id of the last event sent: the live ones up to it came from the
    /// store already.
    last: Option<i64>,
}

impl EventFollow {
    pub async fn next(&mut self) -> Next<ServiceEvent> {
        loop {
            let event = match self.live.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => return Next::Lost(n),
                Err(broadcast::error::RecvError::Closed) => return Next::End,
            };
            if self.database.as_ref().is_some_and(|d| d != &event.database) {
                continue;
            }
            if self.last.is_some_and(|last| event.id() <= last) {
                continue;
            }
            self.last = Some(event.id());
            return Next::Item(event);
        }
    }
}

/// Where a follower starts in the store.
pub enum Resume {
    /// The stored events the query selects (its newest `limit`, or all
    /// since `since`).
    Query,
    /// Every stored event after this time (a `Last-Event-ID`).
    After(DateTime<Utc>),
}

impl App {
    /// Opens a `watch=true` stream of the databases with all of `labels`:
    /// the snapshot, and what comes after it.
    pub async fn watch_databases(
        &self,
        labels: BTreeMap<String, String>,
    ) -> Result<(StreamSlot, Vec<Database>, DatabaseWatch), AppError> {
        // A backend that is not ready has no complete picture to show.
        self.backend
            .ready()
            .await
            .map_err(BackendError::unavailable)?;
        let slot = self.streams.open()?;
        let subscription = self.backend.feed().subscribe();
        let mut snapshot = subscription.snapshot;
        let held = if labels.is_empty() {
            None
        } else {
            snapshot.retain(|db| selects(&labels, db));
            Some(snapshot.iter().map(|db| db.name.clone()).collect())
        };
        Ok((
            slot,
            snapshot,
            DatabaseWatch {
                changes: subscription.changes,
                labels,
                held,
            },
        ))
    }

    /// Opens a `follow=true` stream of service events: the stored ones
    /// `resume` selects, oldest first, then the live ones, none twice.
    pub async fn follow_events(
        &self,
        query: &EventQuery,
        resume: Resume,
    ) -> Result<(StreamSlot, Vec<ServiceEvent>, EventFollow), AppError> {
        let slot = self.streams.open()?;
        // Following first: what is recorded while the store is read comes
        // live, and what both have is sent once.
        let live = self.events.follow();
        let database = query.database.as_deref();
        let stored = match resume {
            Resume::After(after) => self.events.replay(database, after, false).await?,
            Resume::Query => match query.span.since {
                Some(since) => self.events.replay(database, since, true).await?,
                None => {
                    let mut page = self.events(query).await?.items;
                    page.reverse();
                    page
                }
            },
        };
        if let Some(name) = database {
            if stored.is_empty() {
                self.check_ever_existed(name).await?;
            }
        }
        let last = stored.last().map(ServiceEvent::id);
        Ok((
            slot,
            stored,
            EventFollow {
                live,
                database: query.database.clone(),
                last: match resume {
                    Resume::After(after) => last.or(after.timestamp_nanos_opt()),
                    Resume::Query => last,
                },
            },
        ))
    }
}
