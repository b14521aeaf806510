//! The proxy's HTTP face (`--http ADDR`, default `127.0.0.1:5180`): Prometheus metrics,
//! health and readiness, a JSON admin API, a Server-Sent Events stream of the bus, and a live
//! page. Everything lives in this folder:
//!
//! - `mod.rs`: the server (axum on the proxy's own runtime), routes, errors, the optional
//!   bearer token, readiness.
//! - [`metrics`]: `/metrics`, built from a [`crate::StatsSnapshot`] at scrape time.
//! - `api`: `/api/v1/stats`, `connections`, `subscriptions`, `topics`, and the store's
//!   `latest` and `history` (the query endpoint's, over HTTP).
//! - `stream`: `/api/v1/stream`, the SSE stream (an internal subscriber on the router).
//! - `page`: the live page at `/`, its assets embedded in the binary.
//!
//! The HTTP side never slows routing: it reads counters and snapshots (the router's read lock
//! once per request, never per message), and an event-stream client is a subscriber like any
//! other, with its own bounded queue. Every resource an HTTP client can make the proxy hold is
//! bounded: [`MAX_STREAM_CLIENTS`] event streams, [`MAX_STREAM_PREFIXES`] prefixes each,
//! [`STREAM_QUEUE_MESSAGES`]/[`STREAM_QUEUE_BYTES`] queued per stream, [`MAX_PAGE_LIMIT`] rows per
//! API page, and the topic registry's [`crate::topics::MAX_TOPICS`].

pub mod metrics;

mod api;
mod page;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::context::Ctx;
use crate::Error;

/// Most event-stream (`/api/v1/stream`) clients at once; more are refused with 503.
pub const MAX_STREAM_CLIENTS: usize = 64;
/// Most `prefix` parameters one event stream may give.
pub const MAX_STREAM_PREFIXES: usize = 16;
/// An event stream's queue limit, in messages; past it its events are dropped, and the client
/// is told with an `event: gap`.
pub const STREAM_QUEUE_MESSAGES: usize = 10_000;
/// An event stream's queue limit, in bytes.
pub const STREAM_QUEUE_BYTES: usize = 16 << 20;
/// Most rows one `/api/v1/connections` or `/api/v1/topics` page returns (`limit`).
pub const MAX_PAGE_LIMIT: usize = 10_000;

/// What every handler shares.
#[derive(Clone, Debug)]
pub(crate) struct HttpState {
    pub(crate) ctx: Arc<Ctx>,
    /// Event-stream slots ([`MAX_STREAM_CLIENTS`]).
    pub(crate) streams: Arc<Semaphore>,
    /// The bearer token `/api/v1/` requires, if any.
    token: Option<Arc<str>>,
}

impl HttpState {
    /// Event streams open now.
    pub(crate) fn stream_clients(&self) -> usize {
        MAX_STREAM_CLIENTS - self.streams.available_permits()
    }
}

/// An API error: a status and a message, sent as `{"error": "..."}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
        }
    }

    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// Reads the token file: its first line, trimmed, which must not be empty.
pub(crate) fn read_token(path: &std::path::Path) -> Result<Arc<str>, Error> {
    let bad = |reason: String| Error::HttpToken {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.len() < 16 {
        return Err(bad(
            "the token must be at least 16 characters on the file's first line".into(),
        ));
    }
    Ok(token.into())
}

/// Binds the HTTP address.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::HttpBind { addr, source })
}

/// Serves HTTP on `listener` until the proxy shuts down (open event streams end then).
pub(crate) fn spawn(ctx: Arc<Ctx>, listener: TcpListener, token: Option<Arc<str>>) {
    let state = HttpState {
        ctx: ctx.clone(),
        streams: Arc::new(Semaphore::new(MAX_STREAM_CLIENTS)),
        token,
    };
    let app = routes(state);
    let (shutdown, hard_stop) = (ctx.shutdown.clone(), ctx.hard_stop.clone());
    ctx.tracker.spawn(async move {
        let serve = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.cancelled_owned());
        tokio::select! {
            r = serve => if let Err(e) = r {
                tracing::error!(error = %e, "HTTP server failed");
            },
            _ = hard_stop.cancelled() => {}
        }
    });
}

fn routes(state: HttpState) -> axum::Router {
    let api = axum::Router::new()
        .route("/stats", get(api::stats))
        .route("/connections", get(api::connections))
        .route("/subscriptions", get(api::subscriptions))
        .route("/topics", get(api::topics))
        .route("/latest", get(api::latest))
        .route("/history", get(api::history))
        .route("/stream", get(stream::stream))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    axum::Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/style.css", get(page::style))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .nest("/api/v1", api)
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint (see docs/http.md: /metrics, /healthz, /readyz, /api/v1/stats, \
         /api/v1/connections, /api/v1/subscriptions, /api/v1/topics, /api/v1/stream)",
    )
}

/// With a token configured: `Authorization: Bearer TOKEN`, or `token=TOKEN` in the query (for
/// `EventSource`, which cannot set headers).
async fn require_token(State(st): State<HttpState>, req: Request, next: Next) -> Response {
    let Some(token) = &st.token else {
        return next.run(req).await;
    };
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let from_query = req.uri().query().and_then(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
    });
    let ok = from_header.is_some_and(|t| same(t, token))
        || from_query.as_deref().is_some_and(|t| same(t, token));
    if ok {
        next.run(req).await
    } else {
        let mut r = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this API needs a bearer token (Authorization: Bearer TOKEN, from the proxy's \
             http_token_file)",
        )
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        r
    }
}

/// Compares in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `200 {"status":"alive"}` while the process serves HTTP.
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "alive" }))
}

/// `200` when every listener is bound and the event store (when there is one) is open; `503` with the
/// reason otherwise (including while shutting down).
async fn readyz(State(st): State<HttpState>) -> Response {
    let ctx = &st.ctx;
    let reason = if ctx.shutdown.is_cancelled() {
        Some("shutting down")
    } else if !ctx.listening.load(std::sync::atomic::Ordering::Relaxed) {
        Some("listeners not bound yet")
    } else if ctx.config.has_store() && ctx.recorder.is_none() {
        Some("the event store is not open")
    } else if ctx.recorder.as_ref().is_some_and(|r| r.closed()) {
        Some("the event store is closed")
    } else {
        ctx.cluster.as_ref().and_then(|c| c.not_ready())
    };
    // in a cluster, the link's state (an outage after start-up leaves the proxy ready: local
    // delivery goes on)
    let mut body = match reason {
        None => json!({ "status": "ready" }),
        Some(reason) => json!({ "status": "not ready", "reason": reason }),
    };
    if let Some(c) = &ctx.cluster {
        body["cluster"] = json!(c.state_name());
    }
    let status = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
