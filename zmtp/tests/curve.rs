//! CURVE end to end: Rust client ↔ Rust server over an in-memory stream, and interop with
//! libzmq through pyzmq (`tests/py/curve_peer.py` in the xbus-tests crate) in both directions over TCP on 127.0.0.1.
//! pyzmq (with CURVE) is required: these tests FAIL, not skip, when it is missing. Timeouts are
//! upper bounds only; nothing sleeps to synchronise.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use std::process::Command as Process;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use xbus_tests::pyzmq::{hex, python, Py};
use xbus_zmtp::curve::{
    curve_handshake, CurveConfig, CurveDecoder, CurveError, CurveKeyPair, CurvePublicKey,
};
use xbus_zmtp::{
    handshake, Command, HandshakeConfig, Inbound, Limits, SocketType, Subscription, ZmtpError,
};

const DEADLINE: Duration = Duration::from_secs(10);

/// The next item from a sealed stream, within the deadline.
async fn next<S: AsyncRead + Unpin>(
    stream: &mut S,
    decoder: &mut CurveDecoder,
    buf: &mut BytesMut,
) -> Result<Inbound, ZmtpError> {
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(item) = decoder.decode(buf)? {
                return Ok(item);
            }
            if stream.read_buf(buf).await? == 0 {
                return Err(ZmtpError::Truncated {
                    buffered: buf.len(),
                });
            }
        }
    })
    .await
    .expect("no item within the deadline")
}

fn frames(item: &Inbound) -> Vec<Bytes> {
    match item {
        Inbound::Message(m) => m.frames().collect(),
        other => panic!("expected a message, got {other:?}"),
    }
}

fn subscription(item: &Inbound) -> Option<Subscription> {
    match item {
        Inbound::Message(m) => Subscription::from_message(m),
        Inbound::Command(c) => Subscription::from_command(c),
    }
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &BytesMut) {
    stream.write_all(bytes).await.unwrap();
    stream.flush().await.unwrap();
}

/// A handshake configuration that outlives every future borrowing it (leaked: tests only).
fn cfg(t: SocketType) -> &'static HandshakeConfig {
    Box::leak(Box::new(HandshakeConfig::new(t).timeout(DEADLINE)))
}

#[tokio::test]
async fn rust_client_and_server_over_duplex() {
    let server_keys = CurveKeyPair::generate();
    let client_keys = CurveKeyPair::generate();
    let client_public = client_keys.public();
    let server = CurveConfig::server(server_keys.clone()).admit_keys([client_public]);
    let client = CurveConfig::client(client_keys, server_keys.public());
    let (mut a, mut b) = tokio::io::duplex(1 << 20);
    let (s, c) = tokio::join!(
        curve_handshake(&mut a, cfg(SocketType::XPub), &server),
        curve_handshake(&mut b, cfg(SocketType::Sub), &client)
    );
    let (mut s, mut c) = (s.unwrap(), c.unwrap());
    assert_eq!(s.peer.socket_type, SocketType::Sub);
    assert_eq!(c.peer.socket_type, SocketType::XPub);
    assert_eq!(s.peer_key, client_public);
    assert_eq!(c.peer_key, server_keys.public());

    // subscription up, messages and a PING down
    let mut out = BytesMut::new();
    c.sealer
        .seal_command(&mut out, &Command::Subscribe(Bytes::from_static(b"A.")))
        .unwrap();
    send(&mut b, &out).await;
    let item = next(&mut a, &mut s.decoder, &mut s.buffer).await.unwrap();
    assert_eq!(
        subscription(&item),
        Some(Subscription::Subscribe(Bytes::from_static(b"A.")))
    );
    let mut out = BytesMut::new();
    let big = vec![3u8; 100_000];
    s.sealer.seal_message(&mut out, &[b"A.1", &big]).unwrap();
    s.sealer
        .seal_command(
            &mut out,
            &Command::Ping {
                ttl_deciseconds: 0,
                context: Bytes::from_static(b"p"),
            },
        )
        .unwrap();
    send(&mut a, &out).await;
    let item = next(&mut b, &mut c.decoder, &mut c.buffer).await.unwrap();
    assert_eq!(frames(&item), vec![&b"A.1"[..], &big[..]]);
    let item = next(&mut b, &mut c.decoder, &mut c.buffer).await.unwrap();
    assert!(matches!(item, Inbound::Command(Command::Ping { .. })));
}

