//! Arbitrary bytes after the handshake, cut into arbitrary reads. Properties: the decoder never
//! panics; it yields the same items whichever way the bytes are split (TCP may split them
//! anywhere); every message respects the limits and its wire bytes decode to itself; every
//! command survives an encode/parse round trip (an ERROR's reason only as far as lossy UTF-8
//! allows).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use xbus_zmtp::{Command, Decoder, Inbound, Limits, Subscription, ZmtpError};

const LIMITS: Limits = Limits {
    max_message_size: 4096,
    max_frames: 8,
};

/// Decodes `data` delivered in reads of the sizes `cuts` cycles through (all at once when
/// `cuts` is empty): the items up to the end or the first error, and that error.
fn decode_in_reads(data: &[u8], cuts: &[u8]) -> (Vec<Inbound>, Option<ZmtpError>) {
    let mut decoder = Decoder::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut rest = data;
    let mut cut = cuts.iter().cycle();
    while !rest.is_empty() {
        let n = match cut.next() {
            Some(&c) => (usize::from(c) % 97 + 1).min(rest.len()),
            None => rest.len(),
        };
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => return (items, Some(e)),
            }
        }
    }
    (items, None)
}

fn check_message(m: &xbus_zmtp::Message) {
    assert!(m.frame_count() >= 1 && m.frame_count() <= LIMITS.max_frames);
    let body: usize = m.frames().map(|f| f.len()).sum();
    assert!(body as u64 <= LIMITS.max_message_size);
    assert_eq!(m.first_frame(), m.frames().next().unwrap_or_default());
    let _ = Subscription::from_message(m);
    // the wire bytes are a complete message on their own
    let mut again = BytesMut::from(&m.wire()[..]);
    match Decoder::new(LIMITS).decode(&mut again) {
        Ok(Some(Inbound::Message(m2))) => assert_eq!(&m2, m),
        other => panic!("wire bytes did not re-decode: {other:?}"),
    }
    assert!(again.is_empty());
}

fn check_command(c: &Command) {
    let _ = Subscription::from_command(c);
    let mut wire = BytesMut::new();
    c.encode(&mut wire);
    match (c, Decoder::new(Limits::default()).decode(&mut wire)) {
        // an ERROR's reason is decoded lossily, for display: only its kind must survive
        (Command::Error(_), Ok(Some(Inbound::Command(Command::Error(_))))) => {}
        (_, Ok(Some(Inbound::Command(c2)))) => assert_eq!(&c2, c),
        (_, other) => panic!("command {c:?} did not round-trip: {other:?}"),
    }
}

fuzz_target!(|input: &[u8]| {
    // first byte: how many of the next bytes describe the read sizes; the rest is the stream
    let Some((&k, input)) = input.split_first() else {
        return;
    };
    let (cuts, data) = input.split_at(usize::from(k % 8).min(input.len()));
    let (whole, whole_err) = decode_in_reads(data, &[]);
    let (split, split_err) = decode_in_reads(data, cuts);
    assert_eq!(whole, split, "items depend on how the bytes were split");
    assert_eq!(
        whole_err.as_ref().map(ZmtpError::kind),
        split_err.as_ref().map(ZmtpError::kind),
        "errors depend on how the bytes were split"
    );
    for item in &whole {
        match item {
            Inbound::Message(m) => check_message(m),
            Inbound::Command(c) => check_command(c),
        }
    }
});
