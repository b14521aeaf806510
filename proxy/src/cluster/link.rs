//! The NATS client and the link's two tasks: one publishes local publishers' messages, the
//! other keeps the NATS subscriptions equal to the local interest, follows the connection,
//! and routes what arrives to this proxy's subscribers.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use async_nats::{Client, ConnectOptions, Event, Subscriber};
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio_stream::{StreamExt, StreamMap};
use tracing::{debug, info, warn};

use super::cover::Cover;
use super::envelope::{self, Rest, Stamp};
use super::order::Reorder;
use super::outbound::Batch;
use super::{ClusterShared, CONNECTED, DISCONNECTED};
use crate::config::WELCOME_PREFIX;
use crate::context::Ctx;
use crate::router::RouteScratch;
use crate::scan::{self, Span};
use crate::{Config, Error};

/// Messages the NATS client holds for one subscription before it drops (and reports) them.
const SUBSCRIPTION_CAPACITY: usize = 65_536;
/// Passes over the subscriptions between looks at the connection and the interest.
const PASSES_PER_TURN: usize = 64;

/// Connects to NATS (in the background: the proxy starts whether NATS is up or not) and
/// starts the link's tasks, when the proxy is in a cluster.
///
/// # Errors
/// [`Error::Config`] when a credentials file cannot be read.
pub(crate) async fn spawn(ctx: &Arc<Ctx>) -> Result<(), Error> {
    let Some(shared) = ctx.cluster.clone() else {
        return Ok(());
    };
    let (events_tx, events) = mpsc::unbounded_channel();
    let options = connect_options(&ctx.config)
        .await?
        .event_callback(move |event| {
            let tx = events_tx.clone();
            async move {
                let _ = tx.send(event);
            }
        });
    let servers: Vec<async_nats::ServerAddr> = ctx
        .config
        .cluster
        .iter()
        .filter_map(|url| url.parse().ok())
        .collect();
    let client = options
        .connect(servers)
        .await
        .map_err(|e| Error::Config(format!("cluster: {e}")))?;
    info!(servers = ?ctx.config.cluster, subject_prefix = shared.prefix.as_str(),
        "joining the cluster through NATS at {}", ctx.config.cluster.join(", "));
    // the tasks wait on the NATS client (a publish while its queue is full, a flush): they
    // are dropped where they wait when the proxy stops
    let stop = ctx.hard_stop.clone();
    let publishing = publish_local(ctx.clone(), shared.clone(), client.clone());
    ctx.tracker.spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = publishing => {}
        }
    });
    let stop = ctx.shutdown.clone();
    let receiving = receive(ctx.clone(), shared, client, events);
    ctx.tracker.spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = receiving => {}
        }
    });
    Ok(())
}

/// The NATS client's options from the configuration.
pub(crate) async fn connect_options(config: &Config) -> Result<ConnectOptions, Error> {
    let read_line = |path: &std::path::Path, what: &str| -> Result<String, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read the {what} file {}: {e}",
                path.display()
            ))
        })?;
        let line = text.lines().next().unwrap_or("").trim().to_owned();
        if line.is_empty() {
            return Err(Error::Config(format!(
                "the {what} file {} is empty",
                path.display()
            )));
        }
        Ok(line)
    };
    let mut options = ConnectOptions::new()
        .name(format!("xbus-proxy {}", std::process::id()))
        // never hear our own publications back
        .no_echo()
        // start (and keep retrying) whether NATS is up or not: local delivery goes on
        .retry_on_initial_connect()
        .max_reconnects(None)
        .subscription_capacity(SUBSCRIPTION_CAPACITY);
    if let (Some(user), Some(file)) = (&config.cluster_user, &config.cluster_password_file) {
        options = options.user_and_password(user.clone(), read_line(file, "NATS password")?);
    }
    if let Some(file) = &config.cluster_token_file {
        options = options.token(read_line(file, "NATS token")?);
    }
    if let Some(file) = &config.cluster_creds_file {
        options = options.credentials_file(file).await.map_err(|e| {
            Error::Config(format!(
                "cannot read the NATS credentials file {}: {e}",
                file.display()
            ))
        })?;
    }
    if let Some(file) = &config.cluster_tls_ca_file {
        options = options.add_root_certificates(file.clone());
    }
    if let (Some(cert), Some(key)) = (&config.cluster_tls_cert_file, &config.cluster_tls_key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if config.cluster_tls_required {
        options = options.require_tls(true);
    }
    Ok(options)
}

