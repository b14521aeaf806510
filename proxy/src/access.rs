//! Who may do what: the access file (one entry per client public key, with `publish` and
//! `subscribe` rules on topic prefixes and an `admin` right), checked at the CURVE handshake, on
//! every subscription and on every published message, and reloaded on SIGHUP.
//!
//! A rule is a filter as `xbus sub` takes it: `NAME` or `NAME.topic` stands for the topic-frame
//! prefix `NAME.` or `NAME.topic.` (whole segments: `Temp` does not cover `Temperature.`), and
//! `>` for everything. A key's rules are compiled into a trie of segments, so checking a topic
//! costs one walk of the topic, whatever the number of rules.
//!
//! ```
//! use xbus_proxy::access::AccessTable;
//! let table = AccessTable::parse(r#"
//!     [[key]]
//!     name = "thermometer"
//!     public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
//!     publish = ["Temperature", "Humidity.lab"]
//!     subscribe = ["Command.thermometer"]
//! "#).unwrap();
//! let rights = table.rights(&"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7".parse().unwrap()).unwrap();
//! assert!(rights.publish.covers(b"Temperature.rack1."));
//! assert!(rights.publish.covers(b"Humidity.lab.x."));
//! assert!(!rights.publish.covers(b"Humidity.office."));
//! assert!(!rights.publish.covers(b"TemperatureX."));
//! assert!(!rights.subscribe.covers(b"Command."));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use xbus_zmtp::curve::CurvePublicKey;
use xbus_zmtp::Subscription;

use crate::config::WELCOME_PREFIX;
use crate::pattern::Pattern;

/// An access file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The file could not be read.
    #[error("access file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, or not the expected shape.
    #[error("access file{}: {reason}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Invalid {
        /// The file, when it came from one.
        path: Option<PathBuf>,
        /// What is wrong, with the entry it is in.
        reason: String,
    },
}

/// A set of topic-prefix rules, compiled into a trie of dot-terminated segments.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PrefixRules {
    /// `>`: everything.
    all: bool,
    root: Node,
    /// The rules as prefixes (`NAME.topic.`), for narrowing broad subscriptions.
    prefixes: Vec<Bytes>,
}

#[derive(Clone, Default, PartialEq, Eq)]
struct Node {
    /// A rule ends here: everything below is covered.
    end: bool,
    children: HashMap<Box<[u8]>, Node>,
}

impl fmt::Debug for PrefixRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.all {
            return f.write_str("[\">\"]");
        }
        f.debug_list()
            .entries(self.prefixes.iter().map(|p| String::from_utf8_lossy(p)))
            .finish()
    }
}

impl PrefixRules {
    /// Compiles rules written as filters (`NAME`, `NAME.topic`, optionally ending with `.`, or
    /// `>`).
    ///
    /// ```
    /// use xbus_proxy::access::PrefixRules;
    /// let rules = PrefixRules::new(["Status.a"]).unwrap();
    /// assert!(rules.covers(b"Status.a.") && rules.covers(b"Status.a.b."));
    /// assert!(!rules.covers(b"Status.ab.") && !rules.covers(b"Status."));
    /// assert!(PrefixRules::new([">"]).unwrap().covers(b""));
    /// assert!(PrefixRules::new([""]).is_err());
    /// ```
    pub fn new<S: AsRef<str>>(rules: impl IntoIterator<Item = S>) -> Result<PrefixRules, String> {
        let mut set = PrefixRules::default();
        for rule in rules {
            let rule = rule.as_ref();
            if rule == ">" {
                set.all = true;
                continue;
            }
            let body = rule.strip_suffix('.').unwrap_or(rule);
            if body.is_empty() {
                return Err(format!(
                    "empty rule {rule:?}: write \">\" for everything, or NAME / NAME.topic"
                ));
            }
            if body.split('.').any(|s| s.is_empty()) {
                return Err(format!("rule {rule:?} has an empty segment"));
            }
            if body.split('.').any(|s| s == "*" || s == ">") {
                return Err(format!(
                    "rule {rule:?}: wildcards are not supported in rules; list the prefixes (\">\" alone means everything)"
                ));
            }
            let mut node = &mut set.root;
            for seg in body.split('.') {
                node = node
                    .children
                    .entry(seg.as_bytes().to_vec().into_boxed_slice())
                    .or_default();
            }
            node.end = true;
            set.prefixes.push(Bytes::from(format!("{body}.")));
        }
        set.prefixes.sort();
        set.prefixes.dedup();
        Ok(set)
    }

