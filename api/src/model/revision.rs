//! The history of a database's spec: one immutable [`Revision`] per accepted
//! change (create, update, rollback), numbered as the database's `revision`
//! counts, each with the whole spec, who made it, when, the request, and
//! what changed against the one before. Pure: the backends keep revisions
//! (the local one in its record, the kubernetes one as `ControllerRevision`s),
//! the rules of numbering, pruning, lookup, paging and rollback live here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::database::DatabaseSpec;
use super::invalid::{FieldError, Invalid};
use super::paging::{decode_cursor, parse_limit, Page, FOREIGN_CURSOR};
use super::spec::{quantity_bytes, spec_changes};

/// The default of `PGPLANE_REVISION_HISTORY`.
pub const DEFAULT_HISTORY: u32 = 20;
/// The most revisions a database may keep: a Kubernetes list of that many
/// small objects is still one cheap request.
pub const MAX_HISTORY: u32 = 1000;

/// What made a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RevisionKind {
    Create,
    Update,
    Rollback,
}

/// Who asks for a spec change, and why: what a backend writes into the
/// revision it makes with the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub by: String,
    pub request_id: Option<String>,
    pub kind: RevisionKind,
    /// For a rollback: the revision whose spec it takes.
    pub from: Option<u64>,
}

impl Change {
    pub fn new(kind: RevisionKind, by: &str, request_id: Option<&str>) -> Change {
        Change {
            by: by.to_owned(),
            request_id: request_id.filter(|r| !r.is_empty()).map(str::to_owned),
            kind,
            from: None,
        }
    }

    pub fn rollback(from: u64, by: &str, request_id: Option<&str>) -> Change {
        Change {
            from: Some(from),
            ..Change::new(RevisionKind::Rollback, by, request_id)
        }
    }

    /// Whether the change makes a revision even when the spec stays the
    /// same: a rollback is asked for by name and always recorded, while an
    /// update that changes nothing is no change.
    pub fn always_recorded(&self) -> bool {
        self.kind != RevisionKind::Update
    }
}

/// One accepted spec change, never changed once made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Revision {
    /// The database's `revision` (and `ETag`) this change made.
    #[schema(example = 4, minimum = 1)]
    pub revision: u64,
    pub kind: RevisionKind,
    /// For a rollback: the revision whose spec it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub from: Option<u64>,
    /// The whole spec as of this revision.
    pub spec: DatabaseSpec,
    /// The user who made the change.
    pub by: String,
    pub at: DateTime<Utc>,
    /// The request that made it (`X-Request-Id`); absent for a revision
    /// pgplane made up for a database older than its history.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Each field that differs from the revision before, as `[before,
    /// after]`, as in the audit trail; a create has none before, so it
    /// lists nothing.
    #[schema(value_type = Object)]
    pub changes: Map<String, Value>,
}

impl Revision {
    /// The revision `number` that `change` makes of `spec`, after `before`.
    pub fn new(
        number: u64,
        spec: &DatabaseSpec,
        before: Option<&DatabaseSpec>,
        change: &Change,
        at: DateTime<Utc>,
    ) -> Revision {
        Revision {
            revision: number,
            kind: change.kind,
            from: change.from,
            spec: spec.clone(),
            by: change.by.clone(),
            at,
            request_id: change.request_id.clone(),
            changes: before.map(|b| spec_changes(b, spec)).unwrap_or_default(),
        }
    }

    /// The revision a database older than its history stands at: made up
    /// from its current spec, with no request, and no changes known.
    pub fn synthetic(number: u64, spec: &DatabaseSpec, by: &str, at: DateTime<Utc>) -> Revision {
        Revision {
            revision: number,
            kind: if number <= 1 {
                RevisionKind::Create
            } else {
                RevisionKind::Update
            },
            from: None,
            spec: spec.clone(),
            by: by.to_owned(),
            at,
            request_id: None,
            changes: Map::new(),
        }
    }
}

/// Keeps the newest `depth` revisions of `history` (any order in, newest
/// first out); the current one (the newest) is never pruned.
pub fn prune(history: &mut Vec<Revision>, depth: u32) {
    history.sort_by_key(|r| std::cmp::Reverse(r.revision));
    history.dedup_by_key(|r| r.revision);
    history.truncate(depth.max(1) as usize);
}

