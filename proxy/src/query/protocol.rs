//! The query protocol's messages (docs/query.md): parsing a request frame into a store query,
//! and writing a reply's JSON header. Pure: no sockets, no store.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use xbus_store::{HistoryQuery, LatestQuery, Order, Record};

/// The protocol version this proxy speaks.
pub(crate) const VERSION: u64 = 1;
/// Records a page holds when the request names no limit.
pub(crate) const DEFAULT_LIMIT: usize = 1_000;
/// The most records a page may hold.
pub(crate) const MAX_LIMIT: usize = 10_000;
/// The most prefixes one request may name.
pub(crate) const MAX_PREFIXES: usize = 256;
/// A page stops early (with `more`) once its records hold this many bytes.
pub(crate) const MAX_REPLY_BYTES: usize = 8 << 20;
/// The longest a request may wait for recording to catch up (`wait_seq`).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(5);

/// A request, as parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// The proxy's numbering and store.
    Info,
    /// The last record of every topic under some prefixes.
    Latest(LatestQuery),
    /// Records by sequence and time range.
    History {
        query: HistoryQuery,
        /// Answer only once recording has handled every message up to this number.
        wait_seq: Option<u64>,
    },
}

impl Request {
    /// The prefixes it reads (for the access check); `[]` means every topic.
    pub(crate) fn prefixes(&self) -> &[Bytes] {
        match self {
            Request::Info => &[],
            Request::Latest(q) => &q.prefixes,
            Request::History { query, .. } => &query.prefixes,
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
            "op" | "order" | "after_topic" | "after_topic_hex" => v.is_string(),
            "prefixes" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            _ => true,
        };
        if !ok {
            let want = match key.as_str() {
                "op" | "order" | "after_topic" | "after_topic_hex" => "a string",
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
                &["prefixes", "limit", "after_topic", "after_topic_hex"],
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
            Ok(Request::Latest(LatestQuery {
                prefixes: fields.prefixes()?,
                after_topic,
                limit: fields.limit()?,
            }))
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
            })
        }
        other => Err(QueryError::new(
            "unknown_op",
            format!("operation {other:?}: `info`, `latest` or `history`"),
        )),
    }
}

/// How many of `records` fit in one reply: all of them, or fewer once their bytes pass
/// [`MAX_REPLY_BYTES`] (always at least one).
pub(crate) fn fitting(records: &[Record]) -> usize {
    let mut bytes = 0;
    for (i, r) in records.iter().enumerate() {
        bytes += r.topic.len() + r.payload.len();
        if bytes > MAX_REPLY_BYTES && i > 0 {
            return i;
        }
    }
    records.len()
}

fn prefix_values(prefixes: &[Bytes]) -> Vec<Value> {
    prefixes
        .iter()
        .map(|p| Value::String(String::from_utf8_lossy(p).into_owned()))
        .collect()
}

/// The request that continues a latest query after `last` (a topic).
pub(crate) fn latest_next(query: &LatestQuery, last: &[u8]) -> Value {
    let mut next = Map::new();
    next.insert("v".into(), VERSION.into());
    next.insert("op".into(), "latest".into());
    next.insert("prefixes".into(), prefix_values(&query.prefixes).into());
    next.insert("limit".into(), query.limit.into());
    match std::str::from_utf8(last) {
        Ok(text) => next.insert("after_topic".into(), text.into()),
        Err(_) => next.insert("after_topic_hex".into(), to_hex(last).into()),
    };
    Value::Object(next)
}

/// The request that continues a history query after the record numbered `last`; `None`
/// when nothing can follow.
pub(crate) fn history_next(
    query: &HistoryQuery,
    last: u64,
    wait_seq: Option<u64>,
) -> Option<Value> {
    let mut q = query.clone();
    match q.order {
        Order::OldestFirst => q.min_seq = Some(last.checked_add(1)?),
        Order::NewestFirst => q.max_seq = Some(last.checked_sub(1)?),
    }
    Some(history_request(&q, wait_seq))
}