    /// Whether every topic starting with `prefix` is covered by a rule: some rule is a prefix
    /// of it. One walk of `prefix`, whatever the number of rules.
    pub fn covers(&self, prefix: &[u8]) -> bool {
        if self.all {
            return true;
        }
        let mut node = &self.root;
        let mut rest = prefix;
        // only whole segments can reach a rule's end
        while let Some(dot) = rest.iter().position(|b| *b == b'.') {
            match node.children.get(&rest[..dot]) {
                Some(next) if next.end => return true,
                Some(next) => node = next,
                None => return false,
            }
            rest = &rest[dot + 1..];
        }
        false
    }

    /// Whether these rules allow everything.
    pub fn is_all(&self) -> bool {
        self.all
    }

    /// The subscriptions a publisher with these rules may hear for a subscription `sub`: `sub`
    /// itself when covered, else the rules that lie inside it (the subscription is broader than
    /// the rights), else none. A pattern is judged by its head.
    ///
    /// ```
    /// use xbus_proxy::access::PrefixRules;
    /// let rules = PrefixRules::new(["Temperature", "Humidity.lab"]).unwrap();
    /// assert_eq!(rules.narrow(b"Temperature.x."), vec![&b"Temperature.x."[..]]);
    /// assert_eq!(rules.narrow(b""), vec![&b"Humidity.lab."[..], &b"Temperature."[..]]);
    /// assert_eq!(rules.narrow(b"Hum"), vec![&b"Humidity.lab."[..]]);
    /// assert!(rules.narrow(b"Status.").is_empty());
    /// ```
    pub fn narrow(&self, sub: &[u8]) -> Vec<Bytes> {
        let literal = Pattern::parse(sub)
            .and_then(Result::ok)
            .map(|p| Bytes::copy_from_slice(p.head()));
        let head: &[u8] = literal.as_deref().unwrap_or(sub);
        if self.covers(head) {
            return vec![Bytes::copy_from_slice(sub)];
        }
        self.prefixes
            .iter()
            .filter(|r| r.starts_with(head))
            .cloned()
            .collect()
    }

    /// Whether a subscriber with these rules may subscribe to `sub`: a pattern by its head, a
    /// prefix by itself. The proxy's denial notices (`$xbus.denied.`) are open to everyone, so
    /// a libzmq SUB socket can subscribe to them.
    ///
    /// ```
    /// use xbus_proxy::access::PrefixRules;
    /// let rules = PrefixRules::new(["Temperature.lab"]).unwrap();
    /// assert!(rules.allows_subscription(b"Temperature.lab.rack1."));
    /// assert!(rules.allows_subscription(b"$xbus.match.Temperature.lab.*.x."));
    /// assert!(!rules.allows_subscription(b"$xbus.match.Temperature.*.x."));
    /// assert!(!rules.allows_subscription(b"Temperature."));
    /// assert!(rules.allows_subscription(b"$xbus.denied."));
    /// ```
    pub fn allows_subscription(&self, sub: &[u8]) -> bool {
        if sub.starts_with(DENIED_PREFIX) {
            return true;
        }
        match Pattern::parse(sub) {
            Some(Ok(p)) => self.covers(p.head()),
            // an invalid pattern is the router's to refuse, with its own rule
            Some(Err(_)) => true,
            None => self.covers(sub),
        }
    }
}

/// What one key may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rights {
    /// The entry's name, for logs.
    pub name: String,
    /// Topics it may publish.
    pub publish: PrefixRules,
    /// Prefixes it may subscribe to.
    pub subscribe: PrefixRules,
    /// Whether it may use the administrative interfaces.
    pub admin: bool,
}

