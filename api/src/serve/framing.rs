//! Where each HTTP/1.1 request on a connection begins and ends, and whether
//! its head may go on to hyper. Pure: it looks at the bytes received and
//! says how many may pass; [`super::stream`] does the reading and the
//! deadlines, hyper does the real parsing.
//!
//! A head passes only when hyper would accept it too (the same `httparse`,
//! hyper's own checks of method and target) and within our bounds; anything
//! hyper would answer itself with an empty 400, 414 or 431 is refused here
//! first, so that we answer it as problem+json instead. To find where the
//! next head starts, bodies are followed as hyper reads them: a
//! `Content-Length`, or chunked framing with hyper's grammar and limits.
//! Where the two could disagree on a body's length (both `Content-Length`
//! and `Transfer-Encoding`, repeated ones, codings other than chunked) the
//! head is refused, so the framing here and hyper's never differ.

use axum::http::{HeaderName, Method, Uri};

/// The bounds of a request head and body.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line and header fields, with their line ends.
    pub head: usize,
    /// The request target (path and query).
    pub target: usize,
    /// A declared `Content-Length`.
    pub body: u64,
}

/// Header fields a head may have: hyper's default, so hyper never refuses
/// what passes here.
pub const MAX_HEADERS: usize = 100;

/// How much of a head is checked before its end arrives, on each read: enough
/// to catch what is not HTTP at all (a TLS hello, a stray protocol) at once,
/// small enough that a head sent byte by byte costs little to look at.
const EARLY_CHECK: usize = 1024;

/// hyper's bounds on chunk extensions and trailers (`proto/h1/decode.rs`).
const CHUNK_EXTENSIONS: u64 = 16 * 1024;
const TRAILER_BYTES: usize = 16 * 1024;

/// Why a head is not passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not an HTTP/1.x request head, or framing that could be read two ways: 400.
    Malformed(&'static str),
    /// The request target is over [`Limits::target`]: 414.
    TargetTooLong,
    /// The head is over [`Limits::head`]: 431.
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header fields: 431.
    TooManyHeaders,
    /// The declared body is over [`Limits::body`]: 413.
    BodyTooLarge,
}

/// What the bytes at the front of the input are.
#[derive(Debug, PartialEq, Eq)]
pub enum Advance {
    /// Nothing can be said until more bytes arrive.
    Need,
    /// The first `len` bytes may go to hyper: a whole checked head (`head`),
    /// or bytes of a body.
    Pass { len: usize, head: bool },
    /// The head at the front is refused; the connection ends with its answer.
    Refuse(Refusal),
    /// A chunked body breaks its framing (hyper would fail it too); the
    /// connection cannot go on.
    Broken(&'static str),
}

#[derive(Debug)]
enum State {
    /// Between messages: reading a head. `scanned` bytes have been searched
    /// for its end already.
    Head {
        scanned: usize,
    },
    /// So many bytes of a `Content-Length` body are still to come.
    Length(u64),
    Chunked(Chunked),
}

/// The framing of one connection's requests.
#[derive(Debug)]
pub struct Framing {
    limits: Limits,
    state: State,
}

impl Framing {
    pub fn new(limits: Limits) -> Framing {
        Framing {
            limits,
            state: State::Head { scanned: 0 },
        }
    }

    /// Whether the next bytes belong to a head (not to a body).
    pub fn in_head(&self) -> bool {
        matches!(self.state, State::Head { .. })
    }

