//! Fuzz target for the frame and greeting decoding a hostile peer can reach, on the stable
//! toolchain (proptest; the coverage-guided libFuzzer targets are in `zmtp/fuzz/`, see its
//! README). CI runs a bounded number of cases; run it longer with
//!
//! ```sh
//! PROPTEST_CASES=200000 cargo test --release -p xbus-proxy --test fuzz_decoder
//! ```
//!
//! Properties: arbitrary bytes never panic or hang the handshake or the decoder; a decoder fed
//! structurally valid traffic that has been mutated either errors or yields messages whose
//! wire bytes re-decode to themselves; a live proxy fed arbitrary bytes (before or after a
//! valid handshake) only closes that connection and keeps serving.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;
use xbus_zmtp::{
    handshake, Decoder, Greeting, HandshakeConfig, Inbound, Limits, SocketType, Subscription,
};

fn limits() -> Limits {
    Limits {
        max_message_size: 64 * 1024,
        max_frames: 16,
    }
}

/// Valid traffic: a greeting, a READY, then messages and subscriptions.
fn valid_stream(msgs: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.extend_from_slice(&Greeting::ours().encode());
    xbus_zmtp::Command::ready(SocketType::Pub, None).encode(&mut out);
    for m in msgs {
        let frames: Vec<&[u8]> = m.iter().map(|f| &f[..]).collect();
        xbus_zmtp::encode_message(&mut out, &frames);
        Subscription::Subscribe(bytes::Bytes::from_static(b"s")).encode(&mut out);
    }
    out.to_vec()
}

fn mutate(mut data: Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    for &(at, byte) in edits {
        if !data.is_empty() {
            let i = at % data.len();
            data[i] = byte;
        }
    }
    if let Some(c) = cut {
        data.truncate(c % (data.len() + 1));
    }
    data
}

/// Runs the proxy-side handshake and decoder over `data` (delivered in `chunk`-sized pieces);
/// returns the decoded items, never panicking.
fn run_engine(data: Vec<u8>, chunk: usize) -> Vec<Inbound> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (mut ours, mut theirs) = tokio::io::duplex(1 << 20);
        let peer = tokio::spawn(async move {
            for piece in data.chunks(chunk.max(1)) {
                if theirs.write_all(piece).await.is_err() {
                    break;
                }
            }
            // EOF after the data, but keep the stream so the proxy side can still write
            let _ = theirs.shutdown().await;
            theirs
        });
        let cfg = HandshakeConfig::new(SocketType::XSub)
            .accept(&[SocketType::Pub, SocketType::XPub])
            .timeout(Duration::from_millis(200));
        let mut items = Vec::new();
        if let Ok(hs) = handshake(&mut ours, &cfg).await {
            let mut buf = hs.buffer;
            let mut rest = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut ours, &mut rest).await;
            buf.extend_from_slice(&rest);
            let mut dec = Decoder::new(limits());
            while let Ok(Some(item)) = dec.decode(&mut buf) {
                items.push(item);
            }
        }
        drop(peer);
        items
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary bytes through handshake + decoder: no panic, no hang.
    #[test]
    fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512), chunk in 1usize..70) {
        let _ = run_engine(data, chunk);
    }

    /// Arbitrary bytes after a valid greeting prefix (so the greeting parser's later fields and
    /// the READY parser are reached).
    #[test]
    fn arbitrary_after_greeting(tail in proptest::collection::vec(any::<u8>(), 0..512), keep in 10usize..64) {
        let mut data = Greeting::ours().encode()[..keep].to_vec();
        data.extend_from_slice(&tail);
        let _ = run_engine(data, 13);
    }

    /// Mutated valid traffic: whatever decodes is self-consistent.
    #[test]
    fn mutated_valid_traffic(
        msgs in proptest::collection::vec(proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..4), 1..6),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let data = mutate(valid_stream(&msgs), &edits, cut);
        let unmutated = edits.is_empty() && cut.is_none();
        let items = run_engine(data, 4096);
        if unmutated {
            // untouched traffic decodes completely: each message plus its subscription
            prop_assert_eq!(items.len(), msgs.len() * 2);
        }
        for item in items {
            if let Inbound::Message(m) = item {
                let mut again = BytesMut::from(&m.wire()[..]);
                match Decoder::new(limits()).decode(&mut again) {
                    Ok(Some(Inbound::Message(m2))) => prop_assert_eq!(m2.wire(), m.wire()),
                    other => prop_assert!(false, "re-decode gave {:?}", other),
                }
                prop_assert!(m.frame_count() >= 1 && m.frame_count() <= 16);
            }
        }
    }
}

/// The live proxy: random garbage on both sides, before and after handshakes; the proxy must
/// keep serving a healthy pair throughout.
#[tokio::test]
async fn live_proxy_survives_garbage() {
    let h = builder()
        .handshake_timeout(Duration::from_millis(300))
        .max_message_size(64 * 1024)
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let (mut publ, mut sub) = pub_and_sub(&h, "H.").await;
    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
        .min(2000);
    let mut rng = 0x9E37_79B9u32;
    for i in 0..cases {
        let len = (rand_u32(&mut rng) % 600) as usize;
        let mut junk: Vec<u8> = (0..len).map(|_| rand_u32(&mut rng) as u8).collect();
        let ep = if i % 2 == 0 { fe(&h) } else { be(&h) };
        if i % 3 == 0 {
            // after a valid handshake
            let ty = if i % 2 == 0 {
                SocketType::Pub
            } else {
                SocketType::Sub
            };
            let mut p = Peer::connect(&ep, ty).await;
            p.send_raw(&junk).await;
            drop(p);
        } else {
            if i % 3 == 1 {
                let mut g = Greeting::ours().encode().to_vec();
                g.truncate(11 + (len % 53));
                g.append(&mut junk);
                junk = g;
            }
            let mut s = ep.connect().await.unwrap();
            let _ = s.write_all(&junk).await;
            drop(s);
        }
        publ.send(&[b"H.x", &i.to_be_bytes()]).await;
        assert_eq!(&sub.recv().await[1][..], &i.to_be_bytes());
    }
    h.shutdown().await;
}

/// xorshift32: deterministic junk without another dependency.
fn rand_u32(state: &mut u32) -> u32 {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    *state
}