/// Publishes local publishers' messages to NATS, each under its topic's subject with this
/// run's stamp, in routing order.
async fn publish_local(ctx: Arc<Ctx>, shared: Arc<ClusterShared>, client: Client) {
    let mut batches = Vec::new();
    let mut subject = String::new();
    let mut counter = 0u64;
    let lost_subject = shared.lost_subject();
    // dropped messages other proxies have been told of
    let mut told = 0u64;
    loop {
        let stopping = tokio::select! {
            _ = ctx.shutdown.cancelled() => true,
            _ = shared.outbound.notified() => false,
        };
        shared.outbound.take(&mut batches);
        for batch in batches.drain(..) {
            publish_batch(&shared, &client, &batch, &mut subject, &mut counter).await;
        }
        told = tell_dropped(&shared, &client, &lost_subject, told).await;
        if stopping {
            // what was routed before the shutdown leaves, for at most the linger
            let _ = tokio::time::timeout(ctx.config.linger, client.flush()).await;
            return;
        }
    }
}

/// Tells the other proxies (a loss notice on the loss subject) how many local messages were
/// dropped before NATS since `told`, so their subscribers learn of the gap; returns the
/// dropped count they now know of.
async fn tell_dropped(shared: &ClusterShared, client: &Client, subject: &str, told: u64) -> u64 {
    let dropped = shared.outbound.dropped.load(Relaxed);
    if dropped == told || !shared.outbound.open.load(Relaxed) {
        return told;
    }
    let notice = envelope::encode_lost(shared.origin, dropped - told);
    match client.publish(subject.to_owned(), notice).await {
        Ok(()) => dropped,
        Err(e) => {
            debug!(error = %e, "telling NATS of dropped messages failed: told again later");
            told
        }
    }
}

async fn publish_batch(
    shared: &ClusterShared,
    client: &Client,
    batch: &Batch,
    subject: &mut String,
    counter: &mut u64,
) {
    let c = &shared.counters;
    for s in &batch.spans {
        let topic = &batch.chunk[s.topic_start..s.topic_end];
        if topic.starts_with(WELCOME_PREFIX) {
            // the proxy's own namespace stays on the proxy
            continue;
        }
        if let Err(e) = shared.prefix.encode(topic, subject) {
            let n = c.refused_out.fetch_add(1, Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(error = %e, refused = n, "a message was not published to NATS: {e}");
            }
            continue;
        }
        *counter += 1;
        let stamp = Stamp {
            origin: shared.origin,
            counter: *counter,
        };
        let body = envelope::encode(stamp, &batch.chunk[s.topic_end..s.end]);
        let bytes = (subject.len() + body.len()) as u64;
        match client.publish(subject.clone(), body).await {
            Ok(()) => {
                c.messages_out.fetch_add(1, Relaxed);
                c.bytes_out.fetch_add(bytes, Relaxed);
            }
            Err(e) if e.kind() == async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
                let n = c.refused_out.fetch_add(1, Relaxed) + 1;
                if n.is_power_of_two() {
                    warn!(
                        bytes,
                        refused = n,
                        "a message larger than the NATS server's max_payload was not published"
                    );
                }
            }
            Err(e) => {
                shared.outbound.dropped.fetch_add(1, Relaxed);
                debug!(error = %e, "publishing to NATS failed");
            }
        }
    }
}

/// An event from NATS, decoded, waiting for its turn.
struct Arrived {
    topic: Vec<u8>,
    rest: Rest,
    bytes: usize,
}

/// The receiving side's state.
struct Receiver {
    ctx: Arc<Ctx>,
    shared: Arc<ClusterShared>,
    client: Client,
    cover: Cover,
    /// The local prefixes the cover holds.
    held: BTreeSet<Bytes>,
    subs: StreamMap<u64, Subscriber>,
    /// Each active filter's key in `subs`.
    keys: HashMap<String, u64>,
    next_key: u64,
    reorder: Reorder<Arrived>,
    released: Vec<(Stamp, Arrived)>,
    scratch: RouteScratch,
    /// Where other proxies' loss notices arrive.
    lost_subject: String,
}

/// The key of the loss notices' subscription in `Receiver::subs` (the interest's count up
/// from 0).
const LOSS_NOTICES: u64 = u64::MAX;

/// Keeps the NATS subscriptions equal to the local interest, follows the connection, and
/// routes what arrives.
async fn receive(
    ctx: Arc<Ctx>,
    shared: Arc<ClusterShared>,
    client: Client,
    mut events: mpsc::UnboundedReceiver<Event>,
) {
    let shared_lost_subject = shared.lost_subject();
    let mut r = Receiver {
        cover: Cover::new(shared.prefix.clone()),
        ctx,
        shared,
        client,
        held: BTreeSet::new(),
        subs: StreamMap::new(),
        keys: HashMap::new(),
        next_key: 0,
        reorder: Reorder::default(),
        released: Vec::new(),
        scratch: RouteScratch::default(),
        lost_subject: shared_lost_subject,
    };
    match r.client.subscribe(r.lost_subject.clone()).await {
        Ok(sub) => {
            r.subs.insert(LOSS_NOTICES, sub);
        }
        Err(e) => warn!(error = %e, "cannot subscribe to other proxies' loss notices: {e}"),
    }
    r.follow_interest().await;
    loop {
        tokio::select! {
            biased;
            _ = r.ctx.shutdown.cancelled() => return,
            Some(event) = events.recv() => r.event(event).await,
            _ = r.shared.interest.notified() => r.follow_interest().await,
            Some((_, msg)) = r.subs.next(), if !r.subs.is_empty() => {
                r.take(msg);
                r.drain().await;
            }
            _ = std::future::ready(()), if !r.reorder.is_empty() => r.drain().await,
        }
    }
}

