//! The query protocol's messages (docs/query.md): parsing a request frame into a store query,
//! and the requests that continue a page (a reply's header is written by [`super::page`]).
//! Pure: no sockets, no store.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use xbus_store::{HistoryQuery, LatestQuery, Order};

/// The protocol version this proxy speaks.
pub(crate) const VERSION: u64 = 1;
/// Records a page holds when the request names no limit.
pub(crate) const DEFAULT_LIMIT: usize = 1_000;
/// The most records a page may hold.
pub(crate) const MAX_LIMIT: usize = 10_000;
/// The most prefixes one request may name.
pub(crate) const MAX_PREFIXES: usize = 256;
/// A page stops early (with `more`) once its records hold this many bytes: the store's own
/// page budget, so that a page read from the store always fits one reply.
pub(crate) const MAX_REPLY_BYTES: usize = xbus_store::MAX_PAGE_BYTES;
/// The longest a request may wait for recording to catch up (`wait_seq`).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(5);

/// A request, as parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// The proxy's numbering and store.
    Info,
    /// The last record of every topic under some prefixes.
    Latest {
        query: LatestQuery,
        numbers: Numbers,
    },
    /// Records by sequence and time range.
    History {
        query: HistoryQuery,
        /// Answer only once recording has handled every message up to this number.
        wait_seq: Option<u64>,
        numbers: Numbers,
    },
}

impl Request {
    /// The prefixes it reads (for the access check); `[]` means every topic.
    pub(crate) fn prefixes(&self) -> &[Bytes] {
        match self {
            Request::Info => &[],
            Request::Latest { query, .. } => &query.prefixes,
            Request::History { query, .. } => &query.prefixes,
        }
    }
}

/// Where a page's sequence numbers and receive times go (the request's `numbers`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Numbers {
    /// In the header, as the arrays `seq` and `time_us` (the default).
    #[default]
    Json,
    /// In one binary frame after the header: 16 bytes a record, its sequence number and
    /// receive time as little-endian `u64`s. Nothing to format or parse per number, which is
    /// most of a large page's header cost on both sides.
    Frame,
}

impl Numbers {
    /// Its name in requests.
    fn name(self) -> &'static str {
        match self {
            Numbers::Json => "json",
            Numbers::Frame => "frame",
        }
    }
}

/// A request the proxy cannot answer: a code a program can match, and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QueryError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl QueryError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> QueryError {
        QueryError {
            code,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> QueryError {
        QueryError::new("bad_request", message)
    }

    /// The reply header for this error.
    pub(crate) fn header(&self) -> Value {
        json!({
            "v": VERSION,
            "ok": false,
            "error": { "code": self.code, "message": self.message },
        })
    }
}

/// Every field any operation takes; which apply is checked per operation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    #[serde(rename = "v")]
    _version: u64,
    op: String,
    prefixes: Option<Vec<String>>,
    limit: Option<usize>,
    after_topic: Option<String>,
    after_topic_hex: Option<String>,
    after_seq: Option<u64>,
    min_seq: Option<u64>,
    max_seq: Option<u64>,
    since_us: Option<u64>,
    until_us: Option<u64>,
    order: Option<String>,
    wait_seq: Option<u64>,
    numbers: Option<String>,
}

impl Fields {
    /// Refuses fields that do not apply to this operation.
    fn only(&self, op: &str, allowed: &[&str]) -> Result<(), QueryError> {
        let given = [
            ("prefixes", self.prefixes.is_some()),
            ("limit", self.limit.is_some()),
            ("after_topic", self.after_topic.is_some()),
            ("after_topic_hex", self.after_topic_hex.is_some()),
            ("after_seq", self.after_seq.is_some()),
            ("min_seq", self.min_seq.is_some()),
            ("max_seq", self.max_seq.is_some()),
            ("since_us", self.since_us.is_some()),
            ("until_us", self.until_us.is_some()),
            ("order", self.order.is_some()),
            ("wait_seq", self.wait_seq.is_some()),
            ("numbers", self.numbers.is_some()),
        ];
        match given
            .iter()
            .find(|(name, set)| *set && !allowed.contains(name))
        {
            Some((name, _)) => Err(QueryError::bad(format!(
                "field `{name}` does not apply to `{op}`"
            ))),
            None => Ok(()),
        }
    }

