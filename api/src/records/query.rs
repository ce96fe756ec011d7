//! What a query of records asks for, and the one way both stores page: the
//! time window and page size every records query has ([`Span`]), the
//! filters of audit queries ([`AuditQuery`]) and event queries
//! ([`EventQuery`]), and the cursor, whose kind names the store that made
//! it, so a store never reads a cursor of the other.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::audit::{Action, AuditRecord};
use super::events::ServiceEvent;
use crate::model::paging::{decode_cursor, parse_limit, parse_time, FOREIGN_CURSOR};
use crate::model::{check_name, FieldError, Invalid};

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

/// What every records query has: a time window, a page size and a cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl Default for Span {
    fn default() -> Self {
        Span {
            since: None,
            until: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

impl Span {
    /// Reads `key` when it is one of the span's; `false` when it is not.
    fn read(&mut self, key: &str, value: &str, errors: &mut Vec<FieldError>) -> bool {
        let result = match key {
            "since" => parse_time(key, value).map(|t| self.since = Some(t)),
            "until" => parse_time(key, value).map(|t| self.until = Some(t)),
            "limit" => parse_limit(value, MAX_LIMIT).map(|n| self.limit = n),
            "cursor" => decode_cursor::<Cursor>(value)
                .map(|c| self.cursor = Some(c))
                .ok_or_else(|| FieldError::new("cursor", FOREIGN_CURSOR)),
            _ => return false,
        };
        if let Err(e) = result {
            errors.push(e);
        }
        true
    }
}

/// What an audit query selects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    pub database: Option<String>,
    pub actor: Option<String>,
    pub action: Option<Action>,
    pub span: Span,
}

impl AuditQuery {
    /// Parses the query string. `database` is `Some` on the per-database
    /// route, which takes the name from the path and refuses it as a filter.
    pub fn parse(
        pairs: &[(String, String)],
        database: Option<&str>,
    ) -> Result<AuditQuery, Invalid> {
        let mut q = AuditQuery {
            database: database.map(str::to_owned),
            ..AuditQuery::default()
        };
        let mut errors = Vec::new();
        for (key, value) in pairs {
            if q.span.read(key, value, &mut errors) {
                continue;
            }
            match key.as_str() {
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
                "database" if database.is_none() => match check_name(value) {
                    Ok(()) => q.database = Some(value.clone()),
                    Err(why) => errors.push(FieldError::new("database", why)),
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

    pub fn matches(&self, r: &AuditRecord) -> bool {
        self.actor.as_ref().is_none_or(|a| &r.actor == a)
            && self.action.is_none_or(|a| r.action == a)
            && self
                .database
                .as_ref()
                .is_none_or(|d| r.database.as_ref() == Some(d))
    }

    /// The exact label matches of the same filter, for LogQL.
    pub fn labels(&self) -> Vec<(&'static str, &str)> {
        let mut filters = Vec::new();
        if let Some(d) = &self.database {
            filters.push(("database", d.as_str()));
        }
        if let Some(a) = &self.actor {
            filters.push(("actor", a.as_str()));
        }
        if let Some(a) = self.action {
            filters.push(("action", a.as_str()));
        }
        filters
    }
}

/// What an event query selects: one database's events, or every database's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    pub database: Option<String>,
    pub span: Span,
}

impl EventQuery {
    /// Parses `since`, `until`, `limit` and `cursor`; the database comes
    /// from the path.
    pub fn parse(
        pairs: &[(String, String)],
        database: Option<&str>,
    ) -> Result<EventQuery, Invalid> {
        let mut q = EventQuery {
            database: database.map(str::to_owned),
            span: Span::default(),
        };
        let mut errors = Vec::new();
        for (key, value) in pairs {
            if !q.span.read(key, value, &mut errors) {
                errors.push(FieldError::new(key.clone(), "unknown query parameter"));
            }
        }
        if errors.is_empty() {
            Ok(q)
        } else {
            Err(Invalid(errors))
        }
    }

    pub fn matches(&self, e: &ServiceEvent) -> bool {
        self.database.as_ref().is_none_or(|d| &e.database == d)
    }

    pub fn labels(&self) -> Vec<(&'static str, &str)> {
        self.database
            .iter()
            .map(|d| ("database", d.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::paging::encode_cursor;

    fn pairs(q: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(q).unwrap()
    }

    fn fields(e: Invalid) -> Vec<String> {
        e.0.into_iter().map(|e| e.field).collect()
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
        assert_eq!(q.span.limit, 5);
        assert_eq!(
            q.span.until.unwrap().to_rfc3339(),
            "2026-01-31T23:00:00+00:00"
        );
        let c = Cursor::Loki {
            ts_ns: 42,
            seen: vec!["x".into()],
        };
        let q = AuditQuery::parse(&pairs(&format!("cursor={}", encode_cursor(&c))), None).unwrap();
        assert_eq!(q.span.cursor, Some(c.clone()));
        let q = EventQuery::parse(
            &pairs(&format!("limit=7&cursor={}", encode_cursor(&c))),
            Some("orders"),
        )
        .unwrap();
        assert_eq!((q.span.limit, q.span.cursor), (7, Some(c)));
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
        let err = EventQuery::parse(&pairs("actor=alice"), Some("orders")).unwrap_err();
        assert_eq!(fields(err), ["actor"], "events have no actor");
    }
}