impl Rights {
    /// Everything: a key admitted without an access file.
    pub fn all(name: &str) -> Rights {
        let all = PrefixRules {
            all: true,
            ..PrefixRules::default()
        };
        Rights {
            name: name.to_owned(),
            publish: all.clone(),
            subscribe: all,
            admin: true,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    key: Vec<FileEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileEntry {
    name: String,
    public_key: String,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    admin: bool,
}

/// The parsed access file: the rights of every admitted key.
#[derive(Clone, Debug, Default)]
pub struct AccessTable {
    keys: HashMap<CurvePublicKey, Arc<Rights>>,
}

impl AccessTable {
    /// Reads an access file.
    pub fn load(path: &Path) -> Result<AccessTable, AccessError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccessError::Read {
            path: path.to_owned(),
            source,
        })?;
        AccessTable::parse(&text).map_err(|e| match e {
            AccessError::Invalid { reason, .. } => AccessError::Invalid {
                path: Some(path.to_owned()),
                reason,
            },
            other => other,
        })
    }

    /// Parses access-file text (TOML: `[[key]]` entries with `name`, `public-key`, `publish`,
    /// `subscribe` and `admin`). See the [module example](self).
    pub fn parse(text: &str) -> Result<AccessTable, AccessError> {
        let invalid = |reason: String| AccessError::Invalid { path: None, reason };
        let file: FileFormat = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut keys = HashMap::new();
        for entry in file.key {
            let at = |what: String| invalid(format!("entry {:?}: {what}", entry.name));
            let key: CurvePublicKey = entry
                .public_key
                .parse()
                .map_err(|e| at(format!("public-key: {e}")))?;
            let rights = Rights {
                publish: PrefixRules::new(&entry.publish)
                    .map_err(|e| at(format!("publish: {e}")))?,
                subscribe: PrefixRules::new(&entry.subscribe)
                    .map_err(|e| at(format!("subscribe: {e}")))?,
                admin: entry.admin,
                name: entry.name.clone(),
            };
            if keys.insert(key, Arc::new(rights)).is_some() {
                return Err(at(format!("key {key} is listed twice")));
            }
        }
        Ok(AccessTable { keys })
    }

    /// The rights of `key`; `None` when the key is not admitted.
    pub fn rights(&self, key: &CurvePublicKey) -> Option<Arc<Rights>> {
        self.keys.get(key).cloned()
    }

    /// How many keys it admits.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it admits no key at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One connection's rights, replaced in place when a reload changes them (for a subscriber,
/// whose connection a reload must not end: libzmq SUB sockets do not subscribe again after a
/// reconnect).
#[derive(Debug)]
pub(crate) struct RightsCell {
    current: Mutex<Arc<Rights>>,
    changed: Notify,
}

impl RightsCell {
    pub(crate) fn new(rights: Arc<Rights>) -> RightsCell {
        RightsCell {
            current: Mutex::new(rights),
            changed: Notify::new(),
        }
    }

    /// The rights in force.
    pub(crate) fn get(&self) -> Arc<Rights> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, rights: Arc<Rights>) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = rights;
        self.changed.notify_one();
    }

    /// Completes after the rights were replaced (at once if that happened since the last
    /// call). Cancel-safe.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// What a reload does to a connection whose key's rights changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnChange {
    /// Replace its rights in place (subscribers: their subscriptions are re-checked).
    Update,
    /// End it (publishers: they reconnect and hear the subscriptions narrowed to the new
    /// rights).
    Disconnect,
}

/// A connection as the access control sees it, so a reload can update or end it.
#[derive(Debug)]
struct Live {
    key: CurvePublicKey,
    rights: Arc<RightsCell>,
    on_change: OnChange,
    peer: String,
    token: CancellationToken,
}

/// The access rules in force and the connections admitted under them. Read at handshakes and
/// subscriptions; never on the message path (a connection keeps its own `Arc<Rights>`).
#[derive(Debug)]
pub(crate) struct Access {
    file: Option<PathBuf>,
    table: RwLock<Option<Arc<AccessTable>>>,
    live: Mutex<HashMap<u64, Live>>,
}

impl Access {
    /// Access control from `file` (`None`: every key that completes the handshake may do
    /// anything).
    pub(crate) fn new(file: Option<PathBuf>) -> Result<Access, AccessError> {
        let table = file
            .as_deref()
            .map(AccessTable::load)
            .transpose()?
            .map(Arc::new);
        Ok(Access {
            file,
            table: RwLock::new(table),
            live: Mutex::new(HashMap::new()),
        })
    }

