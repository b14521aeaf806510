//! Arbitrary bytes from a peer from the first byte on (greeting, READY, whatever follows),
//! against both sides' handshake configurations. Properties: never a panic or a hang (the peer
//! side is closed after the input, so a short input must end in an error, not a wait on the
//! clock); a
//! handshake that succeeds reports a socket type that the configuration accepts.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;
use xbus_zmtp::{handshake, HandshakeConfig, SocketType, ZmtpError};

fuzz_target!(|input: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    for ours in [SocketType::XSub, SocketType::XPub] {
        rt.block_on(async {
            let (mut proxy_side, mut peer_side) = tokio::io::duplex(256 * 1024);
            peer_side.write_all(input).await.expect("fits the pipe");
            peer_side.shutdown().await.expect("shutdown");
            let mut config = HandshakeConfig::new(ours);
            config.timeout = Duration::from_secs(5);
            config.max_command_size = 4096;
            // the clock is paused: waiting at all would fire the timeout at once
            match handshake(&mut proxy_side, &config).await {
                Ok(hs) => {
                    let accepted = match ours {
                        SocketType::XSub => [SocketType::Pub, SocketType::XPub],
                        _ => [SocketType::Sub, SocketType::XSub],
                    };
                    assert!(accepted.contains(&hs.peer.socket_type), "{:?}", hs.peer);
                }
                Err(ZmtpError::HandshakeTimeout(_)) => panic!("waited on a closed peer"),
                Err(_) => {}
            }
        });
    }
});
