//! CURVE end to end over real sockets on 127.0.0.1: xbus publishers and subscribers against a
//! libzmq CURVE proxy (pyzmq, `tests/py/curve_proxy.py`) and against the xbus proxy with an
//! access file. pyzmq with CURVE is required: these tests FAIL, not skip, when it is missing.
//! Timeouts are upper bounds only; nothing sleeps to synchronise.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{tick, Alarm, Inbox, Tick};
use xbus::curve::{Certificate, CurveClient, CurveKeyPair};
use xbus::{
    ConnectFailure, ConnectionEvent, Error, PublisherAsync, PublisherBlocking, PublisherOptions,
    RawSubscriberAsync, SubscriberAsync, SubscriberBlocking, SubscriberOptions,
};
use xbus_proxy::ProxyHandle;

/// Upper bound for anything expected to happen.
const DEADLINE: Duration = Duration::from_secs(10);

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A libzmq XSUB/XPUB proxy, CURVE or NULL, in a python process.
struct PyProxy {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Where publishers connect.
    publish: String,
    /// Where subscribers connect.
    subscribe: String,
}

impl PyProxy {
    /// A CURVE proxy with `keys` (admitting `allow` only, if any), or NULL without keys.
    fn start(keys: Option<&CurveKeyPair>, allow: &[&CurveKeyPair]) -> PyProxy {
        xbus_tests::pyzmq::require_curve();
        let mut args = Vec::new();
        if let Some(keys) = keys {
            args.extend(["--secret".to_owned(), keys.secret_z85()]);
        }
        for key in allow {
            args.extend(["--allow".to_owned(), key.public().to_z85()]);
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/curve_proxy.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let first = lines.recv_timeout(DEADLINE).unwrap();
        let ports: Vec<&str> = first.strip_prefix("PORTS ").unwrap().split(' ').collect();
        PyProxy {
            child,
            stdin,
            lines,
            publish: format!("tcp://127.0.0.1:{}", ports[0]),
            subscribe: format!("tcp://127.0.0.1:{}", ports[1]),
        }
    }

    /// Waits until a subscriber's subscription to `prefix` has reached the proxy.
    fn wait_subscribed(&self, prefix: &[u8]) {
        let want = format!(
            "SUB 01{}",
            prefix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {want:?} from the libzmq proxy"));
            if line == want {
                return;
            }
        }
    }
}

impl Drop for PyProxy {
    fn drop(&mut self) {
        // closing stdin ends the script; kill it anyway if it is stuck
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keys() -> CurveKeyPair {
    CurveKeyPair::generate()
}

fn pub_options(curve: Option<CurveClient>) -> PublisherOptions {
    let options = PublisherOptions::new().retry_refused(false);
    match curve {
        Some(curve) => options.curve(curve),
        None => options,
    }
}

fn sub_options(curve: Option<CurveClient>) -> SubscriberOptions {
    let options = SubscriberOptions::new().retry_refused(false);
    match curve {
        Some(curve) => options.curve(curve),
        None => options,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_flow_through_a_libzmq_curve_proxy() {
    let server = keys();
    let proxy = PyProxy::start(Some(&server), &[]);
    let curve = CurveClient::new(server.public());

    let mut sub =
        SubscriberAsync::<Inbox>::connect_with(&proxy.subscribe, sub_options(Some(curve.clone())))
            .await
            .unwrap();
    sub.subscribe::<Tick>(Some("a")).unwrap();
    proxy.wait_subscribed(b"Tick.a.");

    // a client key of its own, as an access file would list it
    let publisher =
        PublisherAsync::connect_with(&proxy.publish, pub_options(Some(curve.key_pair(keys()))))
            .await
            .unwrap();
    let mut big = tick("a", 99);
    big.note = "y".repeat(100_000); // long frames, sealed
    publisher.publish(&tick("b", 0)).await.unwrap(); // filtered out by the proxy
    for seq in 1..=3 {
        publisher.publish(&tick("a", seq)).await.unwrap();
    }
    publisher.publish(&big).await.unwrap();
    // libzmq answers the sealed PING after reading everything before it
    assert!(publisher.confirm(DEADLINE).await.unwrap());

    for seq in 1..=3 {
        assert_eq!(
            sub.get(Some(DEADLINE)).await.unwrap(),
            Inbox::Tick(tick("a", seq))
        );
    }
    assert_eq!(sub.get(Some(DEADLINE)).await.unwrap(), Inbox::Tick(big));
    let report = publisher.close(DEADLINE).await.unwrap();
    assert_eq!(report.written, 5);
}

/// Heartbeats travel sealed (PING and PONG inside MESSAGE): a quiet connection with a short
/// heartbeat timeout stays up only if libzmq answers them.
#[test]
fn sealed_heartbeats_keep_a_quiet_connection_alive() {
    let server = keys();
    let proxy = PyProxy::start(Some(&server), &[]);
    let curve = CurveClient::new(server.public());
    let options = sub_options(Some(curve.clone()))
        .heartbeat_interval(Some(Duration::from_millis(20)))
        .heartbeat_timeout(Duration::from_millis(100));
    let mut sub = SubscriberBlocking::<Tick>::connect_with(&proxy.subscribe, options).unwrap();
    sub.subscribe_all().unwrap();
    proxy.wait_subscribed(b"Tick.");
    let events = sub.connection_events();
    assert_eq!(
        events.recv(Some(DEADLINE)).unwrap(),
        ConnectionEvent::Connected
    );

    // Quiet for many heartbeat timeouts: time passing is what is tested here.
    assert!(matches!(
        sub.get(Some(Duration::from_millis(600))),
        Err(Error::Timeout(_))
    ));
    assert_eq!(events.try_next(), None, "the connection dropped");

    let options = pub_options(Some(curve))
        .heartbeat_interval(Some(Duration::from_millis(20)))
        .heartbeat_timeout(Duration::from_millis(100));
    let publisher = PublisherBlocking::connect_with(&proxy.publish, options).unwrap();
    publisher.publish(&tick("q", 1)).unwrap();
    assert_eq!(sub.get(Some(DEADLINE)).unwrap(), tick("q", 1));
    assert_eq!(events.try_next(), None, "the connection dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_server_key_fails_at_once() {
    let server = keys();
    let proxy = PyProxy::start(Some(&server), &[]);
    let wrong = keys().public();

    let started = Instant::now();
    let err = RawSubscriberAsync::connect_with(
        &proxy.subscribe,
        sub_options(Some(CurveClient::new(wrong))),
    )
    .await
    .unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        Error::Connect {
            failure: ConnectFailure::WrongServerKey { server_key, .. },
            attempts: 1,
            ..
        } => assert_eq!(*server_key, wrong),
        other => panic!("{other}"),
    }
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    let text = err.to_string();
    assert!(text.contains(&wrong.to_z85()), "{text}");
    assert!(text.contains("not the public key of the proxy"), "{text}");
    assert!(text.contains("check the server key"), "{text}");

    let err =
        PublisherBlocking::connect_with(&proxy.publish, pub_options(Some(CurveClient::new(wrong))))
            .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Connect {
                failure: ConnectFailure::WrongServerKey { .. },
                attempts: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mechanisms_that_differ_are_named() {
    // A NULL client against a CURVE proxy.
    let server = keys();
    let curve_proxy = PyProxy::start(Some(&server), &[]);
    let err = RawSubscriberAsync::connect_with(&curve_proxy.subscribe, sub_options(None))
        .await
        .unwrap_err();
    match &err {
        Error::Connect {
            failure: ConnectFailure::MechanismMismatch { ours, peer },
            attempts: 1,
            ..
        } => assert_eq!((*ours, peer.as_str()), ("NULL", "CURVE")),
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().contains("the proxy requires CURVE"),
        "{err}"
    );
    let err = PublisherAsync::connect_with(&curve_proxy.publish, pub_options(None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Connect {
                failure: ConnectFailure::MechanismMismatch { ours: "NULL", .. },
                ..
            }
        ),
        "{err}"
    );

    // A CURVE client against a NULL proxy.
    let null_proxy = PyProxy::start(None, &[]);
    let curve = CurveClient::new(server.public());
    let err = PublisherAsync::connect_with(&null_proxy.publish, pub_options(Some(curve)))
        .await
        .unwrap_err();
    match &err {
        Error::Connect {
            failure: ConnectFailure::MechanismMismatch { ours, peer },
            attempts: 1,
            ..
        } => assert_eq!((*ours, peer.as_str()), ("CURVE", "NULL")),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("does not use CURVE"), "{err}");
}

/// libzmq's ZAP handler refusing the client's key: NotAuthorised, naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_libzmq_does_not_admit_is_not_authorised() {
    let server = keys();
    let admitted = keys();
    let proxy = PyProxy::start(Some(&server), &[&admitted]);
    let stranger = keys();
    let err = RawSubscriberAsync::connect_with(
        &proxy.subscribe,
        sub_options(Some(
            CurveClient::new(server.public()).key_pair(stranger.clone()),
        )),
    )
    .await
    .unwrap_err();
    match &err {
        Error::Connect {
            failure: ConnectFailure::NotAuthorised { client_key, .. },
            attempts: 1,
            ..
        } => assert_eq!(*client_key, stranger.public()),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("access file"), "{err}");

    // The admitted key connects.
    let sub = RawSubscriberAsync::connect_with(
        &proxy.subscribe,
        sub_options(Some(CurveClient::new(server.public()).key_pair(admitted))),
    )
    .await
    .unwrap();
    assert_eq!(
        sub.connection_events().next().await,
        Some(ConnectionEvent::Connected)
    );
}

// --- against the xbus proxy ------------------------------------------------------------------

/// A directory of key and access files, removed on drop.
struct Files(PathBuf);

impl Files {
    fn new(tag: &str) -> Files {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("xbus-curve-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Files(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        path
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An xbus proxy with `server` keys and, if given, an access file.
async fn xbus_proxy(files: &Files, server: &CurveKeyPair, access: Option<&str>) -> ProxyHandle {
    let mut builder = xbus_tests::proxy_builder()
        .curve_key_file(files.write("proxy.key_secret", &Certificate::secret_text(server)));
    if let Some(text) = access {
        builder = builder.access_file(files.write("access.toml", text));
    }
    builder.build().unwrap().start().await.unwrap()
}

fn endpoints(proxy: &ProxyHandle) -> (String, String) {
    (
        proxy.frontend_endpoints()[0].to_string(),
        proxy.backend_endpoints()[0].to_string(),
    )
}

fn entry(name: &str, key: &CurveKeyPair, publish: &[&str], subscribe: &[&str]) -> String {
    xbus_tests::pyzmq::access_entry(name, &key.public().to_z85(), publish, subscribe)
}

async fn wait_subscriptions(proxy: &ProxyHandle, n: usize) {
    let deadline = Instant::now() + DEADLINE;
    while proxy.stats().subscriptions < n {
        assert!(
            Instant::now() < deadline,
            "no {n} subscriptions at the proxy"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The proxy refuses a subscription outside the key's rights and says so: the subscriber
/// reports [`Error::SubscriptionDenied`] (never an event), and its other subscriptions work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_subscription_is_a_typed_error_never_an_event() {
    let files = Files::new("sub");
    let (server, watcher, feeder) = (keys(), keys(), keys());
    let access =
        entry("watcher", &watcher, &[], &["Tick.a"]) + &entry("feeder", &feeder, &[">"], &[]);
    let proxy = xbus_proxy(&files, &server, Some(&access)).await;
    let (fe, be) = endpoints(&proxy);
    let client = |k: &CurveKeyPair| CurveClient::new(server.public()).key_pair(k.clone());

    // Decode errors skipped: a denial is reported anyway.
    let options = sub_options(Some(client(&watcher))).on_decode_error(xbus::OnDecodeError::Skip);
    let mut sub = SubscriberAsync::<Inbox>::connect_with(&be, options)
        .await
        .unwrap();
    sub.subscribe::<Alarm>(None).unwrap();
    match sub.get(Some(DEADLINE)).await {
        Err(Error::SubscriptionDenied { prefix }) => assert_eq!(&prefix[..], b"Alarm."),
        other => panic!("{other:?}"),
    }
    sub.subscribe::<Tick>(Some("a")).unwrap();
    wait_subscriptions(&proxy, 1).await;

    let publisher = PublisherAsync::connect_with(&fe, pub_options(Some(client(&feeder))))
        .await
        .unwrap();
    publisher
        .publish(&Alarm {
            path: "x".into(),
            level: 1,
        })
        .await
        .unwrap();
    publisher.publish(&tick("a", 1)).await.unwrap();
    assert_eq!(
        sub.get(Some(DEADLINE)).await.unwrap(),
        Inbox::Tick(tick("a", 1))
    );
    assert!(sub.subscriptions().contains(&"Alarm.".into()));

    // A raw subscriber asking for everything: refused, and the notice is not a RawEvent.
    let mut raw = RawSubscriberAsync::connect_with(&be, sub_options(Some(client(&watcher))))
        .await
        .unwrap();
    raw.subscribe_raw(b"");
    let err = raw.get(Some(DEADLINE)).await.unwrap_err();
    assert!(
        matches!(&err, Error::SubscriptionDenied { prefix } if prefix.is_empty()),
        "{err}"
    );
    assert!(err.to_string().contains("\"\" (everything)"), "{err}");
    assert!(!err.is_message_error());
}

/// Events outside the publisher's rights are dropped by the proxy, which tells the publisher:
/// [`ConnectionEvent::PublishDenied`]. Allowed events still flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_publish_is_reported_as_a_connection_event() {
    let files = Files::new("pub");
    let (server, watcher, feeder) = (keys(), keys(), keys());
    let access =
        entry("watcher", &watcher, &[], &[">"]) + &entry("feeder", &feeder, &["Tick.a"], &[]);
    let proxy = xbus_proxy(&files, &server, Some(&access)).await;
    let (fe, be) = endpoints(&proxy);
    let client = |k: &CurveKeyPair| CurveClient::new(server.public()).key_pair(k.clone());

    let mut sub = RawSubscriberAsync::connect_with(&be, sub_options(Some(client(&watcher))))
        .await
        .unwrap();
    sub.subscribe_raw(b"");
    sub.wait_subscribed(DEADLINE).await.unwrap();

    let publisher =
        PublisherBlocking::connect_with(&fe, pub_options(Some(client(&feeder)))).unwrap();
    let events = publisher.connection_events();
    assert_eq!(
        events.recv(Some(DEADLINE)).unwrap(),
        ConnectionEvent::Connected
    );
    publisher.publish(&tick("b", 1)).unwrap();
    publisher.publish(&tick("a", 2)).unwrap();
    // Once the proxy confirms it has read them, its notice is in: no waiting on a guess.
    assert!(publisher.confirm(DEADLINE).unwrap());
    assert_eq!(
        events.try_next(),
        Some(ConnectionEvent::PublishDenied {
            topic_frame: "Tick.b.".into()
        })
    );
    let got = sub.get(Some(DEADLINE)).await.unwrap();
    assert_eq!(&got.topic_frame[..], b"Tick.a.");
    assert!(publisher.state().is_connected());
    // nothing else came through
    assert!(matches!(
        sub.get(Some(Duration::from_millis(50))).await,
        Err(Error::Timeout(_))
    ));
}

/// The xbus proxy's own refusals: an unknown key, the wrong server key, a NULL client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_xbus_proxy_refusals_are_typed() {
    let files = Files::new("refuse");
    let (server, known) = (keys(), keys());
    let proxy = xbus_proxy(
        &files,
        &server,
        Some(&entry("known", &known, &[">"], &[">"])),
    )
    .await;
    let (fe, be) = endpoints(&proxy);

    let stranger = keys();
    let err = PublisherAsync::connect_with(
        &fe,
        pub_options(Some(
            CurveClient::new(server.public()).key_pair(stranger.clone()),
        )),
    )
    .await
    .unwrap_err();
    match &err {
        Error::Connect {
            failure: ConnectFailure::NotAuthorised { client_key, .. },
            attempts: 1,
            ..
        } => assert_eq!(*client_key, stranger.public()),
        other => panic!("{other}"),
    }

    let started = Instant::now();
    let err = RawSubscriberAsync::connect_with(
        &be,
        sub_options(Some(
            CurveClient::new(keys().public()).key_pair(known.clone()),
        )),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Connect {
                failure: ConnectFailure::WrongServerKey { .. },
                attempts: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    let err = RawSubscriberAsync::connect_with(&be, sub_options(None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Connect {
                failure: ConnectFailure::MechanismMismatch { ours: "NULL", .. },
                attempts: 1,
                ..
            }
        ),
        "{err}"
    );

    // And the known key gets through, both sides.
    let curve = CurveClient::new(server.public()).key_pair(known);
    let mut sub = SubscriberAsync::<Tick>::connect_with(&be, sub_options(Some(curve.clone())))
        .await
        .unwrap();
    sub.subscribe_all().unwrap();
    sub.wait_subscribed(DEADLINE).await.unwrap();
    let publisher = PublisherAsync::connect_with(&fe, pub_options(Some(curve)))
        .await
        .unwrap();
    publisher.publish(&tick("k", 1)).await.unwrap();
    assert_eq!(sub.get(Some(DEADLINE)).await.unwrap(), tick("k", 1));
}

/// Without an access file, any key that completes the handshake may do anything: a client
/// with a fresh key pair (only the server key given) works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_without_an_access_file_admits_fresh_keys() {
    let files = Files::new("open");
    let server = keys();
    let proxy = xbus_proxy(&files, &server, None).await;
    let (fe, be) = endpoints(&proxy);
    let curve = CurveClient::new(proxy.curve_public_key().unwrap());
    let mut sub = SubscriberAsync::<Tick>::connect_with(&be, sub_options(Some(curve.clone())))
        .await
        .unwrap();
    sub.subscribe_all().unwrap();
    sub.wait_subscribed(DEADLINE).await.unwrap();
    let publisher = PublisherAsync::connect_with(&fe, pub_options(Some(curve)))
        .await
        .unwrap();
    for seq in 0..100 {
        publisher.publish(&tick("z", seq)).await.unwrap();
    }
    for seq in 0..100 {
        assert_eq!(sub.get(Some(DEADLINE)).await.unwrap(), tick("z", seq));
    }
}

/// The operator removes the key (access file reloaded): the client is disconnected, its
/// reconnects are refused (and retried); once the key is back, it reconnects by itself and
/// its subscription is sent again, sealed under a new handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_removed_and_restored_reconnects_by_itself() {
    let files = Files::new("reload");
    let (server, watcher, feeder) = (keys(), keys(), keys());
    let with_watcher =
        entry("watcher", &watcher, &[], &[">"]) + &entry("feeder", &feeder, &[">"], &[]);
    let proxy = xbus_proxy(&files, &server, Some(&with_watcher)).await;
    let (fe, be) = endpoints(&proxy);
    let client = |k: &CurveKeyPair| CurveClient::new(server.public()).key_pair(k.clone());

    let options = sub_options(Some(client(&watcher))).reconnect_interval(Duration::from_millis(20));
    let mut sub = SubscriberAsync::<Tick>::connect_with(&be, options)
        .await
        .unwrap();
    let events = sub.connection_events();
    assert_eq!(
        tokio::time::timeout(DEADLINE, events.next()).await.unwrap(),
        Some(ConnectionEvent::Connected)
    );
    sub.subscribe_all().unwrap();
    sub.wait_subscribed(DEADLINE).await.unwrap();

    // Removed: disconnected, and kept out.
    files.write("access.toml", &entry("feeder", &feeder, &[">"], &[]));
    assert_eq!(proxy.reload_access().unwrap().disconnected, 1);
    match tokio::time::timeout(DEADLINE, events.next()).await.unwrap() {
        Some(ConnectionEvent::Disconnected { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(!sub.state().is_connected());
    // Its reconnects are refused at the handshake (and retried, at most once a second).
    let deadline = Instant::now() + DEADLINE;
    while proxy
        .stats()
        .refused
        .get("curve_client_not_admitted")
        .copied()
        .unwrap_or(0)
        < 2
    {
        assert!(Instant::now() < deadline, "{:?}", proxy.stats().refused);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!sub.state().is_connected());

    // Restored: back by itself, subscription and all.
    files.write("access.toml", &with_watcher);
    proxy.reload_access().unwrap();
    match tokio::time::timeout(DEADLINE, events.next()).await.unwrap() {
        Some(ConnectionEvent::Reconnected { .. }) => {}
        other => panic!("{other:?}"),
    }
    sub.wait_subscribed(DEADLINE).await.unwrap();
    let publisher = PublisherAsync::connect_with(&fe, pub_options(Some(client(&feeder))))
        .await
        .unwrap();
    publisher.publish(&tick("back", 1)).await.unwrap();
    assert_eq!(sub.get(Some(DEADLINE)).await.unwrap(), tick("back", 1));
}
