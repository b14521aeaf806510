//! The JSON admin API under `/api/v1/`: `stats`, `connections`, `subscriptions`, `topics`,
//! and, when the proxy records, `latest` and `history` (the query endpoint's, over HTTP).
//! Each request takes one snapshot (the router's read lock once, never per message); bad
//! query parameters are answered with 400 and a message saying what is accepted.

use axum::extract::{RawQuery, State};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, HttpState, MAX_PAGE_LIMIT};
use crate::connections::ConnectionInfo;

/// `GET /api/v1/stats`: the counters (like NATS's `/varz`), uptime, version, epoch.
pub(crate) async fn stats(State(st): State<HttpState>) -> impl IntoResponse {
    let ctx = &st.ctx;
    let mut snap = ctx.stats.snapshot();
    ctx.router.fill_snapshot(&mut snap);
    let topics = ctx.topics.snapshot();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "epoch": xbus_zmtp::extensions::epoch_text(ctx.epoch),
        "uptime_s": ctx.started.elapsed().as_secs_f64(),
        "time_us": crate::system::now_us(),
        "frontend": ctx.config.frontend.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "backend": ctx.config.backend.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "recording": ctx.recorder.is_some(),
        "record": ctx.config.record,
        "subscribe_all": ctx.config.subscribe_all,
        "topics": topics.topics.len(),
        "topics_overflow_messages": topics.overflow_messages,
        "stream_clients": st.stream_clients(),
        "stats": snap,
    }))
}

/// Query of `/api/v1/connections` and `/api/v1/topics`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    sort: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
    /// Ignored here (the bearer token, when given in the query).
    #[allow(dead_code)]
    token: Option<String>,
}

fn page(query: Option<&str>) -> Result<Page, ApiError> {
    let q = query.unwrap_or("");
    let p: Page = serde_urlencoded::from_str(q).map_err(|e| {
        ApiError::bad_request(format!(
            "bad query {q:?}: {e} (accepted: sort, limit, offset)"
        ))
    })?;
    if p.limit.is_some_and(|l| l == 0 || l > MAX_PAGE_LIMIT) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE_LIMIT}"
        )));
    }
    Ok(p)
}

/// Sort keys of `/api/v1/connections`.
const CONNECTION_SORTS: &[&str] = &[
    "id",
    "since",
    "messages_in",
    "bytes_in",
    "messages_out",
    "bytes_out",
    "queued",
    "dropped",
    "subscriptions",
];

/// `GET /api/v1/connections?sort=KEY&limit=N&offset=N`: every peer on both sides (NATS's
/// `/connz`). Sorting by a count is busiest first; by `id` or `since`, oldest first.
pub(crate) async fn connections(
    State(st): State<HttpState>,
    RawQuery(q): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let p = page(q.as_deref())?;
    let ctx = &st.ctx;
    let mut list = ctx.connections.list(&ctx.router.subscription_counts());
    let sort = p.sort.as_deref().unwrap_or("id");
    let key: fn(&ConnectionInfo) -> u64 = match sort {
        "id" => |c| c.id,
        "since" => |c| c.connected_since_us,
        "messages_in" => |c| c.messages_in,
        "bytes_in" => |c| c.bytes_in,
        "messages_out" => |c| c.messages_out,
        "bytes_out" => |c| c.bytes_out,
        "queued" => |c| c.queued_messages,
        "dropped" => |c| c.dropped_messages,
        "subscriptions" => |c| c.subscriptions,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown sort {other:?} (accepted: {})",
                CONNECTION_SORTS.join(", ")
            )))
        }
    };
    if matches!(sort, "id" | "since") {
        list.sort_by_key(|c| (key(c), c.id));
    } else {
        list.sort_by_key(|c| (std::cmp::Reverse(key(c)), c.id));
    }
    let total = list.len();
    let offset = p.offset.unwrap_or(0);
    let limit = p.limit.unwrap_or(1000);
    let rows: Vec<ConnectionInfo> = list.into_iter().skip(offset).take(limit).collect();
    Ok(Json(json!({
        "total": total,
        "offset": offset,
        "limit": limit,
        "sort": sort,
        "connections": rows,
    })))
}

/// `GET /api/v1/subscriptions`: every prefix held, with how many subscribers hold it, and the
/// set forwarded upstream to publishers.
pub(crate) async fn subscriptions(State(st): State<HttpState>) -> impl IntoResponse {
    let (held, upstream) = st.ctx.router.subscriptions();
    let held: Vec<_> = held
        .into_iter()
        .map(|(prefix, subscribers)| json!({ "prefix": prefix, "subscribers": subscribers }))
        .collect();
    Json(json!({
        "subscriptions": held,
        "upstream": upstream,
        "subscribe_all": st.ctx.config.subscribe_all,
    }))
}