/// Why a revision number cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    /// Never made: 0, or after the current revision.
    #[error("revision {0} never existed")]
    NeverExisted(u64),
    /// Made, and pruned from the history since.
    #[error("revision {0} was pruned from the history")]
    Pruned(u64),
}

/// Revision `n` of a database at revision `current`, from its kept history.
pub fn find(history: &[Revision], current: u64, n: u64) -> Result<&Revision, Missing> {
    if n == 0 || n > current {
        return Err(Missing::NeverExisted(n));
    }
    history
        .iter()
        .find(|r| r.revision == n)
        .ok_or(Missing::Pruned(n))
}

/// The spec a rollback to `target` makes from `current`, as a merge patch
/// of the changeable fields (so the rules of a patch judge it), and the
/// storage kept when `target` had less: storage never shrinks.
pub fn rollback_patch(current: &DatabaseSpec, target: &DatabaseSpec) -> (Value, Option<String>) {
    let mut patch = Map::new();
    patch.insert("instances".into(), target.instances.into());
    let shrinks = match (
        quantity_bytes(&current.storage),
        quantity_bytes(&target.storage),
    ) {
        (Some(now), Some(then)) => then < now,
        _ => false,
    };
    let kept = if shrinks {
        Some(current.storage.clone())
    } else {
        patch.insert("storage".into(), target.storage.clone().into());
        None
    };
    patch.insert(
        "parameters".into(),
        replacing(&current.parameters, &target.parameters),
    );
    patch.insert("labels".into(), replacing(&current.labels, &target.labels));
    (Value::Object(patch), kept)
}

/// The merge patch that turns map `from` into `to`: removed keys as null.
fn replacing(from: &BTreeMap<String, String>, to: &BTreeMap<String, String>) -> Value {
    let mut m: Map<String, Value> = from
        .keys()
        .filter(|k| !to.contains_key(*k))
        .map(|k| (k.clone(), Value::Null))
        .collect();
    m.extend(
        to.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone()))),
    );
    Value::Object(m)
}

/// The body of `POST /databases/{name}/rollback`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = Rollback)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RollbackDoc {
    /// The revision whose spec becomes the next revision.
    #[schema(minimum = 1, maximum = 9223372036854775807_i64, example = 2)]
    revision: u64,
}

/// The revision number a rollback body names.
pub fn parse_rollback(body: &Value) -> Result<u64, Invalid> {
    let Some(obj) = body.as_object() else {
        return Err(Invalid::field("", "the body must be a JSON object"));
    };
    let mut errors: Vec<FieldError> = obj
        .keys()
        .filter(|k| k.as_str() != "revision")
        .map(|k| FieldError::new(k.clone(), "unknown field"))
        .collect();
    let n = match obj.get("revision") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new("revision", "is required"));
            0
        }
        // The document's int64 range: a number past it is refused as such.
        Some(v) => match v.as_u64().filter(|n| (1..=i64::MAX as u64).contains(n)) {
            Some(n) => n,
            None => {
                errors.push(FieldError::new(
                    "revision",
                    "must be a revision number, an integer from 1 to 9223372036854775807",
                ));
                0
            }
        },
    };
    if errors.is_empty() {
        Ok(n)
    } else {
        Err(Invalid(errors))
    }
}

pub const DEFAULT_REVISIONS: usize = 20;
pub const MAX_REVISIONS: usize = 100;

/// What `GET /databases/{name}/revisions` pages by: newest first, those
/// before the cursor's revision.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionQuery {
    pub limit: usize,
    pub before: Option<u64>,
}

impl Default for RevisionQuery {
    fn default() -> Self {
        RevisionQuery {
            limit: DEFAULT_REVISIONS,
            before: None,
        }
    }
}

/// A revision listing's position: the last revision of a page.
#[derive(Serialize, Deserialize)]
struct Before {
    before_revision: u64,
}