#[tokio::test]
async fn rust_server_refuses_unknown_clients_and_wrong_server_keys() {
    let server_keys = CurveKeyPair::generate();
    let stranger = CurveKeyPair::generate();
    // not admitted: the client hears ERROR in place of READY
    let server = CurveConfig::server(server_keys.clone()).admit(|_| false);
    let client = CurveConfig::client(stranger.clone(), server_keys.public());
    let (mut a, mut b) = tokio::io::duplex(1 << 20);
    let (s, c) = tokio::join!(
        curve_handshake(&mut a, cfg(SocketType::XPub), &server),
        curve_handshake(&mut b, cfg(SocketType::Sub), &client)
    );
    assert!(
        matches!(s, Err(ZmtpError::Curve(CurveError::ClientNotAdmitted { ref key })) if *key == stranger.public().to_z85()),
        "{s:?}"
    );
    assert!(
        matches!(c, Err(ZmtpError::Curve(CurveError::InitiateRefused { .. }))),
        "{c:?}"
    );

    // wrong server key: HELLO does not open, the server hangs up, the client says why
    let client = CurveConfig::client(stranger, CurveKeyPair::generate().public());
    let server = CurveConfig::server(server_keys);
    let (mut a, mut b) = tokio::io::duplex(1 << 20);
    let c =
        tokio::spawn(async move { curve_handshake(&mut b, cfg(SocketType::Sub), &client).await });
    let s = curve_handshake(&mut a, cfg(SocketType::XPub), &server).await;
    drop(a);
    assert!(
        matches!(
            s,
            Err(ZmtpError::Curve(CurveError::BoxDidNotOpen {
                command: "HELLO"
            }))
        ),
        "{s:?}"
    );
    let c = c.await.unwrap();
    assert!(
        matches!(c, Err(ZmtpError::Curve(CurveError::HelloRefused { .. }))),
        "{c:?}"
    );
}

#[tokio::test]
async fn null_and_curve_peers_refuse_each_other() {
    let server = CurveConfig::server(CurveKeyPair::generate());
    let (mut a, mut b) = tokio::io::duplex(1 << 20);
    let (s, n) = tokio::join!(
        curve_handshake(&mut a, cfg(SocketType::XPub), &server),
        handshake(&mut b, cfg(SocketType::Sub))
    );
    assert!(
        matches!(s, Err(ZmtpError::MechanismMismatch { .. })),
        "{s:?}"
    );
    assert!(
        matches!(n, Err(ZmtpError::UnsupportedMechanism(ref m)) if m == "CURVE"),
        "{n:?}"
    );
    // two servers
    let other = CurveConfig::server(CurveKeyPair::generate());
    let (mut a, mut b) = tokio::io::duplex(1 << 20);
    let (s, o) = tokio::join!(
        curve_handshake(&mut a, cfg(SocketType::XPub), &server),
        curve_handshake(&mut b, cfg(SocketType::Sub), &other)
    );
    assert!(
        matches!(s, Err(ZmtpError::MechanismMismatch { .. })),
        "{s:?}"
    );
    assert!(
        matches!(o, Err(ZmtpError::MechanismMismatch { .. })),
        "{o:?}"
    );
    // two clients (libzmq sets no as-server bit, so only the commands tell)
    let key = CurveKeyPair::generate().public();
    let one = CurveConfig::client(CurveKeyPair::generate(), key);
    let two = CurveConfig::client(CurveKeyPair::generate(), key);
    let (mut a, mut b) = tokio::io::duplex(1 << 20);
    let (r1, r2) = tokio::join!(
        curve_handshake(&mut a, cfg(SocketType::XPub), &one),
        curve_handshake(&mut b, cfg(SocketType::Sub), &two)
    );
    assert!(matches!(r1, Err(ZmtpError::UnexpectedCommand(_))), "{r1:?}");
    assert!(matches!(r2, Err(ZmtpError::UnexpectedCommand(_))), "{r2:?}");
}