    /// Looks at the bytes received and not yet passed (`input` starts where
    /// the last [`Advance::Pass`] ended).
    pub fn advance(&mut self, input: &[u8]) -> Advance {
        match &mut self.state {
            State::Head { scanned } => match read_head(&self.limits, input, *scanned) {
                HeadRead::Complete(len, body) => {
                    self.state = body;
                    Advance::Pass { len, head: true }
                }
                HeadRead::Incomplete(searched) => {
                    *scanned = searched;
                    Advance::Need
                }
                HeadRead::Refused(refusal) => Advance::Refuse(refusal),
            },
            State::Length(left) => {
                if input.is_empty() {
                    return Advance::Need;
                }
                let len = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                *left -= len as u64;
                if *left == 0 {
                    self.state = State::Head { scanned: 0 };
                }
                Advance::Pass { len, head: false }
            }
            State::Chunked(chunked) => match chunked.read(input) {
                Err(why) => Advance::Broken(why),
                Ok((0, _)) => Advance::Need,
                Ok((len, ended)) => {
                    if ended {
                        self.state = State::Head { scanned: 0 };
                    }
                    Advance::Pass { len, head: false }
                }
            },
        }
    }
}

/// What the front of the input makes of a head.
enum HeadRead {
    /// A checked head of this length, and the state its body puts the framing in.
    Complete(usize, State),
    /// Not yet complete; the bytes searched for its end so far.
    Incomplete(usize),
    Refused(Refusal),
}

/// The head at the front of `input`, of which `scanned` bytes were searched
/// for its end before.
fn read_head(limits: &Limits, input: &[u8], scanned: usize) -> HeadRead {
    let complete = |len: usize| match check_head(limits, &input[..len]) {
        Ok(body) => HeadRead::Complete(len, body),
        Err(refusal) => HeadRead::Refused(refusal),
    };
    // What is not HTTP shows in its first bytes: say so before its "end".
    let early = &input[..input.len().min(EARLY_CHECK)];
    if scanned < early.len() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::Request::new(&mut headers).parse(early) {
            Ok(httparse::Status::Partial) => {}
            Ok(httparse::Status::Complete(len)) => return complete(len),
            Err(e) => return HeadRead::Refused(parse_refusal(e)),
        }
    }
    // The head ends at its first empty line (httparse also takes a bare LF).
    // Two bytes of overlap find an end split over two reads.
    let mut from = scanned.saturating_sub(2);
    while let Some(end) = blank_line(&input[from..]).map(|e| from + e) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::Request::new(&mut headers).parse(&input[..end]) {
            Ok(httparse::Status::Complete(len)) => return complete(len),
            // Only empty lines so far, which may precede a head.
            Ok(httparse::Status::Partial) => from = end,
            Err(e) => return HeadRead::Refused(parse_refusal(e)),
        }
    }
    if input.len() > limits.head {
        return HeadRead::Refused(oversized(limits, input));
    }
    HeadRead::Incomplete(input.len())
}

fn parse_refusal(e: httparse::Error) -> Refusal {
    match e {
        httparse::Error::TooManyHeaders => Refusal::TooManyHeaders,
        _ => not_http(),
    }
}

fn not_http() -> Refusal {
    Refusal::Malformed("the request is not an HTTP/1.1 request head")
}

/// The end (one past the LF) of the first empty line in `bytes`.
fn blank_line(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(lf) = bytes[at..].iter().position(|&b| b == b'\n') {
        let lf = at + lf;
        match bytes.get(lf + 1..lf + 3) {
            Some([b'\n', _]) => return Some(lf + 2),
            Some([b'\r', b'\n']) => return Some(lf + 3),
            // LF at the very end, or LF CR at the end: not known yet.
            None if bytes.get(lf + 1) == Some(&b'\n') => return Some(lf + 2),
            _ => {}
        }
        at = lf + 1;
    }
    None
}

/// A head that outgrew [`Limits::head`] before it ended: a request line
/// that long is a too-long target; otherwise the fields are too large.
fn oversized(limits: &Limits, input: &[u8]) -> Refusal {
    let start = input
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(0);
    let line = &input[start..];
    match line.iter().position(|&b| b == b'\n') {
        None => Refusal::TargetTooLong,
        Some(end) => {
            let target = line[..end].split(|&b| b == b' ').nth(1).unwrap_or(&[]);
            if target.len() > limits.target {
                Refusal::TargetTooLong
            } else {
                Refusal::HeadTooLarge
            }
        }
    }
}