    fn prefixes(&self) -> Result<Vec<Bytes>, QueryError> {
        let prefixes = self.prefixes.clone().unwrap_or_default();
        if prefixes.len() > MAX_PREFIXES {
            return Err(QueryError::bad(format!(
                "{} prefixes; at most {MAX_PREFIXES} in one request",
                prefixes.len()
            )));
        }
        Ok(prefixes.into_iter().map(Bytes::from).collect())
    }

    fn numbers(&self) -> Result<Numbers, QueryError> {
        match self.numbers.as_deref() {
            None | Some("json") => Ok(Numbers::Json),
            Some("frame") => Ok(Numbers::Frame),
            Some(other) => Err(QueryError::bad(format!(
                "numbers {other:?}: `json` or `frame`"
            ))),
        }
    }

    fn limit(&self) -> Result<usize, QueryError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(QueryError::bad(format!(
                "limit {n}: between 1 and {MAX_LIMIT}"
            ))),
        }
    }
}

/// Parses a request frame (a JSON object, UTF-8).
pub(crate) fn parse(frame: &[u8]) -> Result<Request, QueryError> {
    let value: Value = serde_json::from_slice(frame)
        .map_err(|e| QueryError::bad(format!("not a JSON object: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(QueryError::bad("not a JSON object"));
    };
    match object.get("v").and_then(Value::as_u64) {
        Some(VERSION) => {}
        Some(v) => {
            return Err(QueryError::new(
                "unsupported_version",
                format!("version {v}; this proxy speaks version {VERSION}"),
            ))
        }
        None => {
            return Err(QueryError::bad(format!(
                "`v` (the protocol version, {VERSION}) is missing"
            )))
        }
    }
    // say which field is wrong (serde's message names only the value)
    for (key, v) in object {
        let ok = match key.as_str() {
            "limit" | "after_seq" | "min_seq" | "max_seq" | "since_us" | "until_us"
            | "wait_seq" => v.is_u64(),
            "op" | "order" | "after_topic" | "after_topic_hex" | "numbers" => v.is_string(),
            "prefixes" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            _ => true,
        };
        if !ok {
            let want = match key.as_str() {
                "op" | "order" | "after_topic" | "after_topic_hex" | "numbers" => "a string",
                "prefixes" => "an array of strings",
                _ => "a whole number from 0 to 18446744073709551615",
            };
            return Err(QueryError::bad(format!("`{key}` must be {want}, not {v}")));
        }
    }
    let fields: Fields =
        serde_json::from_value(value).map_err(|e| QueryError::bad(e.to_string()))?;
    match fields.op.as_str() {
        "info" => {
            fields.only("info", &[])?;
            Ok(Request::Info)
        }
        "latest" => {
            fields.only(
                "latest",
                &[
                    "prefixes",
                    "limit",
                    "after_topic",
                    "after_topic_hex",
                    "numbers",
                ],
            )?;
            let after_topic = match (&fields.after_topic, &fields.after_topic_hex) {
                (Some(_), Some(_)) => {
                    return Err(QueryError::bad(
                        "give `after_topic` or `after_topic_hex`, not both",
                    ))
                }
                (Some(t), None) => Some(Bytes::from(t.clone())),
                (None, Some(h)) => {
                    Some(Bytes::from(from_hex(h).ok_or_else(|| {
                        QueryError::bad("`after_topic_hex` is not hexadecimal")
                    })?))
                }
                (None, None) => None,
            };
            Ok(Request::Latest {
                query: LatestQuery {
                    prefixes: fields.prefixes()?,
                    after_topic,
                    limit: fields.limit()?,
                },
                numbers: fields.numbers()?,
            })
        }
        "history" => {
            fields.only(
                "history",
                &[
                    "prefixes",
                    "limit",
                    "after_seq",
                    "min_seq",
                    "max_seq",
                    "since_us",
                    "until_us",
                    "order",
                    "wait_seq",
                    "numbers",
                ],
            )?;
            let min_seq = match (fields.after_seq, fields.min_seq) {
                (Some(_), Some(_)) => {
                    return Err(QueryError::bad("give `after_seq` or `min_seq`, not both"))
                }
                (Some(after), None) => Some(after.checked_add(1).ok_or_else(|| {
                    QueryError::bad(
                        "`after_seq` is the largest sequence number: nothing is after it",
                    )
                })?),
                (None, min) => min,
            };
            let order = match fields.order.as_deref() {
                None | Some("oldest") => Order::OldestFirst,
                Some("newest") => Order::NewestFirst,
                Some(other) => {
                    return Err(QueryError::bad(format!(
                        "order {other:?}: `oldest` or `newest`"
                    )))
                }
            };
            Ok(Request::History {
                query: HistoryQuery {
                    prefixes: fields.prefixes()?,
                    min_seq,
                    max_seq: fields.max_seq,
                    since_us: fields.since_us,
                    until_us: fields.until_us,
                    limit: fields.limit()?,
                    order,
                },
                wait_seq: fields.wait_seq,
                numbers: fields.numbers()?,
            })
        }
        other => Err(QueryError::new(
            "unknown_op",
            format!("operation {other:?}: `info`, `latest` or `history`"),
        )),
    }
}

fn prefix_values(prefixes: &[Bytes]) -> Vec<Value> {
    prefixes
        .iter()
        .map(|p| Value::String(String::from_utf8_lossy(p).into_owned()))
        .collect()
}

/// The request that continues a latest query after `last` (a topic).
pub(crate) fn latest_next(query: &LatestQuery, last: &[u8], numbers: Numbers) -> Value {
    let mut next = Map::new();
    next.insert("v".into(), VERSION.into());
    next.insert("op".into(), "latest".into());
    next.insert("prefixes".into(), prefix_values(&query.prefixes).into());
    next.insert("limit".into(), query.limit.into());
    match std::str::from_utf8(last) {
        Ok(text) => next.insert("after_topic".into(), text.into()),
        Err(_) => next.insert("after_topic_hex".into(), to_hex(last).into()),
    };
    with_numbers(next, numbers)
}

/// The request that continues a history query after the record numbered `last`; `None`
/// when nothing can follow.
pub(crate) fn history_next(
    query: &HistoryQuery,
    last: u64,
    wait_seq: Option<u64>,
    numbers: Numbers,
) -> Option<Value> {
    let mut q = query.clone();
    match q.order {
        Order::OldestFirst => q.min_seq = Some(last.checked_add(1)?),
        Order::NewestFirst => q.max_seq = Some(last.checked_sub(1)?),
    }
    Some(history_request(&q, wait_seq, numbers))
}

/// A history request, as JSON.
pub(crate) fn history_request(q: &HistoryQuery, wait_seq: Option<u64>, numbers: Numbers) -> Value {
    let mut next = Map::new();
    next.insert("v".into(), VERSION.into());
    next.insert("op".into(), "history".into());
    next.insert("prefixes".into(), prefix_values(&q.prefixes).into());
    for (name, value) in [
        ("min_seq", q.min_seq),
        ("max_seq", q.max_seq),
        ("since_us", q.since_us),
        ("until_us", q.until_us),
        ("wait_seq", wait_seq),
    ] {
        if let Some(v) = value {
            next.insert(name.into(), v.into());
        }
    }
    next.insert(
        "order".into(),
        match q.order {
            Order::OldestFirst => "oldest",
            Order::NewestFirst => "newest",
        }
        .into(),
    );
    next.insert("limit".into(), q.limit.into());
    with_numbers(next, numbers)
}

/// A next request: it asks for the numbers where this one did (the default is left out, so
/// a client that never asks for them elsewhere never sees the field).
fn with_numbers(mut request: Map<String, Value>, numbers: Numbers) -> Value {
    if numbers != Numbers::Json {
        request.insert("numbers".into(), numbers.name().into());
    }
    Value::Object(request)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_parse_into_store_queries() {
        assert_eq!(parse(br#"{"v":1,"op":"info"}"#).unwrap(), Request::Info);
        let Request::Latest { query: q, numbers } =
            parse(br#"{"v":1,"op":"latest","prefixes":["A."],"limit":5,"after_topic":"A.x."}"#)
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(q.prefixes, [Bytes::from("A.")]);
        assert_eq!((q.limit, q.after_topic), (5, Some(Bytes::from("A.x."))));
        assert_eq!(numbers, Numbers::Json);
        let Request::History {
            query,
            wait_seq,
            numbers,
        } = parse(
            br#"{"v":1,"op":"history","after_seq":9,"max_seq":20,"order":"newest","wait_seq":20}"#,
        )
        .unwrap()
        else {
            panic!()
        };
        assert_eq!((query.min_seq, query.max_seq), (Some(10), Some(20)));
        assert_eq!(
            (query.order, query.limit, wait_seq),
            (Order::NewestFirst, DEFAULT_LIMIT, Some(20))
        );
        assert!(query.prefixes.is_empty());
        assert_eq!(numbers, Numbers::Json);
        for (req, want) in [
            (
                &br#"{"v":1,"op":"latest","numbers":"frame"}"#[..],
                Numbers::Frame,
            ),
            (br#"{"v":1,"op":"history","numbers":"json"}"#, Numbers::Json),
            (
                br#"{"v":1,"op":"history","numbers":"frame"}"#,
                Numbers::Frame,
            ),
        ] {
            let numbers = match parse(req).unwrap() {
                Request::Latest { numbers, .. } | Request::History { numbers, .. } => numbers,
                Request::Info => panic!(),
            };
            assert_eq!(numbers, want);
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        for (req, code, says) in [
            (&b"nope"[..], "bad_request", "not a JSON object"),
            (b"[1]", "bad_request", "not a JSON object"),
            (br#"{"op":"info"}"#, "bad_request", "`v`"),
            (
                br#"{"v":2,"op":"info"}"#,
                "unsupported_version",
                "version 2",
            ),
            (br#"{"v":1,"op":"drop"}"#, "unknown_op", "drop"),
            (
                br#"{"v":1,"op":"latest","prefix":["A."]}"#,
                "bad_request",
                "prefix",
            ),
            (
                br#"{"v":1,"op":"latest","order":"newest"}"#,
                "bad_request",
                "`order` does not apply",
            ),
            (
                br#"{"v":1,"op":"history","limit":0}"#,
                "bad_request",
                "limit 0",
            ),
            (
                br#"{"v":1,"op":"history","limit":10001}"#,
                "bad_request",
                "limit 10001",
            ),
            (
                br#"{"v":1,"op":"history","order":"up"}"#,
                "bad_request",
                "order",
            ),
            (
                br#"{"v":1,"op":"history","after_seq":1,"min_seq":1}"#,
                "bad_request",
                "not both",
            ),
            (
                br#"{"v":1,"op":"history","after_seq":18446744073709551615}"#,
                "bad_request",
                "nothing is after",
            ),
            (
                br#"{"v":1,"op":"latest","after_topic_hex":"zz"}"#,
                "bad_request",
                "hexadecimal",
            ),
            (
                br#"{"v":1,"op":"history","min_seq":-1}"#,
                "bad_request",
                "min_seq",
            ),
            (
                br#"{"v":1,"op":"latest","numbers":"text"}"#,
                "bad_request",
                "`json` or `frame`",
            ),
            (
                br#"{"v":1,"op":"info","numbers":"frame"}"#,
                "bad_request",
                "`numbers` does not apply",
            ),
        ] {
            let err = parse(req).unwrap_err();
            assert_eq!(err.code, code, "{}", String::from_utf8_lossy(req));
            assert!(
                err.message.contains(says),
                "{}: {}",
                String::from_utf8_lossy(req),
                err.message
            );
        }
        let many = format!(
            r#"{{"v":1,"op":"latest","prefixes":[{}]}}"#,
            vec!["\"a\""; MAX_PREFIXES + 1].join(",")
        );
        assert!(parse(many.as_bytes())
            .unwrap_err()
            .message
            .contains("at most"));
    }

    #[test]
    fn next_requests_continue_where_a_page_ended() {
        let q = HistoryQuery::new(["A."]).after_seq(4).limit(10);
        let next = history_next(&q, 14, None, Numbers::Json).unwrap();
        assert!(next.get("numbers").is_none());
        let Request::History { query, .. } = parse(next.to_string().as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!((query.min_seq, query.limit), (Some(15), 10));
        let q = q.order(Order::NewestFirst);
        let Request::History { query, numbers, .. } = parse(
            history_next(&q, 14, Some(3), Numbers::Frame)
                .unwrap()
                .to_string()
                .as_bytes(),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (query.min_seq, query.max_seq, query.order),
            (Some(5), Some(13), Order::NewestFirst)
        );
        assert_eq!(
            numbers,
            Numbers::Frame,
            "the next page asks as the first did"
        );
        assert!(history_next(&q, 0, None, Numbers::Json).is_none());

        let l = LatestQuery::new(["A."]);
        for last in [&b"A.b."[..], b"A.\xff."] {
            let Request::Latest {
                query: next,
                numbers,
            } = parse(latest_next(&l, last, Numbers::Frame).to_string().as_bytes()).unwrap()
            else {
                panic!()
            };
            assert_eq!(next.after_topic.as_deref(), Some(last));
            assert_eq!(numbers, Numbers::Frame);
        }
    }
}