/// (1) a libzmq CURVE XPUB server, admitting only our key through ZAP; a Rust SUB client.
#[tokio::test]
async fn pyzmq_xpub_server_to_rust_sub_client() {
    let server = CurveKeyPair::generate();
    let me = CurveKeyPair::generate();
    let mut py = Py::spawn(&[
        "bind",
        "XPUB",
        "--server-secret",
        &server.secret_z85(),
        "--allow",
        &me.public().to_z85(),
    ]);
    let mut tcp = TcpStream::connect(py.endpoint()).await.unwrap();
    let curve = CurveConfig::client(me, server.public());
    let mut hs = curve_handshake(&mut tcp, cfg(SocketType::Sub), &curve)
        .await
        .unwrap();
    assert_eq!(hs.peer.socket_type, SocketType::XPub);
    let mut hs_decoder = hs.decoder.with_limits(Limits::default());

    let mut plain = BytesMut::new();
    Subscription::Subscribe(Bytes::from_static(b"A.")).encode(&mut plain);
    let mut out = BytesMut::new();
    hs.sealer.seal_wire(&mut out, &plain).unwrap();
    send(&mut tcp, &out).await;
    assert_eq!(py.cmd("recv"), format!("MSG {}", hex(&[b"\x01A."])));

    // XPUB filters: B. is not for us, A. is
    assert_eq!(py.cmd(&format!("send {}", hex(&[b"B.no", b"x"]))), "OK");
    assert_eq!(
        py.cmd(&format!("send {}", hex(&[b"A.yes", &[7u8; 300]]))),
        "OK"
    );
    let item = next(&mut tcp, &mut hs_decoder, &mut hs.buffer)
        .await
        .unwrap();
    assert_eq!(frames(&item), vec![&b"A.yes"[..], &[7u8; 300][..]]);

    // a sealed PING (COMMAND flag inside the box) gets a sealed PONG from libzmq
    let mut out = BytesMut::new();
    hs.sealer
        .seal_command(
            &mut out,
            &Command::Ping {
                ttl_deciseconds: 0,
                context: Bytes::from_static(b"hb"),
            },
        )
        .unwrap();
    send(&mut tcp, &out).await;
    let item = next(&mut tcp, &mut hs_decoder, &mut hs.buffer)
        .await
        .unwrap();
    assert_eq!(
        item,
        Inbound::Command(Command::Pong {
            context: Bytes::from_static(b"hb")
        })
    );
}

/// (1b) a pyzmq CURVE server whose ZAP handler refuses our key: typed error, no hang.
#[tokio::test]
async fn pyzmq_server_refusing_our_key() {
    let server = CurveKeyPair::generate();
    let mut py = Py::spawn(&[
        "bind",
        "XPUB",
        "--server-secret",
        &server.secret_z85(),
        "--allow",
        &CurveKeyPair::generate().public().to_z85(),
    ]);
    let mut tcp = TcpStream::connect(py.endpoint()).await.unwrap();
    let curve = CurveConfig::client(CurveKeyPair::generate(), server.public());
    let r = curve_handshake(&mut tcp, cfg(SocketType::Sub), &curve).await;
    assert!(
        matches!(r, Err(ZmtpError::Curve(CurveError::InitiateRefused { .. }))),
        "{r:?}"
    );
    drop(py.cmd("quit"));
}

/// (3) wrong server key against libzmq: the server hangs up after HELLO; a typed error.
#[tokio::test]
async fn wrong_server_key_against_pyzmq_is_a_typed_error() {
    let server = CurveKeyPair::generate();
    let py = Py::spawn(&["bind", "XPUB", "--server-secret", &server.secret_z85()]);
    let mut tcp = TcpStream::connect(py.endpoint()).await.unwrap();
    let wrong: CurvePublicKey = CurveKeyPair::generate().public();
    let curve = CurveConfig::client(CurveKeyPair::generate(), wrong);
    let r = curve_handshake(&mut tcp, cfg(SocketType::Sub), &curve).await;
    assert!(
        matches!(r, Err(ZmtpError::Curve(CurveError::HelloRefused { .. }))),
        "{r:?}"
    );
}

/// (4) our NULL client against a libzmq CURVE server.
#[tokio::test]
async fn null_client_against_pyzmq_curve_server() {
    let server = CurveKeyPair::generate();
    let py = Py::spawn(&["bind", "XPUB", "--server-secret", &server.secret_z85()]);
    let mut tcp = TcpStream::connect(py.endpoint()).await.unwrap();
    let r = handshake(&mut tcp, cfg(SocketType::Sub)).await;
    // libzmq hangs up as soon as it reads a greeting with another mechanism; our greeting is
    // staged (signature and version first), so libzmq's whole greeting is in by then
    assert!(
        matches!(r, Err(ZmtpError::UnsupportedMechanism(ref m)) if m == "CURVE"),
        "{r:?}"
    );
}