/// A complete head, as httparse read it: our bounds, what hyper would refuse
/// beyond httparse, and how its body is framed.
fn check_head(limits: &Limits, head: &[u8]) -> Result<State, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(not_http()),
        Err(e) => return Err(parse_refusal(e)),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(not_http());
    };
    if target.len() > limits.target {
        return Err(Refusal::TargetTooLong);
    }
    if head.len() > limits.head {
        return Err(Refusal::HeadTooLarge);
    }
    let malformed = |why| Err(Refusal::Malformed(why));
    if Method::from_bytes(method.as_bytes()).is_err() {
        return malformed("the method is not a token");
    }
    if Uri::try_from(target).is_err() {
        return malformed("the request target is not a URI");
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut framings = 0;
    for h in req.headers.iter() {
        if HeaderName::from_bytes(h.name.as_bytes()).is_err() {
            return malformed("a header field name is not a token");
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            framings += 1;
            let digits = h.value.trim_ascii();
            length = match std::str::from_utf8(digits)
                .ok()
                .filter(|d| !d.is_empty() && d.len() <= 19 && d.bytes().all(|b| b.is_ascii_digit()))
            {
                Some(d) => Some(d.parse().expect("at most 19 digits fit a u64")),
                None => return malformed("Content-Length is not a number"),
            };
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            framings += 1;
            if !h.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return malformed("the only Transfer-Encoding accepted is chunked");
            }
            chunked = true;
        }
    }
    if framings > 1 {
        return malformed("the body is framed more than once (Content-Length, Transfer-Encoding)");
    }
    if chunked && version == 0 {
        return malformed("HTTP/1.0 has no Transfer-Encoding");
    }
    match length {
        Some(n) if n > limits.body => Err(Refusal::BodyTooLarge),
        Some(n) if n > 0 => Ok(State::Length(n)),
        _ if chunked => Ok(State::Chunked(Chunked::default())),
        _ => Ok(State::Head { scanned: 0 }),
    }
}