impl RevisionQuery {
    pub fn parse(pairs: &[(String, String)]) -> Result<RevisionQuery, Invalid> {
        let mut q = RevisionQuery::default();
        let mut errors = Vec::new();
        for (key, value) in pairs {
            match key.as_str() {
                "limit" => match parse_limit(value, MAX_REVISIONS) {
                    Ok(n) => q.limit = n,
                    Err(e) => errors.push(e),
                },
                "cursor" => match decode_cursor::<Before>(value) {
                    Some(b) => q.before = Some(b.before_revision),
                    None => errors.push(FieldError::new("cursor", FOREIGN_CURSOR)),
                },
                other => errors.push(FieldError::new(other, "unknown query parameter")),
            }
        }
        if errors.is_empty() {
            Ok(q)
        } else {
            Err(Invalid(errors))
        }
    }

    /// The page of `history` (any order) this query selects, newest first.
    pub fn page(&self, mut history: Vec<Revision>) -> Page<Revision> {
        history.sort_by_key(|r| std::cmp::Reverse(r.revision));
        let items: Vec<Revision> = history
            .into_iter()
            .filter(|r| self.before.is_none_or(|b| r.revision < b))
            .take(self.limit + 1)
            .collect();
        Page::from_items(items, self.limit, |last| Before {
            before_revision: last.revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 20, 10, 0, 0).unwrap()
    }

    fn history(n: u64) -> Vec<Revision> {
        (1..=n)
            .map(|i| {
                Revision::synthetic(i, &DatabaseSpec::test().instances(i as u32), "alice", at())
            })
            .collect()
    }

    #[test]
    fn pruning_keeps_the_newest_and_never_the_current() {
        let mut h = history(7);
        prune(&mut h, 3);
        assert_eq!(h.iter().map(|r| r.revision).collect::<Vec<_>>(), [7, 6, 5]);
        prune(&mut h, 0);
        assert_eq!(h.iter().map(|r| r.revision).collect::<Vec<_>>(), [7]);
    }

    #[test]
    fn lookups_tell_never_from_pruned() {
        let mut h = history(5);
        prune(&mut h, 2);
        assert_eq!(find(&h, 5, 5).unwrap().revision, 5);
        assert_eq!(find(&h, 5, 3), Err(Missing::Pruned(3)));
        assert_eq!(find(&h, 5, 6), Err(Missing::NeverExisted(6)));
        assert_eq!(find(&h, 5, 0), Err(Missing::NeverExisted(0)));
    }

    #[test]
    fn a_rollback_keeps_larger_storage_and_replaces_maps() {
        let now = DatabaseSpec::test()
            .storage("20Gi")
            .parameter("work_mem", "8MB")
            .label("team", "a");
        let then = DatabaseSpec::test()
            .instances(3)
            .storage("10Gi")
            .parameter("max_connections", "50");
        let (patch, kept) = rollback_patch(&now, &then);
        assert_eq!(kept.as_deref(), Some("20Gi"));
        assert_eq!(
            patch,
            serde_json::json!({
                "instances": 3,
                "parameters": {"work_mem": null, "max_connections": "50"},
                "labels": {"team": null},
            })
        );
        let (patch, kept) = rollback_patch(&then, &now);
        assert_eq!(kept, None);
        assert_eq!(patch["storage"], "20Gi");
    }

    #[test]
    fn rollback_bodies() {
        assert_eq!(parse_rollback(&serde_json::json!({"revision": 2})), Ok(2));
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"revision": 0}),
            serde_json::json!({"revision": -1}),
            serde_json::json!({"revision": 1.5}),
            serde_json::json!({"revision": "2"}),
            serde_json::json!({"revision": 2, "x": 1}),
            serde_json::json!([2]),
        ] {
            assert!(parse_rollback(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_go_newest_first_to_the_end() {
        let h = history(7);
        let mut q = RevisionQuery {
            limit: 3,
            before: None,
        };
        let mut seen = Vec::new();
        loop {
            let p = q.page(h.clone());
            seen.extend(p.items.iter().map(|r| r.revision));
            match p.next_cursor {
                Some(c) => {
                    q = RevisionQuery::parse(&[("limit".into(), "3".into()), ("cursor".into(), c)])
                        .unwrap()
                }
                None => break,
            }
        }
        assert_eq!(seen, [7, 6, 5, 4, 3, 2, 1]);
        for bad in ["limit=0", "limit=101", "cursor=QUJD", "since=x"] {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(bad).unwrap();
            assert!(RevisionQuery::parse(&pairs).is_err(), "{bad}");
        }
    }
}
