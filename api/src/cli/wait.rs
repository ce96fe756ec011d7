//! `--wait`: follows the change stream (`GET /databases?watch=true`) until
//! a database reaches the wanted state, with one progress line on a
//! terminal. A dropped stream (a restart of the server, a proxy's timeout)
//! is opened again until the deadline: its snapshot tells where the
//! database stands now, so nothing between the two streams is missed.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::exit::CliError;
use crate::client::{Backoff, Client, ClientError};

/// What the wait is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Healthy, every instance ready, at this revision or a later one.
    Healthy {
        revision: u64,
    },
    Gone,
}

/// Where a database stands against the goal.
#[derive(Debug, PartialEq)]
enum Verdict {
    Reached,
    Waiting,
    Failed(String),
}

/// `seen`: the database was shown before. Absent from a stream that never
/// showed it is not yet in it (a cache catching up), not deleted.
fn judge(goal: Goal, db: Option<&Value>, seen: bool) -> Verdict {
    let Some(db) = db else {
        return match goal {
            Goal::Gone => Verdict::Reached,
            Goal::Healthy { .. } if seen => Verdict::Failed("it was deleted".into()),
            Goal::Healthy { .. } => Verdict::Waiting,
        };
    };
    let state = db["state"].as_str().unwrap_or_default();
    let Goal::Healthy { revision } = goal else {
        return Verdict::Waiting;
    };
    if state == "failed" {
        return Verdict::Failed(format!("it failed: {}", db["phase"].as_str().unwrap_or("")));
    }
    if let Some(undone) = db.get("undone").filter(|u| !u.is_null()) {
        if undone["revision"].as_u64().is_some_and(|r| r >= revision) {
            return Verdict::Failed(format!(
                "revision {} was undone: {}",
                undone["revision"],
                undone["reason"].as_str().unwrap_or("")
            ));
        }
    }
    let ready = db["ready_instances"].as_u64().unwrap_or(0);
    let wanted = db["instances"].as_u64().unwrap_or(u64::MAX);
    let at = db["revision"].as_u64().unwrap_or(0);
    // Every instance wanted, and no more: a scale-down is done when the
    // instances that go are gone.
    if state == "healthy" && ready == wanted && at >= revision {
        Verdict::Reached
    } else {
        Verdict::Waiting
    }
}

/// The progress line, on standard error when it is a terminal.
struct Progress {
    bar: Option<ProgressBar>,
    name: String,
}

