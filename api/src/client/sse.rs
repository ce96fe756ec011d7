//! Reading a `text/event-stream` answer: the frames of the SSE format
//! (WHATWG HTML, "Server-sent events"), as pgplane's streams send them.

use std::time::Duration;

use super::ClientError;

/// pgplane sends a keep-alive every 15 s: this long without a byte is a
/// connection that died without closing (a half-open TCP connection).
const SILENCE: Duration = Duration::from_secs(45);

/// One event: its name (`message` when the frame gave none), its data
/// lines joined, and its id when it had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: String,
    pub id: Option<String>,
}

/// An open stream; [`Stream::next`] gives its events in order.
pub struct Stream {
    response: reqwest::Response,
    server: String,
    frames: Frames,
}

impl Stream {
    pub(super) fn new(response: reqwest::Response, server: String) -> Stream {
        Stream {
            response,
            server,
            frames: Frames::default(),
        }
    }

    /// The next event; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            if let Some(event) = self.frames.next_event() {
                return Ok(Some(event));
            }
            match tokio::time::timeout(SILENCE, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.frames.push(&chunk),
                Ok(Ok(None)) => return Ok(None),
                Ok(Err(e)) => return Err(ClientError::transport(&self.server, e)),
                Err(_) => {
                    return Err(ClientError::Silent {
                        server: self.server.clone(),
                        secs: SILENCE.as_secs(),
                    })
                }
            }
        }
    }
}

/// The parser, apart from the transport so that it can be tested alone.
#[derive(Default)]
pub struct Frames {
    buffer: Vec<u8>,
    name: String,
    data: Vec<String>,
    id: Option<String>,
}

impl Frames {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete event in what was pushed, consuming its lines.
    pub fn next_event(&mut self) -> Option<Event> {
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if self.data.is_empty() && self.name.is_empty() {
                    continue;
                }
                let name = std::mem::take(&mut self.name);
                return Some(Event {
                    name: if name.is_empty() {
                        "message".into()
                    } else {
                        name
                    },
                    data: std::mem::take(&mut self.data).join("\n"),
                    id: self.id.take(),
                });
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
                None => (line, String::new()),
            };
            match field.as_str() {
                "event" => self.name = value,
                "data" => self.data.push(value),
                "id" => self.id = Some(value),
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_join_into_events() {
        let text = ": keep-alive\n\nevent: snapshot\ndata: {\"items\":\r\ndata: []}\n\nid: 7\nevent: service_event\ndata: x\n\n";
        for cut in 0..text.len() {
            let mut frames = Frames::default();
            frames.push(&text.as_bytes()[..cut]);
            let mut events: Vec<Event> = std::iter::from_fn(|| frames.next_event()).collect();
            frames.push(&text.as_bytes()[cut..]);
            events.extend(std::iter::from_fn(|| frames.next_event()));
            assert_eq!(
                events,
                vec![
                    Event {
                        name: "snapshot".into(),
                        data: "{\"items\":\n[]}".into(),
                        id: None
                    },
                    Event {
                        name: "service_event".into(),
                        data: "x".into(),
                        id: Some("7".into())
                    },
                ],
                "cut at {cut}"
            );
        }
    }
}