/// `GET /api/v1/topics?sort=rate|messages|topic|last_seen&limit=N&offset=N`: the topic
/// registry.
pub(crate) async fn topics(
    State(st): State<HttpState>,
    RawQuery(q): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let p = page(q.as_deref())?;
    let mut snap = st.ctx.topics.snapshot();
    let sort = p.sort.as_deref().unwrap_or("rate");
    match sort {
        "rate" => {}
        "messages" => snap
            .topics
            .sort_by(|a, b| b.messages.cmp(&a.messages).then(a.topic.cmp(&b.topic))),
        "topic" => snap.topics.sort_by(|a, b| a.topic.cmp(&b.topic)),
        "last_seen" => snap.topics.sort_by(|a, b| {
            b.last_seen_us
                .cmp(&a.last_seen_us)
                .then(a.topic.cmp(&b.topic))
        }),
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown sort {other:?} (accepted: rate, messages, topic, last_seen)"
            )))
        }
    }
    let total = snap.topics.len();
    let offset = p.offset.unwrap_or(0);
    let limit = p.limit.unwrap_or(1000);
    let rows: Vec<_> = snap.topics.into_iter().skip(offset).take(limit).collect();
    Ok(Json(json!({
        "total": total,
        "offset": offset,
        "limit": limit,
        "sort": sort,
        "overflow_messages": snap.overflow_messages,
        "max_topics": snap.max_topics,
        "topics": rows,
    })))
}

/// `GET /api/v1/latest?prefix=P&limit=N&after_topic=T` and `GET /api/v1/history?prefix=P&…`:
/// the query endpoint's `latest` and `history` (docs/query.md) over HTTP, with the same
/// parameters (`prefix` repeatable, for `prefixes`), the same semantics and limits, and the
/// events inline: `{"seq", "time_us", "topic", "payload"}` with the payload as JSON (as the
/// event stream shows it). `next`, when there is more, holds the parameters of the next page.
pub(crate) async fn latest(
    State(st): State<HttpState>,
    RawQuery(query): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    stored(&st, "latest", query.as_deref()).await
}

/// See [`latest`].
pub(crate) async fn history(
    State(st): State<HttpState>,
    RawQuery(query): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    stored(&st, "history", query.as_deref()).await
}

/// Parameters taken as numbers and as strings by `latest` and `history`.
const NUMBER_PARAMS: &[&str] = &[
    "limit",
    "after_seq",
    "min_seq",
    "max_seq",
    "since_us",
    "until_us",
    "wait_seq",
];
const TEXT_PARAMS: &[&str] = &["after_topic", "after_topic_hex", "order"];

async fn stored(
    st: &HttpState,
    op: &str,
    query: Option<&str>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("bad query: {e}")))?;
    let mut request = serde_json::Map::new();
    request.insert("v".into(), 1.into());
    request.insert("op".into(), op.into());
    let mut prefixes = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "prefix" => prefixes.push(serde_json::Value::from(value)),
            "token" => {}
            k if NUMBER_PARAMS.contains(&k) => {
                let n: u64 = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("{k}={value:?}: a whole number is expected"))
                })?;
                request.insert(key, n.into());
            }
            k if TEXT_PARAMS.contains(&k) => {
                request.insert(key, value.into());
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?} (accepted: prefix, {}, {})",
                    NUMBER_PARAMS.join(", "),
                    TEXT_PARAMS.join(", ")
                )))
            }
        }
    }
    if !prefixes.is_empty() {
        request.insert("prefixes".into(), prefixes.into());
    }
    let (header, records) = crate::query::run_json(&st.ctx, &serde_json::Value::Object(request))
        .await
        .map_err(|e| match e.code {
            "no_store" => ApiError::not_found(e.message),
            "store" | "shutting_down" => ApiError::unavailable(e.message),
            _ => ApiError::bad_request(e.message),
        })?;
    let mut reply: serde_json::Value = serde_json::from_str(&header)
        .map_err(|e| ApiError::unavailable(format!("the reply could not be read: {e}")))?;
    if let Some(obj) = reply.as_object_mut() {
        obj.remove("seq");
        obj.remove("time_us");
        obj.remove("v");
        obj.remove("ok");
        let events: Vec<serde_json::Value> = records
            .iter()
            .map(|r| {
                json!({
                    "seq": r.seq,
                    "time_us": r.time_us,
                    "topic": String::from_utf8_lossy(&r.topic),
                    "payload": super::stream::payload_json(&r.payload),
                })
            })
            .collect();
        obj.insert("events".into(), events.into());
        // the next page as this API's parameters
        if let Some(next) = obj
            .get_mut("next")
            .and_then(serde_json::Value::as_object_mut)
        {
            next.remove("v");
            next.remove("op");
            if let Some(p) = next.remove("prefixes") {
                next.insert("prefix".into(), p);
            }
        }
    }
    Ok(Json(reply))
}