    /// The rights of `key`, `None` when it is not admitted.
    pub(crate) fn rights(&self, key: &CurvePublicKey) -> Option<Arc<Rights>> {
        match &*self.table.read().unwrap_or_else(PoisonError::into_inner) {
            None => Some(Arc::new(Rights::all("any key"))),
            Some(table) => table.rights(key),
        }
    }

    /// Records an admitted connection until the returned guard is dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        id: u64,
        key: CurvePublicKey,
        rights: Arc<RightsCell>,
        on_change: OnChange,
        peer: &str,
        token: CancellationToken,
    ) -> Registration {
        let mut live = self.lock();
        // A reload between the handshake and now swapped the table before taking this lock:
        // apply what it would have done to this connection.
        match self.rights(&key) {
            None => token.cancel(),
            Some(now) if *now != *rights.get() => match on_change {
                OnChange::Update => rights.set(now),
                OnChange::Disconnect => token.cancel(),
            },
            Some(_) => {}
        }
        live.insert(
            id,
            Live {
                key,
                rights,
                on_change,
                peer: peer.to_owned(),
                token,
            },
        );
        drop(live);
        Registration {
            access: self.clone(),
            id,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the access file again. A file that cannot be used leaves the rules as they were.
    /// Connections of keys no longer admitted are ended. Connections whose rights changed are
    /// updated in place (subscribers) or ended (publishers, which reconnect under the new
    /// rights). Returns how many connections were ended or updated.
    pub(crate) fn reload(&self) -> Result<Reloaded, AccessError> {
        let Some(path) = &self.file else {
            return Ok(Reloaded::default());
        };
        let table = Arc::new(AccessTable::load(path)?);
        // Connections register under the `live` lock after reading the table: swapping the
        // table while holding it means each connection sees either the new table at
        // registration or this walk.
        let live_conns = self.lock();
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = Some(table.clone());
        let mut done = Reloaded::default();
        for (id, live) in live_conns.iter() {
            let old = live.rights.get();
            match table.rights(&live.key) {
                None => {
                    warn!(peer = %live.peer, id, key = %live.key, name = %old.name,
                        "access file reloaded: key no longer admitted; disconnecting");
                    live.token.cancel();
                    done.disconnected += 1;
                }
                Some(new) if *new != *old => match live.on_change {
                    OnChange::Update => {
                        info!(peer = %live.peer, id, key = %live.key, name = %new.name,
                            "access file reloaded: rights changed; subscriptions checked again");
                        live.rights.set(new);
                        done.updated += 1;
                    }
                    OnChange::Disconnect => {
                        info!(peer = %live.peer, id, key = %live.key, name = %new.name,
                            "access file reloaded: rights changed; disconnecting so the publisher reconnects under them");
                        live.token.cancel();
                        done.disconnected += 1;
                    }
                },
                Some(_) => {}
            }
        }
        drop(live_conns);
        info!(
            path = %path.display(),
            keys = table.len(),
            disconnected = done.disconnected,
            updated = done.updated,
            "access file reloaded"
        );
        Ok(done)
    }
}

/// What a reload of the access file did to the connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Connections ended: their key is no longer admitted, or a publisher's rights changed.
    pub disconnected: usize,
    /// Subscribers whose rights changed: their subscriptions were checked again, and those now
    /// outside their rights withdrawn (each with a denial notice).
    pub updated: usize,
}

/// Unregisters a connection from [`Access`] when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    access: Arc<Access>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.access.lock().remove(&self.id);
    }
}

/// What every denial notice's topic frame starts with.
pub const DENIED_PREFIX: &[u8] = b"$xbus.denied.";
/// The proxy's notice to a subscriber whose subscription was refused: topic frame, then the
/// prefix as it was sent.
pub const DENIED_SUBSCRIBE_TOPIC: &[u8] = b"$xbus.denied.subscribe.";
/// The proxy's notice to a publisher whose message was dropped: topic frame, then the denied
/// topic frame.
pub const DENIED_PUBLISH_TOPIC: &[u8] = b"$xbus.denied.publish.";