impl Progress {
    fn new(name: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .expect("a valid template"),
            );
            bar.set_message(format!("{name}: waiting for the first look"));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            name: name.to_owned(),
        }
    }

    fn show(&self, db: Option<&Value>, note: Option<&str>) {
        let Some(bar) = &self.bar else { return };
        let line = match db {
            Some(db) => format!(
                "{}: {}, {}/{} ready",
                self.name,
                db["state"].as_str().unwrap_or("?"),
                db["ready_instances"],
                db["instances"]
            ),
            None => format!("{}: gone", self.name),
        };
        bar.set_message(match note {
            Some(note) => format!("{line} — {note}"),
            None => line,
        });
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Waits for `goal`; the database as last seen (`None` when gone).
pub async fn wait(
    client: &Client,
    name: &str,
    goal: Goal,
    timeout: Duration,
) -> Result<Option<Value>, CliError> {
    let started = Instant::now();
    let progress = Progress::new(name);
    let outcome = tokio::time::timeout(timeout, follow(client, name, goal, &progress)).await;
    progress.finish();
    match outcome {
        Ok(result) => result,
        Err(_) => Err(CliError::Timeout(format!(
            "{name} did not become {} within {}",
            match goal {
                Goal::Healthy { .. } => "healthy",
                Goal::Gone => "gone",
            },
            humanize(started.elapsed())
        ))),
    }
}

async fn follow(
    client: &Client,
    name: &str,
    goal: Goal,
    progress: &Progress,
) -> Result<Option<Value>, CliError> {
    let mut backoff = Backoff::default();
    let mut last: Option<Value> = None;
    let mut seen = false;
    loop {
        match watch_once(
            client,
            name,
            goal,
            progress,
            &mut last,
            &mut seen,
            &mut backoff,
        )
        .await
        {
            Ok(Some(done)) => return done,
            // The stream ended or broke: open it again.
            Ok(None) => {}
            Err(e) if !e.retriable() => return Err(e.into()),
            Err(e) => progress.show(last.as_ref(), Some(&format!("reconnecting: {e}"))),
        }
        backoff.wait().await;
    }
}

/// One stream, until it ends (`Ok(None)`) or the goal is decided.
async fn watch_once(
    client: &Client,
    name: &str,
    goal: Goal,
    progress: &Progress,
    last: &mut Option<Value>,
    seen: &mut bool,
    backoff: &mut Backoff,
) -> Result<Option<Result<Option<Value>, CliError>>, ClientError> {
    let mut stream = client
        .stream("/api/v1/databases", &[("watch", "true".into())], None)
        .await?;
    backoff.reset();
    while let Some(event) = stream.next().await? {
        let shown: Option<Value> = match event.name.as_str() {
            "snapshot" => {
                let body: Value = serde_json::from_str(&event.data).unwrap_or_default();
                body["items"]
                    .as_array()
                    .and_then(|items| items.iter().find(|d| d["name"] == name).cloned())
            }
            "changed" => {
                let db: Value = serde_json::from_str(&event.data).unwrap_or_default();
                if db["name"] != name {
                    continue;
                }
                Some(db)
            }
            "deleted" => {
                let db: Value = serde_json::from_str(&event.data).unwrap_or_default();
                if db["name"] != name {
                    continue;
                }
                None
            }
            "expired" => {
                return Ok(Some(Err(CliError::Expired {
                    server: client.server().to_owned(),
                    when: "while waiting".into(),
                })))
            }
            // `resync` (this client fell behind), `end` (the server stops):
            // a new stream's snapshot picks up from here.
            _ => return Ok(None),
        };
        progress.show(shown.as_ref(), None);
        match judge(goal, shown.as_ref(), *seen) {
            Verdict::Reached => return Ok(Some(Ok(shown))),
            Verdict::Failed(why) => {
                return Ok(Some(Err(CliError::Failed(format!("{name}: {why}")))))
            }
            Verdict::Waiting => {
                *seen |= shown.is_some();
                *last = shown;
            }
        }
    }
    Ok(None)
}

pub fn humanize(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// `10m`, `90s`, `1h`, `500ms`.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90s, 10m or 1h"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{text:?} is not a duration such as 90s, 10m or 1h")),
    };
    if d.is_zero() {
        return Err("the timeout must be more than 0".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn healthy_means_every_instance_ready_at_the_revision() {
        let goal = Goal::Healthy { revision: 2 };
        let db = |state: &str, ready: u64, revision: u64| json!({"state": state, "ready_instances": ready, "instances": 2, "revision": revision, "phase": "p"});
        let judge = |goal, db: Option<&Value>| judge(goal, db, true);
        assert_eq!(judge(goal, Some(&db("healthy", 2, 2))), Verdict::Reached);
        assert_eq!(judge(goal, Some(&db("healthy", 2, 1))), Verdict::Waiting);
        assert_eq!(judge(goal, Some(&db("healthy", 1, 2))), Verdict::Waiting);
        assert_eq!(
            judge(goal, Some(&db("healthy", 3, 2))),
            Verdict::Waiting,
            "a scale-down is done once the instances that go are gone"
        );
        assert_eq!(
            super::judge(goal, None, false),
            Verdict::Waiting,
            "not shown yet is not deleted"
        );
        assert_eq!(judge(goal, Some(&db("scaling", 2, 2))), Verdict::Waiting);
        assert!(matches!(
            judge(goal, Some(&db("failed", 0, 2))),
            Verdict::Failed(_)
        ));
        assert!(matches!(judge(goal, None), Verdict::Failed(_)));
        let mut undone = db("healthy", 2, 2);
        undone["undone"] = json!({"revision": 2, "reason": "FATAL", "at": "x"});
        assert!(matches!(judge(goal, Some(&undone)), Verdict::Failed(_)));
        assert_eq!(judge(Goal::Gone, None), Verdict::Reached);
        assert_eq!(
            judge(Goal::Gone, Some(&db("deleting", 0, 2))),
            Verdict::Waiting
        );
    }

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_timeout("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("ten").is_err());
        assert!(parse_timeout("5x").is_err());
    }
}
