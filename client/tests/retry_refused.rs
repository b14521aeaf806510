//! `retry_refused(false)`: `connect` fails at the first refusal instead of retrying until the
//! connect timeout (what a command-line tool wants); the default keeps retrying (what a
//! service that starts before the proxy wants).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use xbus::{
    ConnectFailure, Error, PublisherBlocking, PublisherOptions, SubscriberBlocking,
    SubscriberOptions,
};

/// An endpoint on which nothing listens.
fn closed_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("tcp://127.0.0.1:{port}")
}

/// Asserts a refused connect after exactly one attempt, well before the 30 s connect timeout.
fn assert_refused_at_once(result: Result<(), Error>, started: Instant) {
    let elapsed = started.elapsed();
    match result {
        Err(Error::Connect {
            failure: ConnectFailure::Refused,
            attempts,
            ..
        }) => assert_eq!(attempts, 1),
        other => panic!("expected a refused connect, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
fn without_retry_a_refused_connect_fails_at_the_first_attempt() {
    let endpoint = closed_endpoint();
    let started = Instant::now();
    let options = PublisherOptions::new()
        .connect_timeout(Duration::from_secs(30))
        .retry_refused(false);
    let result = PublisherBlocking::connect_with(&endpoint, options).map(drop);
    assert_refused_at_once(result, started);

    let started = Instant::now();
    let options = SubscriberOptions::new()
        .connect_timeout(Duration::from_secs(30))
        .retry_refused(false);
    let result = SubscriberBlocking::<xbus::RawEvent>::connect_with(&endpoint, options).map(drop);
    assert_refused_at_once(result, started);
}

#[test]
fn by_default_a_refused_connect_is_retried_until_the_timeout() {
    let endpoint = closed_endpoint();
    let options = PublisherOptions::new()
        .connect_timeout(Duration::from_millis(300))
        .reconnect_interval(Duration::from_millis(20));
    match PublisherBlocking::connect_with(&endpoint, options) {
        Err(Error::Connect {
            failure: ConnectFailure::Refused,
            attempts,
            ..
        }) => assert!(attempts > 1, "{attempts} attempt(s)"),
        other => panic!("expected a refused connect, got {other:?}"),
    }
}

#[test]
fn without_retry_a_listening_proxy_still_connects() {
    let proxy = xbus_tests::TestProxy::start();
    let options = PublisherOptions::new().retry_refused(false);
    let publisher = PublisherBlocking::connect_with(&proxy.publish, options).unwrap();
    assert!(publisher.state().is_connected());
}
