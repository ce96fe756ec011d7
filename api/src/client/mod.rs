//! A client of pgplane's own REST API, for the CLI: one call per request,
//! JSON bodies kept as the API's own objects (so `-o json` prints them as
//! they came), problems turned into [`ClientError`], and the change streams
//! read as Server-Sent Events ([`sse`]).

mod error;
pub mod sse;

use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, RETRY_AFTER,
};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub use error::{ClientError, FieldProblem, Problem};

/// Waits between attempts to reach a server again: doubling from 100 ms to
/// 2 s, and from the start again once an attempt got through.
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_millis(100),
        }
    }
}

impl Backoff {
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Duration::from_secs(2));
    }

    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

/// How long one call may take; a stream is bounded by its caller instead.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One server, with or without a token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
}

/// A successful answer: its status, its `ETag` and its JSON body (`Null`
/// when it had none).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub body: Value,
}

/// One request: a method, a path under the server, query pairs, a body and
/// an `If-Match`.
pub struct Call<'a> {
    method: Method,
    path: &'a str,
    query: Vec<(&'a str, String)>,
    body: Option<&'a Value>,
    merge_patch: bool,
    if_match: Option<String>,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, path: &'a str) -> Self {
        Call {
            method,
            path,
            query: Vec::new(),
            body: None,
            merge_patch: false,
            if_match: None,
        }
    }

    pub fn get(path: &'a str) -> Self {
        Call::new(Method::GET, path)
    }

    pub fn query(mut self, key: &'a str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    pub fn body(mut self, body: &'a Value) -> Self {
        self.body = Some(body);
        self
    }

    /// The body as a JSON merge patch (RFC 7396), as PATCH takes it.
    pub fn merge_patch(mut self, body: &'a Value) -> Self {
        self.body = Some(body);
        self.merge_patch = true;
        self
    }

    /// Applies the change only to this revision (the ETag's value).
    pub fn if_match(mut self, revision: Option<u64>) -> Self {
        self.if_match = revision.map(|r| format!("\"{r}\""));
        self
    }
}

impl Client {
    /// A client of `server` (`http://host:port`, or `https://…`). A path
    /// after the host is kept: pgplane may be served under a prefix.
    pub fn new(server: &str, token: Option<String>) -> Result<Client, ClientError> {
        let server = server.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&server).map_err(|e| ClientError::BadServer {
            server: server.clone(),
            why: format!("{e}; give one like http://127.0.0.1:8080"),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(ClientError::BadServer {
                server,
                why: "give an http:// or https:// URL with a host".into(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("pgplane-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::transport(&server, e))?;
        Ok(Client {
            http,
            server,
            token,
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn with_token(&self, token: String) -> Client {
        Client {
            token: Some(token),
            ..self.clone()
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.server));
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        request
    }

    /// Sends one call and reads its whole answer.
    pub async fn send(&self, call: Call<'_>) -> Result<Answer, ClientError> {
        let mut request = self
            .request(call.method, call.path)
            .timeout(CALL_TIMEOUT)
            .header(ACCEPT, "application/json");
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        if let Some(body) = call.body {
            request = if call.merge_patch {
                request
                    .header(CONTENT_TYPE, "application/merge-patch+json")
                    .body(body.to_string())
            } else {
                request.json(body)
            };
        }
        if let Some(tag) = call.if_match {
            request = request.header(IF_MATCH, tag);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::transport(&self.server, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::transport(&self.server, e))?;
        if !status.is_success() {
            return Err(self.problem(status, &headers, &bytes));
        }
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected {
                server: self.server.clone(),
                what: format!("a body that is not JSON ({e}); is this a pgplane server?"),
            })?
        };
        Ok(Answer {
            status,
            etag: headers
                .get(ETAG)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim_matches('"').to_owned()),
            body,
        })
    }

    /// The body of a successful GET.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        Ok(self.send(Call::get(path)).await?.body)
    }

    /// Every item of a paged list (`{items, next_cursor}`), following the
    /// cursors with pages of `limit`.
    pub async fn list_all(
        &self,
        path: &str,
        query: &[(&str, String)],
        limit: usize,
    ) -> Result<Vec<Value>, ClientError> {
        self.list_up_to(path, query, limit, usize::MAX).await
    }

    /// The first `most` items of a paged list, in pages of at most `limit`.
    pub async fn list_up_to(
        &self,
        path: &str,
        query: &[(&str, String)],
        limit: usize,
        most: usize,
    ) -> Result<Vec<Value>, ClientError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        while items.len() < most {
            let page_size = limit.min(most - items.len());
            let mut call = Call::get(path).query("limit", page_size.to_string());
            for (k, v) in query {
                call = call.query(k, v.clone());
            }
            if let Some(c) = cursor.take() {
                call = call.query("cursor", c);
            }
            let mut page = self.send(call).await?.body;
            if let Some(Value::Array(mut page_items)) = page.get_mut("items").map(Value::take) {
                items.append(&mut page_items);
            } else {
                return Err(ClientError::Unexpected {
                    server: self.server.clone(),
                    what: format!("a list without items for {path}"),
                });
            }
            match page.get("next_cursor").and_then(Value::as_str) {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        Ok(items)
    }

    /// Opens a Server-Sent Events stream; `last_event_id` resumes a feed.
    pub async fn stream(
        &self,
        path: &str,
        query: &[(&str, String)],
        last_event_id: Option<&str>,
    ) -> Result<sse::Stream, ClientError> {
        let mut request = self
            .request(Method::GET, path)
            .query(query)
            .header(ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::transport(&self.server, e))?;
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| ClientError::transport(&self.server, e))?;
            return Err(self.problem(status, &headers, &bytes));
        }
        Ok(sse::Stream::new(response, self.server.clone()))
    }

    /// A failed answer as a [`Problem`]; a body that is not one (a proxy's
    /// page, say) still gives its status and reason.
    fn problem(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ClientError {
        let mut problem = serde_json::from_slice::<Problem>(body).unwrap_or_else(|_| Problem {
            status: status.as_u16(),
            title: String::new(),
            detail: String::new(),
            errors: Vec::new(),
            retry_after: None,
        });
        problem.status = status.as_u16();
        if problem.title.is_empty() {
            problem.title = status.canonical_reason().unwrap_or("Error").to_owned();
        }
        if problem.detail.is_empty() {
            problem.detail = format!("{} gave no detail", self.server);
        }
        problem.retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        ClientError::Problem(problem)
    }
}