async fn accept(listener: &TcpListener) -> TcpStream {
    tokio::time::timeout(DEADLINE, listener.accept())
        .await
        .expect("no connection within the deadline")
        .unwrap()
        .0
}

/// A pyzmq CURVE client of `socktype` (with `client`'s keys, trusting `server_key`) connected
/// to a fresh listener of ours: the peer and our end of the accepted connection.
async fn py_client(
    socktype: &str,
    server_key: &CurvePublicKey,
    client: &CurveKeyPair,
    extra: &[&str],
) -> (Py, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    let (server, public, secret) = (
        server_key.to_z85(),
        client.public().to_z85(),
        client.secret_z85(),
    );
    let mut args = vec![
        "connect",
        socktype,
        &endpoint,
        "--server-key",
        &server,
        "--keypair",
        &public,
        &secret,
    ];
    args.extend_from_slice(extra);
    let py = Py::spawn(&args);
    (py, accept(&listener).await)
}

/// (2) a Rust CURVE XPUB server; a libzmq CURVE SUB client subscribes and receives.
#[tokio::test]
async fn rust_xpub_server_to_pyzmq_sub_client() {
    let server = CurveKeyPair::generate();
    let client = CurveKeyPair::generate();
    let (mut py, mut tcp) = py_client("SUB", &server.public(), &client, &[]).await;
    let curve = CurveConfig::server(server).admit_keys([client.public()]);
    let mut hs = curve_handshake(&mut tcp, cfg(SocketType::XPub), &curve)
        .await
        .unwrap();
    assert_eq!(hs.peer.socket_type, SocketType::Sub);
    assert_eq!(hs.peer_key, client.public());

    assert_eq!(py.cmd(&format!("sub {}", hex(&[b"A."]))), "OK");
    let item = next(&mut tcp, &mut hs.decoder, &mut hs.buffer)
        .await
        .unwrap();
    assert_eq!(
        subscription(&item),
        Some(Subscription::Subscribe(Bytes::from_static(b"A.")))
    );
    let mut out = BytesMut::new();
    hs.sealer
        .seal_message(&mut out, &[b"A.1", b"first"])
        .unwrap();
    hs.sealer
        .seal_message(&mut out, &[b"A.2", &[9u8; 70_000]])
        .unwrap();
    send(&mut tcp, &out).await;
    assert_eq!(py.cmd("recv"), format!("MSG {}", hex(&[b"A.1", b"first"])));
    assert_eq!(
        py.cmd("recv"),
        format!("MSG {}", hex(&[b"A.2", &[9u8; 70_000]]))
    );
}

/// (2b) a Rust CURVE XSUB server; a libzmq CURVE XPUB client receives its subscription and
/// publishes.
#[tokio::test]
async fn pyzmq_xpub_client_to_rust_xsub_server() {
    let server = CurveKeyPair::generate();
    let client = CurveKeyPair::generate();
    let (mut py, mut tcp) =
        py_client("XPUB", &server.public(), &client, &["--heartbeat", "20"]).await;
    let curve = CurveConfig::server(server);
    let mut hs = curve_handshake(&mut tcp, cfg(SocketType::XSub), &curve)
        .await
        .unwrap();
    assert_eq!(hs.peer.socket_type, SocketType::XPub);
    let mut out = BytesMut::new();
    hs.sealer.seal_message(&mut out, &[b"\x01T."]).unwrap();
    send(&mut tcp, &out).await;
    assert_eq!(py.cmd("recv"), format!("MSG {}", hex(&[b"\x01T."])));
    assert_eq!(py.cmd(&format!("send {}", hex(&[b"T.x", b"{}"]))), "OK");
    let mut pinged = false;
    let item = loop {
        match next(&mut tcp, &mut hs.decoder, &mut hs.buffer)
            .await
            .unwrap()
        {
            Inbound::Command(Command::Ping { .. }) => pinged = true,
            item => break item,
        }
    };
    assert_eq!(frames(&item), vec![&b"T.x"[..], &b"{}"[..]]);
    // libzmq's heartbeat: PINGs sealed with the COMMAND flag, before or after the message
    while !pinged {
        let item = next(&mut tcp, &mut hs.decoder, &mut hs.buffer)
            .await
            .unwrap();
        assert!(
            matches!(item, Inbound::Command(Command::Ping { .. })),
            "{item:?}"
        );
        pinged = true;
    }
}