impl Receiver {
    /// The connection changed.
    async fn event(&mut self, event: Event) {
        let shared = &self.shared;
        match event {
            Event::Connected => {
                let info = self.client.server_info();
                let server = format!("{}:{}", info.host, info.port);
                info!(server = %server, name = %info.server_name, "cluster link connected to NATS at {server}");
                *shared.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(server);
                let was = shared.state.swap(CONNECTED, Relaxed);
                shared.outbound.open.store(true, Relaxed);
                // what was dropped while the link was down is told to the other proxies
                shared.outbound.wake();
                if was == DISCONNECTED {
                    // what other proxies sent while the link was down never came: say so to
                    // every subscriber that may have wanted it
                    self.ctx.router.report_cluster_loss(0);
                }
                // the subscriptions are in place (the client sends them again on connecting)
                if self.client.flush().await.is_ok() {
                    shared.subscribed.store(true, Relaxed);
                }
            }
            Event::Disconnected => {
                shared.state.store(DISCONNECTED, Relaxed);
                shared.outbound.open.store(false, Relaxed);
                shared.outbound.discard();
                shared.counters.disconnects.fetch_add(1, Relaxed);
                warn!("cluster link lost its NATS server: reconnecting; until then, local publishers' \
                       events do not reach other proxies, nor theirs this one (counted in the cluster stats)");
            }
            Event::SlowConsumer(_) => {
                self.ctx.router.report_cluster_loss(1);
                let n = shared.counters.dropped_in.fetch_add(1, Relaxed) + 1;
                if n.is_power_of_two() {
                    warn!(dropped_in = n, "the NATS client dropped events for this proxy: it falls behind what arrives");
                }
            }
            Event::LameDuckMode => {
                info!(
                    "the NATS server is going away (lame duck mode): the link will move to another"
                )
            }
            Event::ServerError(e) => warn!(error = %e, "NATS server error: {e}"),
            Event::ClientError(e) => warn!(error = %e, "NATS client error: {e}"),
            Event::Closed => warn!("the NATS connection is closed"),
            Event::Draining => debug!("the NATS connection is draining"),
        }
    }

    /// Makes the NATS subscriptions cover what the router's forwarding set holds now (less
    /// the proxy's own `$xbus.` namespace).
    async fn follow_interest(&mut self) {
        let want: BTreeSet<Bytes> = self
            .ctx
            .router
            .interest()
            .into_iter()
            .filter(|p| !p.starts_with(WELCOME_PREFIX))
            .collect();
        let before: BTreeSet<String> = self.cover.active().into_iter().collect();
        for p in want.difference(&self.held) {
            self.cover.add(p);
        }
        for p in self.held.difference(&want) {
            self.cover.remove(p);
        }
        self.held = want;
        let after: BTreeSet<String> = self.cover.active().into_iter().collect();
        let mut added = false;
        for filter in after.difference(&before) {
            match self.client.subscribe(filter.clone()).await {
                Ok(sub) => {
                    self.next_key += 1;
                    self.subs.insert(self.next_key, sub);
                    self.keys.insert(filter.clone(), self.next_key);
                    added = true;
                }
                Err(e) => warn!(filter = %filter, error = %e, "cannot subscribe in NATS"),
            }
        }
        let gone: Vec<String> = before.difference(&after).cloned().collect();
        if added && !gone.is_empty() {
            // a wider subscription replaces narrower ones: once the server has it, the old
            // ones can go without losing what was on its way (what comes twice meanwhile is
            // dropped as a duplicate)
            let _ = self.client.flush().await;
        }
        for filter in gone {
            if let Some(key) = self.keys.remove(&filter) {
                if let Some((_, sub)) = self.subs.iter_mut().find(|(k, _)| *k == key) {
                    // what it holds is still read; the stream then ends
                    let _ = sub.unsubscribe().await;
                }
            }
        }
        self.shared
            .counters
            .subscriptions
            .store(self.keys.len() as u64, Relaxed);
        // not exact: NATS may deliver topics no local prefix wants (a raw byte prefix); the
        // router's own match drops them (counted unrouted)
        debug!(filters = ?self.keys.keys().collect::<Vec<_>>(), exact = !self.cover.needs_check(), "cluster interest");
    }

