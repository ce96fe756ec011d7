//! What an audit query asks for (`since`, `until`, `action`, `actor`,
//! `database`, `limit`, `cursor`) and how the local store answers it.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Action, AuditRecord};
use crate::error::ApiError;
use crate::journal::{Journal, Window};
use crate::model::{self, FieldError};
use crate::operations::{parse_limit, parse_time};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// Where the next page starts. Opaque to clients; each store has its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Cursor {
    /// Records before this position of the local journal.
    Local(u64),
    /// Loki entries at or before `ts_ns`, less the `seen` lines already
    /// answered at exactly `ts_ns`.
    Loki { ts_ns: i64, seen: Vec<String> },
}

impl Cursor {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a cursor serializes");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    fn decode(text: &str) -> Option<Cursor> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[derive(Debug, Clone)]
pub struct AuditQuery {
    pub database: Option<String>,
    pub actor: Option<String>,
    pub action: Option<Action>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery {
            database: None,
            actor: None,
            action: None,
            since: None,
            until: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

/// One page of audit records, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditRecord>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl AuditQuery {
    /// Parses the query string. `database` is `Some` on the per-database
    /// route, which takes the name from the path and refuses it as a filter.
    pub fn parse(
        pairs: &[(String, String)],
        database: Option<&str>,
    ) -> Result<AuditQuery, ApiError> {
        let mut q = AuditQuery {
            database: database.map(str::to_owned),
            ..AuditQuery::default()
        };
        let mut errors = Vec::new();
        for (key, value) in pairs {
            match key.as_str() {
                "since" => q.since = parse_time(key, value, &mut errors),
                "until" => q.until = parse_time(key, value, &mut errors),
                "limit" => q.limit = parse_limit(value, MAX_LIMIT, &mut errors).unwrap_or(q.limit),
                "action" => match Action::parse(value) {
                    Some(a) => q.action = Some(a),
                    None => errors.push(FieldError::new(
                        "action",
                        format!(
                            "must be one of {}",
                            Action::ALL.map(Action::as_str).join(", ")
                        ),
                    )),
                },
                "actor" if !value.is_empty() && value.len() <= 256 => q.actor = Some(value.clone()),
                "actor" => errors.push(FieldError::new("actor", "must be 1 to 256 characters")),
                "database" if database.is_none() => match model::check_name(value) {
                    Ok(()) => q.database = Some(value.clone()),
                    Err(why) => errors.push(FieldError::new("database", why)),
                },
                "cursor" => match Cursor::decode(value) {
                    Some(c) => q.cursor = Some(c),
                    None => errors.push(FieldError::new(
                        "cursor",
                        "is not a cursor this API returned",
                    )),
                },
                other => errors.push(FieldError::new(other, "unknown query parameter")),
            }
        }
        if errors.is_empty() {
            Ok(q)
        } else {
            Err(ApiError::Invalid(errors))
        }
    }

    pub fn matches(&self, r: &AuditRecord) -> bool {
        self.actor.as_ref().is_none_or(|a| &r.actor == a)
            && self.action.is_none_or(|a| r.action == a)
            && self
                .database
                .as_ref()
                .is_none_or(|d| r.database.as_ref() == Some(d))
    }

    /// The page of the local journal before position `before_position`.
    pub(super) fn run_local(
        &self,
        journal: &Journal<AuditRecord>,
        before_position: Option<u64>,
    ) -> AuditPage {
        let window = Window {
            since: self.since,
            until: self.until,
            before_position,
        };
        let mut found = journal.scan(self.database.as_deref(), &window, self.limit + 1, |r| {
            self.matches(r)
        });
        let more = found.len() > self.limit;
        found.truncate(self.limit);
        let next_cursor =
            more.then(|| Cursor::Local(found.last().expect("a full page").position).encode());
        AuditPage {
            items: found.into_iter().map(|p| p.entry).collect(),
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(q).unwrap()
    }

    fn fields(e: ApiError) -> Vec<String> {
        match e {
            ApiError::Invalid(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn parses_every_filter() {
        let q = AuditQuery::parse(
            &pairs("since=2026-01-01T00:00:00Z&until=2026-02-01T00:00:00%2B01:00&action=database.update&actor=al%22ice&database=orders&limit=5"),
            None,
        )
        .unwrap();
        assert_eq!(q.action, Some(Action::Update));
        assert_eq!(q.actor.as_deref(), Some("al\"ice"));
        assert_eq!(q.database.as_deref(), Some("orders"));
        assert_eq!(q.limit, 5);
        assert_eq!(q.until.unwrap().to_rfc3339(), "2026-01-31T23:00:00+00:00");
        let c = Cursor::Loki {
            ts_ns: 42,
            seen: vec!["x".into()],
        };
        let q = AuditQuery::parse(&pairs(&format!("cursor={}", c.encode())), None).unwrap();
        assert_eq!(q.cursor, Some(c));
    }

    #[test]
    fn refuses_bad_filters_field_by_field() {
        let cases = [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("since=yesterday", "since"),
            ("until=2026-13-01T00:00:00Z", "until"),
            ("action=database.drop", "action"),
            ("actor=", "actor"),
            ("database=Not_A_Name", "database"),
            ("cursor=***", "cursor"),
            ("cursor=bm90IGpzb24", "cursor"),
            ("colour=red", "colour"),
        ];
        for (query, field) in cases {
            let err = AuditQuery::parse(&pairs(query), None).expect_err(query);
            assert_eq!(fields(err), [field], "{query}");
        }
        let err = AuditQuery::parse(&pairs("database=orders"), Some("orders")).unwrap_err();
        assert_eq!(fields(err), ["database"], "the path names the database");
    }
}