/// Keeps one peer's denial log lines bounded: the first few are logged, then at most one a
/// second, saying how many were not.
#[derive(Debug, Default)]
pub(crate) struct LogBudget {
    logged: u32,
    last: Option<tokio::time::Instant>,
    suppressed: u64,
}

impl LogBudget {
    /// Lines logged before the one-a-second limit applies.
    const FREE: u32 = 10;

    /// `Some(n)` when this denial may be logged, `n` being how many were not logged since the
    /// last line; `None` when it is only counted.
    pub(crate) fn allow(&mut self) -> Option<u64> {
        let now = tokio::time::Instant::now();
        let free = self.logged < Self::FREE;
        if free
            || self
                .last
                .is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(1))
        {
            self.logged = self.logged.saturating_add(1);
            self.last = Some(now);
            return Some(std::mem::take(&mut self.suppressed));
        }
        self.suppressed += 1;
        None
    }
}

/// A two-frame notice message, encoded.
pub(crate) fn notice(topic: &[u8], detail: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    xbus_zmtp::encode_message(&mut out, &[topic, detail]);
    out.freeze()
}

/// Narrows the subscription updates a restricted publisher receives to its publish rights
/// (see [`PrefixRules::narrow`]), keeping counts so overlapping subscriptions that narrow to
/// the same rule subscribe and cancel it once.
#[derive(Debug)]
pub(crate) struct ForwardFilter {
    rights: Arc<Rights>,
    counts: HashMap<Bytes, usize>,
}

impl ForwardFilter {
    pub(crate) fn new(rights: Arc<Rights>) -> ForwardFilter {
        ForwardFilter {
            rights,
            counts: HashMap::new(),
        }
    }

    /// Rewrites encoded frames bound for the publisher: subscription updates are narrowed,
    /// anything else (PING, PONG) passes unchanged.
    pub(crate) fn rewrite(&mut self, wire: &[u8], out: &mut BytesMut) {
        let mut rest = wire;
        // inside a multipart message (a notice): its frames pass unchanged
        let mut continued = false;
        while let Ok(h) = xbus_zmtp::frame::FrameHeader::parse(rest) {
            let Some(end) = usize::try_from(h.body_len)
                .ok()
                .and_then(|n| n.checked_add(h.header_len))
                .filter(|end| *end <= rest.len())
            else {
                break;
            };
            let (frame, tail) = rest.split_at(end);
            rest = tail;
            let body = &frame[h.header_len..];
            let sub = if h.is_command() {
                xbus_zmtp::Command::parse(Bytes::copy_from_slice(body))
                    .ok()
                    .and_then(|c| Subscription::from_command(&c))
            } else if continued || h.more() {
                None
            } else {
                match body.split_first() {
                    Some((1, p)) => Some(Subscription::Subscribe(Bytes::copy_from_slice(p))),
                    Some((0, p)) => Some(Subscription::Cancel(Bytes::copy_from_slice(p))),
                    _ => None,
                }
            };
            continued = !h.is_command() && h.more();
            let Some(sub) = sub else {
                out.extend_from_slice(frame);
                continue;
            };
            self.apply(sub, out);
        }
        debug_assert!(rest.is_empty(), "queued updates are whole frames");
    }