/// Where a chunked body is, in hyper's grammar: `size [ws] [;ext] CRLF data
/// CRLF` ... `0 CRLF` then trailer lines and an empty line.
#[derive(Debug, Default)]
struct Chunked {
    at: ChunkAt,
    size: u64,
    extensions: u64,
    trailer_bytes: usize,
    trailers: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkAt {
    #[default]
    Start,
    Size,
    SizeSpace,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    EndCr,
    EndLf,
    Trailer,
    TrailerLf,
}

impl Chunked {
    /// How many bytes of `input` are this body's, and whether it ended there.
    fn read(&mut self, input: &[u8]) -> Result<(usize, bool), &'static str> {
        use ChunkAt as A;
        let mut used = 0;
        while used < input.len() {
            if self.at == A::Data {
                let take = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - used);
                used += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.at = A::DataCr;
                }
                continue;
            }
            let b = input[used];
            used += 1;
            self.at = match (self.at, b) {
                (A::Start | A::Size, b) if b.is_ascii_hexdigit() => {
                    let digit = (b as char).to_digit(16).expect("a hex digit") as u64;
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(digit))
                        .ok_or("the chunk size overflows")?;
                    A::Size
                }
                (A::Start, _) => return Err("a chunk size line has no digit"),
                (A::Size | A::SizeSpace, b'\t' | b' ') => A::SizeSpace,
                (A::Size | A::SizeSpace, b';') => A::Extension,
                (A::Size | A::SizeSpace | A::Extension, b'\r') => A::SizeLf,
                (A::Size | A::SizeSpace, _) => return Err("a chunk size is not hexadecimal"),
                (A::Extension, b'\n') => return Err("a chunk extension has a bare LF"),
                (A::Extension, _) => {
                    self.extensions += 1;
                    if self.extensions >= CHUNK_EXTENSIONS {
                        return Err("chunk extensions are too long");
                    }
                    A::Extension
                }
                (A::SizeLf, b'\n') if self.size == 0 => A::EndCr,
                (A::SizeLf, b'\n') => A::Data,
                (A::SizeLf, _) => return Err("a chunk size line does not end in CRLF"),
                (A::DataCr, b'\r') => A::DataLf,
                (A::DataLf, b'\n') => A::Start,
                (A::DataCr | A::DataLf, _) => return Err("chunk data does not end in CRLF"),
                (A::EndCr, b'\r') => A::EndLf,
                (A::EndLf, b'\n') => return Ok((used, true)),
                (A::EndLf, _) => return Err("a chunked body does not end in CRLF"),
                (A::EndCr | A::Trailer, b) => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > TRAILER_BYTES {
                        return Err("the trailer fields are too large");
                    }
                    if b == b'\r' {
                        A::TrailerLf
                    } else {
                        A::Trailer
                    }
                }
                (A::TrailerLf, b'\n') => {
                    self.trailers += 1;
                    if self.trailers > MAX_HEADERS {
                        return Err("too many trailer fields");
                    }
                    A::EndCr
                }
                (A::TrailerLf, _) => return Err("a trailer field does not end in CRLF"),
                (A::Data, _) => unreachable!("data is taken in bulk above"),
            };
        }
        Ok((used, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        head: 1024,
        target: 64,
        body: 100,
    };

    /// Feeds `input` in pieces of `step` bytes, as reads would bring it, and
    /// returns what passed (heads and bodies, in order) and how it ended.
    fn feed(input: &[u8], step: usize) -> (Vec<(bool, Vec<u8>)>, Option<Advance>) {
        let mut framing = Framing::new(LIMITS);
        let mut received = Vec::new();
        let mut passed: Vec<(bool, Vec<u8>)> = Vec::new();
        let mut chunks = input.chunks(step);
        loop {
            match framing.advance(&received) {
                Advance::Pass { len, head } => {
                    let bytes: Vec<u8> = received.drain(..len).collect();
                    match passed.last_mut() {
                        Some((false, body)) if !head => body.extend(bytes),
                        _ => passed.push((head, bytes)),
                    }
                }
                Advance::Need => match chunks.next() {
                    Some(c) => received.extend_from_slice(c),
                    None => return (passed, None),
                },
                other => return (passed, Some(other)),
            }
        }
    }

    fn heads(passed: &[(bool, Vec<u8>)]) -> Vec<String> {
        passed
            .iter()
            .filter(|(head, _)| *head)
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn requests_on_one_connection_are_found_whatever_the_reads() {
        let stream = concat!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            "\r\n", // an empty line between requests, as httparse allows
            "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Sum: 1\r\n\r\n",
            "GET /c HTTP/1.0\n\n",
        );
        for step in [1, 2, 3, 7, 64, 4096] {
            let (passed, end) = feed(stream.as_bytes(), step);
            assert_eq!(end, None, "step {step}");
            let all: Vec<u8> = passed.iter().flat_map(|(_, b)| b.clone()).collect();
            assert_eq!(
                all,
                stream.as_bytes(),
                "step {step}: every byte passes, in order"
            );
            let heads = heads(&passed);
            assert_eq!(heads.len(), 4, "step {step}: {heads:?}");
            assert!(heads[0].starts_with("GET /healthz"));
            assert!(heads[1].starts_with("POST /a"));
            assert!(heads[2].starts_with("\r\nPOST /b"), "{:?}", heads[2]);
            assert!(heads[3].starts_with("GET /c"));
        }
    }

    #[test]
    fn bad_heads_are_refused_with_their_reason() {
        let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100));
        let endless_target = format!("GET /{}", "a".repeat(1100));
        let big_field = format!(
            "GET / HTTP/1.1\r\nAuthorization: {}\r\n\r\n",
            "a".repeat(1100)
        );
        let endless_field = format!("GET / HTTP/1.1\r\nAuthorization: {}", "a".repeat(1100));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(101));
        let tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec();
        let framed_twice = Refusal::Malformed(
            "the body is framed more than once (Content-Length, Transfer-Encoding)",
        );
        let not_a_number = Refusal::Malformed("Content-Length is not a number");
        let cases: Vec<(Vec<u8>, Refusal)> = vec![
            (tls_hello, not_http()),
            ("NOT HTTP AT ALL\r\n\r\n".into(), not_http()),
            ("GET / HTTP/2.0\r\n\r\n".into(), not_http()),
            ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into(), not_http()),
            ("GET / HTTP/1.1\r\nbad header\r\n\r\n".into(), not_http()),
            (long_target.into(), Refusal::TargetTooLong),
            (endless_target.into(), Refusal::TargetTooLong),
            (big_field.into(), Refusal::HeadTooLarge),
            (endless_field.into(), Refusal::HeadTooLarge),
            (many.into(), Refusal::TooManyHeaders),
            (
                "POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n".into(),
                Refusal::BodyTooLarge,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n".into(),
                not_a_number,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n".into(),
                not_a_number,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n".into(),
                framed_twice,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
                framed_twice,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into(),
                Refusal::Malformed("the only Transfer-Encoding accepted is chunked"),
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
                Refusal::Malformed("HTTP/1.0 has no Transfer-Encoding"),
            ),
            (
                "GET http://[ HTTP/1.1\r\n\r\n".into(),
                Refusal::Malformed("the request target is not a URI"),
            ),
        ];
        for (input, refusal) in cases {
            for step in [1, 5, 4096] {
                let (passed, end) = feed(&input, step);
                let shown = String::from_utf8_lossy(&input);
                assert!(passed.is_empty(), "{shown:?} step {step}");
                assert_eq!(end, Some(Advance::Refuse(refusal)), "{shown:?} step {step}");
            }
        }
    }

    #[test]
    fn a_refusal_comes_after_the_requests_before_it() {
        let stream = "GET /a HTTP/1.1\r\n\r\nNOT HTTP\r\n\r\n";
        let (passed, end) = feed(stream.as_bytes(), 4096);
        assert_eq!(heads(&passed), vec!["GET /a HTTP/1.1\r\n\r\n"]);
        assert_eq!(end, Some(Advance::Refuse(not_http())));
    }

    #[test]
    fn an_incomplete_head_within_bounds_waits() {
        for partial in ["", "GET", "GET / HTTP/1.1\r\nHost: x\r\n", "\r\n\r\n"] {
            let (passed, end) = feed(partial.as_bytes(), 1);
            assert!(passed.is_empty() && end.is_none(), "{partial:?}");
        }
    }

    #[test]
    fn broken_chunked_framing_ends_the_connection() {
        for body in [
            "x\r\n",
            "3\r\nabcX",
            "3 x\r\n",
            "3;a\nb\r\n",
            "3\rX",
            "0\r\n\r\r",
            "0\r\nA: b\rX",
            "11111111111111111\r\n",
        ] {
            let input = format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
            let (_, end) = feed(input.as_bytes(), 4096);
            assert!(matches!(end, Some(Advance::Broken(_))), "{body:?}: {end:?}");
        }
        let trailers = format!("0\r\n{}\r\n", "A: b\r\n".repeat(101));
        let input = format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{trailers}");
        assert_eq!(
            feed(input.as_bytes(), 4096).1,
            Some(Advance::Broken("too many trailer fields"))
        );
    }

    #[test]
    fn chunked_bodies_are_not_bounded_here() {
        // The handler's body limit answers those 413 (as problem+json).
        let chunk = format!("{:x}\r\n{}\r\n", 1000, "a".repeat(1000));
        let input = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            chunk.repeat(3)
        );
        let (passed, end) = feed(input.as_bytes(), 333);
        assert_eq!(end, None);
        assert_eq!(heads(&passed).len(), 2);
    }
}