/// A history request, as JSON.
pub(crate) fn history_request(q: &HistoryQuery, wait_seq: Option<u64>) -> Value {
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
    Value::Object(next)
}

/// The header of a page of records: their numbers and times, in the order of the frames
/// that follow it, plus `extra` (paging, completeness).
///
/// Written directly as JSON text: a page of 10,000 records has 20,000 numbers, and building
/// them as `serde_json::Value`s first cost more than the rest of the reply.
pub(crate) fn page_header(
    op: &str,
    epoch: u64,
    records: &[Record],
    extra: Map<String, Value>,
) -> String {
    use std::fmt::Write;
    let mut h = String::with_capacity(128 + records.len() * 32);
    let _ = write!(
        h,
        r#"{{"v":{VERSION},"ok":true,"op":{},"epoch":"{}","count":{}"#,
        Value::from(op),
        xbus_zmtp::extensions::epoch_text(epoch),
        records.len()
    );
    for (name, field) in [("seq", 0), ("time_us", 1)] {
        let _ = write!(h, r#","{name}":["#);
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                h.push(',');
            }
            let _ = write!(h, "{}", if field == 0 { r.seq } else { r.time_us });
        }
        h.push(']');
    }
    for (key, value) in extra {
        let _ = write!(h, ",{}:{value}", Value::from(key));
    }
    h.push('}');
    h
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
        let Request::Latest(q) =
            parse(br#"{"v":1,"op":"latest","prefixes":["A."],"limit":5,"after_topic":"A.x."}"#)
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(q.prefixes, [Bytes::from("A.")]);
        assert_eq!((q.limit, q.after_topic), (5, Some(Bytes::from("A.x."))));
        let Request::History { query, wait_seq } = parse(
            br#"{"v":1,"op":"history","after_seq":9,"max_seq":20,"order":"newest","wait_seq":20}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!((query.min_seq, query.max_seq), (Some(10), Some(20)));
        assert_eq!(
            (query.order, query.limit, wait_seq),
            (Order::NewestFirst, DEFAULT_LIMIT, Some(20))
        );
        assert!(query.prefixes.is_empty());
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
        let next = history_next(&q, 14, None).unwrap();
        let Request::History { query, .. } = parse(next.to_string().as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!((query.min_seq, query.limit), (Some(15), 10));
        let q = q.order(Order::NewestFirst);
        let Request::History { query, .. } = parse(
            history_next(&q, 14, Some(3))
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
        assert!(history_next(&q, 0, None).is_none());

        let l = LatestQuery::new(["A."]);
        for last in [&b"A.b."[..], b"A.\xff."] {
            let Request::Latest(next) =
                parse(latest_next(&l, last).to_string().as_bytes()).unwrap()
            else {
                panic!()
            };
            assert_eq!(next.after_topic.as_deref(), Some(last));
        }
    }

    #[test]
    fn page_headers_are_json_with_numbers_in_frame_order() {
        let records = [Record::new(7, 70, "A.", "x"), Record::new(9, 90, "B.", "y")];
        let mut extra = Map::new();
        extra.insert("more".into(), false.into());
        extra.insert("next".into(), Value::Null);
        let text = page_header("history", 255, &records, extra);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({"v": 1, "ok": true, "op": "history", "epoch": "00000000000000ff", "count": 2,
                   "seq": [7, 9], "time_us": [70, 90], "more": false, "next": null})
        );
        let v: Value = serde_json::from_str(&page_header("latest", 1, &[], Map::new())).unwrap();
        assert_eq!(v["seq"], json!([]));
    }

    #[test]
    fn pages_stop_at_the_byte_budget() {
        let big = Record::new(1, 1, "A.", vec![0u8; MAX_REPLY_BYTES / 2 + 1]);
        assert_eq!(fitting(&[big.clone(), big.clone(), big.clone()]), 1);
        let huge = Record::new(1, 1, "A.", vec![0u8; MAX_REPLY_BYTES + 1]);
        assert_eq!(fitting(&[huge]), 1);
        assert_eq!(fitting(&[]), 0);
    }
}