    fn apply(&mut self, sub: Subscription, out: &mut BytesMut) {
        let (prefix, subscribe) = match &sub {
            Subscription::Subscribe(p) => (p, true),
            Subscription::Cancel(p) => (p, false),
        };
        let targets = if prefix.as_ref() == WELCOME_PREFIX {
            vec![prefix.clone()]
        } else {
            self.rights.publish.narrow(prefix)
        };
        for t in targets {
            if subscribe {
                let n = self.counts.entry(t.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    Subscription::Subscribe(t).encode(out);
                }
            } else if let Some(n) = self.counts.get_mut(&t) {
                *n -= 1;
                if *n == 0 {
                    self.counts.remove(&t);
                    Subscription::Cancel(t).encode(out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn updates(filter: &mut ForwardFilter, subs: &[Subscription]) -> Vec<Subscription> {
        let mut wire = BytesMut::new();
        for s in subs {
            s.encode(&mut wire);
        }
        let mut out = BytesMut::new();
        filter.rewrite(&wire, &mut out);
        let mut got = Vec::new();
        let mut decoder = xbus_zmtp::Decoder::default();
        while let Some(xbus_zmtp::Inbound::Message(m)) = decoder.decode(&mut out).unwrap() {
            got.push(Subscription::from_message(&m).unwrap());
        }
        got
    }

    fn sub(p: &'static str) -> Subscription {
        Subscription::Subscribe(Bytes::from_static(p.as_bytes()))
    }

    fn cancel(p: &'static str) -> Subscription {
        Subscription::Cancel(Bytes::from_static(p.as_bytes()))
    }

    #[test]
    fn forwarded_subscriptions_are_narrowed_and_counted() {
        let rights = Rights {
            name: "t".into(),
            publish: PrefixRules::new(["Temperature", "Humidity.lab"]).unwrap(),
            subscribe: PrefixRules::default(),
            admin: false,
        };
        let mut f = ForwardFilter::new(Arc::new(rights));
        // the welcome passes; inside the rights passes as is; outside disappears
        assert_eq!(
            updates(
                &mut f,
                &[sub("$xbus."), sub("Temperature.a."), sub("Status.")]
            ),
            vec![sub("$xbus."), sub("Temperature.a.")]
        );
        // two broad subscriptions narrow to the same rules: each rule subscribed once
        assert_eq!(
            updates(&mut f, &[sub(""), sub("Hum")]),
            vec![sub("Humidity.lab."), sub("Temperature.")]
        );
        assert_eq!(updates(&mut f, &[cancel("")]), vec![cancel("Temperature.")]);
        assert_eq!(
            updates(&mut f, &[cancel("Hum")]),
            vec![cancel("Humidity.lab.")]
        );
        // a pattern is judged by its head
        assert_eq!(
            updates(
                &mut f,
                &[sub("$xbus.match.Temperature.*.x."), sub("$xbus.match.*.x.")]
            ),
            vec![
                sub("$xbus.match.Temperature.*.x."),
                sub("Humidity.lab."),
                sub("Temperature.")
            ]
        );
        // cancels of what was never forwarded change nothing
        assert!(updates(&mut f, &[cancel("Status."), cancel("Nope.")]).is_empty());
    }

    #[test]
    fn multipart_notices_and_commands_pass_unchanged() {
        let mut f = ForwardFilter::new(Arc::new(Rights {
            name: "t".into(),
            publish: PrefixRules::new(["A"]).unwrap(),
            subscribe: PrefixRules::default(),
            admin: false,
        }));
        let mut wire = BytesMut::new();
        // a notice whose second frame looks like a subscription must not be rewritten
        xbus_zmtp::encode_message(&mut wire, &[DENIED_PUBLISH_TOPIC, b"\x01B."]);
        xbus_zmtp::Command::Ping {
            ttl_deciseconds: 0,
            context: Bytes::new(),
        }
        .encode(&mut wire);
        let mut out = BytesMut::new();
        f.rewrite(&wire, &mut out);
        assert_eq!(out, wire);
    }

    #[tokio::test(start_paused = true)]
    async fn denial_logs_are_bounded() {
        let mut budget = LogBudget::default();
        let logged = (0..1000).filter(|_| budget.allow().is_some()).count();
        assert_eq!(logged, LogBudget::FREE as usize);
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        assert_eq!(budget.allow(), Some(1000 - LogBudget::FREE as u64));
        assert_eq!(budget.allow(), None);
    }

    #[test]
    fn bad_access_files_name_the_entry() {
        let key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
        for (text, needle) in [
            ("[[key]]\nname = \"a\"\npublic-key = \"short\"\n", "entry \"a\": public-key"),
            (&*format!("[[key]]\nname = \"b\"\npublic-key = \"{key}\"\npublish = [\"A..B\"]\n"), "empty segment"),
            (&*format!("[[key]]\nname = \"c\"\npublic-key = \"{key}\"\nsubscribe = [\"\"]\n"), "write \">\""),
            (&*format!("[[key]]\nname = \"d\"\npublic-key = \"{key}\"\n[[key]]\nname = \"e\"\npublic-key = \"{key}\"\n"), "listed twice"),
            ("[[key]]\nname = \"f\"\npublic-key = \"x\"\npublsh = []\n", "unknown field"),
        ] {
            let err = AccessTable::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} (wanted {needle})");
        }
    }
}