/// (3b) a libzmq client with the wrong server key: our server cannot open HELLO.
#[tokio::test]
async fn pyzmq_client_with_wrong_server_key() {
    let server = CurveKeyPair::generate();
    let client = CurveKeyPair::generate();
    let (_py, mut tcp) = py_client("SUB", &CurveKeyPair::generate().public(), &client, &[]).await;
    let r = curve_handshake(
        &mut tcp,
        cfg(SocketType::XPub),
        &CurveConfig::server(server),
    )
    .await;
    assert!(
        matches!(
            r,
            Err(ZmtpError::Curve(CurveError::BoxDidNotOpen {
                command: "HELLO"
            }))
        ),
        "{r:?}"
    );
}

/// (4b) a libzmq NULL client against our CURVE server.
#[tokio::test]
async fn pyzmq_null_client_against_rust_curve_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    let _py = Py::spawn(&["connect", "SUB", &endpoint]);
    let mut tcp = accept(&listener).await;
    let curve = CurveConfig::server(CurveKeyPair::generate());
    let r = curve_handshake(&mut tcp, cfg(SocketType::XPub), &curve).await;
    // as above: libzmq may hang up on our CURVE greeting before sending its NULL one
    assert!(
        matches!(r, Err(ZmtpError::MechanismMismatch { ref peer, .. }) if peer == "NULL")
            || matches!(r, Err(ZmtpError::ClosedDuringHandshake)),
        "{r:?}"
    );
}

/// Key text from libzmq's own generator reads back to the same keys.
#[test]
fn pyzmq_generated_keys_round_trip() {
    let out = Process::new(python())
        .args([
            "-c",
            "import zmq; p, s = zmq.curve_keypair(); print(p.decode()); print(s.decode())",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "pyzmq is required");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let (public, secret) = (lines.next().unwrap(), lines.next().unwrap());
    let pair = CurveKeyPair::from_z85(public, secret).unwrap();
    assert_eq!(pair.public().to_z85(), public);
    assert_eq!(pair.secret_z85(), secret);
}

mod hostile {
    //! Arbitrary bytes from a peer against both CURVE roles: never a panic, never a wait on a
    //! peer that has closed (the clock is paused, so any wait would fire the timeout at once).
    use super::*;
    use proptest::prelude::*;
    use xbus_zmtp::Greeting;

    fn run(input: Vec<u8>, curve: CurveConfig) -> Result<(), TestCaseError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let (mut ours, mut peer) = tokio::io::duplex(256 * 1024);
            peer.write_all(&input).await.unwrap();
            peer.shutdown().await.unwrap();
            let mut config = HandshakeConfig::new(SocketType::XPub);
            config.max_command_size = 4096;
            let r = curve_handshake(&mut ours, &config, &curve).await;
            prop_assert!(
                !matches!(r, Err(ZmtpError::HandshakeTimeout(_))),
                "waited on a closed peer"
            );
            prop_assert!(r.is_err(), "a random peer completed a CURVE handshake");
            Ok(())
        })
    }

    fn curve_greeting(as_server: bool) -> Vec<u8> {
        Greeting {
            major: 3,
            minor: 1,
            mechanism: "CURVE".into(),
            as_server,
        }
        .encode()
        .to_vec()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn garbage_after_a_curve_greeting(
            body in proptest::collection::vec(any::<u8>(), 0..1024),
            // a plausible command frame header, so the parsers see the body
            name in prop_oneof![Just(&b"\x05HELLO"[..]), Just(&b"\x07WELCOME"[..]), Just(&b"\x08INITIATE"[..]), Just(&b"\x05READY"[..]), Just(&b"\x05ERROR"[..])],
            server in any::<bool>(),
        ) {
            let mut input = curve_greeting(!server);
            let len = name.len() + body.len();
            input.push(0x06);
            input.extend_from_slice(&(len as u64).to_be_bytes());
            input.extend_from_slice(name);
            input.extend_from_slice(&body);
            let keys = CurveKeyPair::from_secret_bytes([7; 32]);
            let curve = if server {
                CurveConfig::server(keys)
            } else {
                CurveConfig::client(keys, CurveKeyPair::from_secret_bytes([8; 32]).public())
            };
            run(input, curve)?;
        }

        #[test]
        fn garbage_from_the_first_byte(input in proptest::collection::vec(any::<u8>(), 0..512)) {
            run(input, CurveConfig::server(CurveKeyPair::from_secret_bytes([7; 32])))?;
        }
    }
}