    /// Holds a message just read (or counts it malformed).
    fn take(&mut self, msg: async_nats::Message) {
        if msg.subject.as_str() == self.lost_subject {
            return self.take_loss_notice(&msg);
        }
        let mut topic = Vec::new();
        let decoded = self
            .shared
            .prefix
            .decode(msg.subject.as_str(), &mut topic)
            .ok()
            .and_then(|()| envelope::decode(&msg.payload));
        match decoded {
            Some(env) if env.stamp.origin != self.shared.origin => {
                let bytes = msg.subject.len() + msg.payload.len();
                self.reorder.hold(
                    env.stamp,
                    Arrived {
                        topic,
                        rest: env.rest,
                        bytes,
                    },
                );
            }
            // our own (no echo should make this impossible)
            Some(_) => {}
            None => {
                let n = self.shared.counters.malformed_in.fetch_add(1, Relaxed) + 1;
                if n.is_power_of_two() {
                    warn!(subject = %msg.subject, malformed = n,
                        "a NATS message under the cluster's subject prefix is not a proxy's event: ignored");
                }
            }
        }
    }

    /// Another proxy dropped messages before NATS: this proxy's subscribers may have wanted
    /// them.
    fn take_loss_notice(&mut self, msg: &async_nats::Message) {
        match envelope::decode_lost(&msg.payload) {
            Some((origin, count)) if origin != self.shared.origin && count > 0 => {
                self.ctx.router.report_cluster_loss(count);
                let before = self
                    .shared
                    .counters
                    .lost_elsewhere
                    .fetch_add(count, Relaxed);
                // logged when the total passes a power of two (a notice's count is another
                // client's word: never trusted not to overflow)
                let total = before.saturating_add(count);
                if before == 0 || total.ilog2() > before.ilog2() {
                    warn!(
                        count,
                        lost_elsewhere = total,
                        "another proxy dropped {count} messages before NATS (its link was down or behind); subscribers were told"
                    );
                }
            }
            Some(_) => {}
            None => {
                self.shared.counters.malformed_in.fetch_add(1, Relaxed);
            }
        }
    }

    /// Passes over every subscription until what was read can be released in order (or the
    /// turn is over), routing what is released.
    async fn drain(&mut self) {
        for _ in 0..PASSES_PER_TURN {
            self.reorder.begin_pass();
            while let Some(Some((_, msg))) = self.subs.next().now_or_never() {
                self.take(msg);
            }
            self.reorder.end_pass(&mut self.released);
            self.route_released();
            if self.reorder.is_empty() {
                break;
            }
        }
        tokio::task::yield_now().await;
    }

    /// Routes the released events as one chunk, as a publisher's read would be.
    fn route_released(&mut self) {
        if self.released.is_empty() {
            return;
        }
        let limits = self.ctx.publisher_limits();
        let mut buf = BytesMut::new();
        let mut spans: Vec<Span> = Vec::with_capacity(self.released.len());
        let (mut routed, mut bytes) = (0u64, 0u64);
        for (_, a) in self.released.drain(..) {
            let start = buf.len();
            let ok = match &a.rest {
                Rest::Payload(p) => {
                    (a.topic.len() + p.len()) as u64 <= limits.max_message_size && {
                        xbus_zmtp::encode_frame(&mut buf, &a.topic, true);
                        xbus_zmtp::encode_frame(&mut buf, p, false);
                        true
                    }
                }
                Rest::Frames(f) => {
                    xbus_zmtp::encode_frame(&mut buf, &a.topic, !f.is_empty());
                    buf.extend_from_slice(f);
                    let mut one = Vec::new();
                    let (end, _) = scan::scan(&buf[start..], limits, &mut one);
                    one.len() == 1 && end == buf.len() - start
                }
            };
            if !ok {
                buf.truncate(start);
                self.shared.counters.malformed_in.fetch_add(1, Relaxed);
                continue;
            }
            let topic_start = start + xbus_zmtp::frame::header_len(a.topic.len());
            spans.push(Span {
                start,
                end: buf.len(),
                topic_start,
                topic_end: topic_start + a.topic.len(),
            });
            routed += 1;
            bytes += a.bytes as u64;
        }
        let dups = self.reorder.duplicates;
        self.shared.counters.duplicates_in.store(dups, Relaxed);
        if spans.is_empty() {
            return;
        }
        let chunk = buf.freeze();
        let seq = self
            .ctx
            .router
            .route_from_cluster(&chunk, &spans, &mut self.scratch);
        self.ctx
            .topics
            .observe(&chunk, &spans, seq, crate::system::now_us());
        let c = &self.shared.counters;
        c.messages_in.fetch_add(routed, Relaxed);
        c.bytes_in.fetch_add(bytes, Relaxed);
    }
}
