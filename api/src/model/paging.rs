//! One way to page, for every listing: databases by name (both backends),
//! audit records and service events newest first (both stores). A page asks
//! for `limit` items, 1 to a maximum; its source hands over at most one item
//! more, whose presence says another page exists; the cursor is where the
//! page ended, opaque to clients (base64url of JSON), and each listing
//! decides what a position is.

use std::collections::BTreeMap;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::database::Database;
use super::invalid::{FieldError, Invalid};
use super::spec::check_name;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The page of `limit` items from `items`, which are in answer order and
    /// hold at most one more than `limit` when more exist. The cursor is the
    /// `position` of the page's last item.
    pub fn from_items<C: Serialize>(
        mut items: Vec<T>,
        limit: usize,
        position: impl FnOnce(&T) -> C,
    ) -> Page<T> {
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = match items.last() {
            Some(last) if more => Some(encode_cursor(&position(last))),
            _ => None,
        };
        Page { items, next_cursor }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

/// The cursor text of a position.
pub fn encode_cursor<C: Serialize>(position: &C) -> String {
    let json = serde_json::to_vec(position).expect("a cursor position serializes");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// The position a cursor text names; `None` when it is not one this API made.
pub fn decode_cursor<C: DeserializeOwned>(text: &str) -> Option<C> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The message of a cursor that this API did not return.
pub const FOREIGN_CURSOR: &str = "is not a cursor this API returned";

/// A `limit` query value from 1 to `max`.
pub fn parse_limit(value: &str, max: usize) -> Result<usize, FieldError> {
    match value.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(FieldError::new(
            "limit",
            format!("must be an integer from 1 to {max}"),
        )),
    }
}

/// An RFC 3339 time query value (`since`, `until`).
pub fn parse_time(key: &str, value: &str) -> Result<DateTime<Utc>, FieldError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| FieldError::new(key, "must be an RFC 3339 time such as 2026-11-20T10:00:00Z"))
}

pub const DEFAULT_DATABASES: usize = 50;
pub const MAX_DATABASES: usize = 500;

/// What `GET /databases` may filter and page by: databases sorted by name,
/// those after the cursor's name, with every label asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub limit: usize,
    /// The name after which the page starts.
    pub after: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            limit: DEFAULT_DATABASES,
            after: None,
            labels: BTreeMap::new(),
        }
    }
}

/// A database listing's position: the last name of a page.
#[derive(Serialize, Deserialize)]
struct AfterName(String);

impl ListQuery {
    /// Parses `limit`, `cursor` and any number of `label=k=v`.
    pub fn parse(pairs: &[(String, String)]) -> Result<ListQuery, Invalid> {
        let mut q = ListQuery::default();
        let mut errors = Vec::new();
        for (key, value) in pairs {
            match key.as_str() {
                "limit" => match parse_limit(value, MAX_DATABASES) {
                    Ok(n) => q.limit = n,
                    Err(e) => errors.push(e),
                },
                "cursor" => match decode_cursor::<AfterName>(value) {
                    Some(AfterName(name)) if check_name(&name).is_ok() => q.after = Some(name),
                    _ => errors.push(FieldError::new("cursor", FOREIGN_CURSOR)),
                },
                "label" => match value.split_once('=') {
                    Some((k, v)) if !k.is_empty() => {
                        q.labels.insert(k.to_owned(), v.to_owned());
                    }
                    _ => errors.push(FieldError::new("label", "must be key=value")),
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

    /// Parses the query of a `watch=true` list: labels only, since a
    /// stream has no pages.
    pub fn parse_watch(pairs: &[(String, String)]) -> Result<BTreeMap<String, String>, Invalid> {
        let paging: Vec<FieldError> = pairs
            .iter()
            .filter(|(k, _)| k == "limit" || k == "cursor")
            .map(|(k, _)| {
                FieldError::new(
                    k.clone(),
                    "is not taken with watch=true: a stream has no pages",
                )
            })
            .collect();
        let q = ListQuery::parse(pairs)?;
        if paging.is_empty() {
            Ok(q.labels)
        } else {
            Err(Invalid(paging))
        }
    }

    /// Whether a database with these name and labels is on a page of this
    /// query (at or after its start); the order is the source's, by name.
    pub fn selects(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.after
            .as_ref()
            .is_none_or(|after| name > after.as_str())
            && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// The page of `selected`: the databases this query selects
    /// ([`ListQuery::selects`]), in name order, made as they are taken, so a
    /// backend with many databases in memory builds a page of them, not all.
    pub fn page_of_selected<T: Named>(&self, selected: impl Iterator<Item = T>) -> Page<T> {
        let items: Vec<T> = selected.take(self.limit + 1).collect();
        Page::from_items(items, self.limit, |last| AfterName(last.name().to_owned()))
    }

    /// The page of `all` (any order) this query selects.
    pub fn page(&self, mut all: Vec<Database>) -> Page<Database> {
        all.retain(|d| self.selects(&d.name, &d.labels));
        all.sort_by(|a, b| a.name.cmp(&b.name));
        self.page_of_selected(all.into_iter())
    }
}

/// What is listed by name.
pub trait Named {
    fn name(&self) -> &str;
}

impl Named for Database {
    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(q).unwrap()
    }

    #[test]
    fn pages_follow_cursors_to_the_end() {
        let all: Vec<_> = (0..7)
            .map(|i| {
                Database::test()
                    .named(&format!("db{i}"))
                    .label("team", if i % 2 == 0 { "a" } else { "b" })
            })
            .collect();
        let mut q = ListQuery::parse(&pairs("limit=3")).unwrap();
        let mut seen = Vec::new();
        loop {
            let p = q.page(all.clone());
            seen.extend(p.items.iter().map(|d| d.name.clone()));
            match p.next_cursor {
                Some(c) => q = ListQuery::parse(&pairs(&format!("limit=3&cursor={c}"))).unwrap(),
                None => break,
            }
        }
        assert_eq!(seen, (0..7).map(|i| format!("db{i}")).collect::<Vec<_>>());
        let q = ListQuery::parse(&pairs("label=team%3Db")).unwrap();
        let names: Vec<_> = q
            .page(all.clone())
            .items
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, ["db1", "db3", "db5"]);

        // Made as taken, a page is made of the page's items and one more.
        let q = ListQuery::parse(&pairs("limit=2&label=team%3Da")).unwrap();
        let mut built = 0;
        let selected = all
            .iter()
            .filter(|d| q.selects(&d.name, &d.labels))
            .map(|d| {
                built += 1;
                d.clone()
            });
        let page = q.page_of_selected(selected);
        assert_eq!(page, q.page(all.clone()));
        assert_eq!(
            built, 3,
            "the page's two and the one that says there is more"
        );
    }

    #[test]
    fn a_full_last_page_has_no_cursor() {
        let page = Page::from_items(vec![1, 2], 2, |n| *n);
        assert_eq!(page.next_cursor, None);
        let page = Page::from_items(vec![1, 2, 3], 2, |n| *n);
        assert_eq!(page.items, [1, 2]);
        assert_eq!(decode_cursor::<i32>(&page.next_cursor.unwrap()), Some(2));
    }

    #[test]
    fn bad_list_queries() {
        for q in [
            "limit=0",
            "limit=501",
            "limit=x",
            "cursor=%%%",
            "cursor=QUJD",
            "label=novalue",
            "colour=red",
        ] {
            assert!(ListQuery::parse(&pairs(q)).is_err(), "{q}");
        }
    }
}
