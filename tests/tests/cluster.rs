//! Proxies joined through a real three-node NATS cluster (Debian's `nats-server`): events
//! cross proxies to exactly the subscribers whose filters match, once and in per-publisher
//! order; interest follows subscribers; losing a NATS node or a proxy costs only what it
//! must.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use xbus::{PublisherBlocking, SubscriberAsync};
use xbus_tests::{NatsCluster, ProxyProcess};

#[derive(Serialize, Deserialize, xbus::Event, Debug, Clone, PartialEq)]
struct Tick {
    #[event(topic)]
    source: String,
    n: u64,
}

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// `GET` on a proxy's HTTP face: (status, JSON).
fn http(proxy: &ProxyProcess, path: &str) -> (u16, Value) {
    let url = format!("{}{path}", proxy.http.as_ref().unwrap());
    let mut resp = agent().get(&url).call().unwrap();
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

/// The proxy's `/metrics` page.
fn metrics(proxy: &ProxyProcess) -> String {
    let url = format!("{}/metrics", proxy.http.as_ref().unwrap());
    agent()
        .get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

fn cluster_stats(proxy: &ProxyProcess) -> Value {
    http(proxy, "/api/v1/stats").1["stats"]["cluster"].clone()
}

/// Polls `cond` until it holds (20 s at most).
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A proxy joined to the cluster through `url`, once `/readyz` says its link is up.
fn proxy_on(url: &str) -> ProxyProcess {
    let proxy = ProxyProcess::start(&["--cluster", url]);
    wait_until("the proxy is ready (its cluster link up)", || {
        http(&proxy, "/readyz").0 == 200
    });
    assert_eq!(http(&proxy, "/readyz").1["cluster"], "connected");
    proxy
}

/// Whether a NATS filter (`*`, trailing `>`) matches a subject.
fn matches(filter: &str, subject: &str) -> bool {
    let (f, s): (Vec<&str>, Vec<&str>) =
        (filter.split('.').collect(), subject.split('.').collect());
    for (i, t) in f.iter().enumerate() {
        match *t {
            ">" => return s.len() > i,
            "*" if i < s.len() => {}
            _ if s.get(i) == Some(t) => {}
            _ => return false,
        }
    }
    f.len() == s.len()
}

/// How many of NATS node `i`'s routes (its peers) carry interest in `subject`.
fn routes_with_interest(nats: &NatsCluster, i: usize, subject: &str) -> usize {
    nats.monitor(i, "routez?subs=1")
        .and_then(|v| v["routes"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|r| {
            r["subscriptions_list"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .any(|f| matches(f, subject))
        })
        .count()
}

/// Whether NATS node `i` knows of interest in `subject`: from its own clients, or through a
/// route.
/// The subscriptions of node `i`'s clients to events (not to the loss notices).
fn event_subscriptions(nats: &NatsCluster, i: usize) -> Vec<String> {
    nats.client_subscriptions(i)
        .into_iter()
        .filter(|s| s.starts_with("xbus."))
        .collect()
}

fn interest_at(nats: &NatsCluster, i: usize, subject: &str) -> bool {
    routes_with_interest(nats, i, subject) > 0
        || nats
            .client_subscriptions(i)
            .iter()
            .any(|f| matches(f, subject))
}

fn publish_ticks(
    endpoint: String,
    source: &'static str,
    count: u64,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let publisher = PublisherBlocking::connect(&endpoint).unwrap();
        for n in 0..count {
            publisher
                .publish(&Tick {
                    source: source.into(),
                    n,
                })
                .unwrap();
        }
        publisher.close(Duration::from_secs(20)).unwrap();
    })
}

/// Receives until every source in `expect` has sent its count; each source's events once,
/// in order; a source not in `expect` fails the test.
async fn receive_ticks(sub: &mut SubscriberAsync<Tick>, expect: &[(&str, u64)]) {
    let mut next: Vec<u64> = vec![0; expect.len()];
    while next.iter().zip(expect).any(|(n, (_, count))| n < count) {
        let tick = sub.get(WAIT).await.unwrap();
        let i = expect
            .iter()
            .position(|(s, _)| *s == tick.source)
            .unwrap_or_else(|| panic!("{tick:?} does not match this subscriber's filter"));
        assert_eq!(
            tick.n, next[i],
            "{}: lost, repeated or out of order",
            tick.source
        );
        next[i] += 1;
    }
}

/// The next thing `sub` gets is the report of events from other proxies lost (how many
/// unknown) before event `before`.
async fn expect_cluster_loss(sub: &mut SubscriberAsync<Tick>, before: u64, count: u64) {
    match sub.get(WAIT).await {
        Err(xbus::Error::Gap(xbus::Gap::ClusterLost {
            before_seq,
            at_least,
            ..
        })) => {
            assert_eq!(before_seq, before, "where the loss sits in the stream");
            assert_eq!(at_least, count, "how many were lost, at least");
        }
        other => panic!("expected a cluster loss to be reported, got {other:?}"),
    }
}

/// A subscriber to every `Tick` at `proxy`, once the proxy has applied its subscription.
async fn every_tick_at(proxy: &ProxyProcess) -> SubscriberAsync<Tick> {
    let sub = SubscriberAsync::<Tick>::connect(&proxy.backend)
        .await
        .unwrap();
    sub.subscribe::<Tick>(None).unwrap();
    sub.wait_subscribed(Duration::from_secs(10)).await.unwrap();
    sub
}

/// A pyzmq peer (see `py/cluster_peer.py`).
fn py(args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/cluster_peer.py");
    let mut child = Command::new(xbus_tests::pyzmq::python())
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

fn line(out: &mut BufReader<std::process::ChildStdout>) -> String {
    let mut l = String::new();
    out.read_line(&mut l).unwrap();
    l.trim_end().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_exactly_the_matching_subscribers_on_any_proxy_once_and_in_order() {
    const N: u64 = 2_000;
    let nats = NatsCluster::start(3);
    let proxies: Vec<ProxyProcess> = (0..3).map(|i| proxy_on(&nats.url(i))).collect();
    let (a, b, c) = (&proxies[0], &proxies[1], &proxies[2]);

    // every tick, on B; only A's, on C; only B's, on A
    let mut every_on_b = SubscriberAsync::<Tick>::connect(&b.backend).await.unwrap();
    every_on_b.subscribe::<Tick>(None).unwrap();
    let mut from_a_on_c = SubscriberAsync::<Tick>::connect(&c.backend).await.unwrap();
    from_a_on_c.subscribe::<Tick>(Some("a")).unwrap();
    let mut from_b_on_a = SubscriberAsync::<Tick>::connect(&a.backend).await.unwrap();
    from_b_on_a.subscribe::<Tick>(Some("b")).unwrap();
    for sub in [&every_on_b, &from_a_on_c, &from_b_on_a] {
        sub.wait_subscribed(Duration::from_secs(10)).await.unwrap();
    }
    // a libzmq subscriber on A for what a libzmq publisher sends on C
    let (mut raw_sub, mut raw_out) = py(&["sub", &a.backend, "Raw.", &N.to_string()]);
    assert_eq!(line(&mut raw_out), "READY");
    wait_until("A has the libzmq subscription", || {
        http(a, "/api/v1/stats").1["stats"]["subscriptions"].as_u64() == Some(2)
    });
    // the interest has reached the publishers' NATS nodes from both other nodes (A's ticks
    // are wanted on B and C; B's on A, and locally; C's raw messages on A)
    wait_until("the interest reached every publisher's node", || {
        routes_with_interest(&nats, 0, "xbus.Tick.a") == 2
            && routes_with_interest(&nats, 1, "xbus.Tick.b") == 1
            && routes_with_interest(&nats, 2, "xbus.Raw.c") == 1
    });

    let pub_a = publish_ticks(a.frontend.clone(), "a", N);
    let pub_b = publish_ticks(b.frontend.clone(), "b", N);
    let (mut raw_pub, mut raw_pub_out) = py(&["pub", &c.frontend, "Raw.c.", &N.to_string()]);
    receive_ticks(&mut every_on_b, &[("a", N), ("b", N)]).await;
    receive_ticks(&mut from_a_on_c, &[("a", N)]).await;
    receive_ticks(&mut from_b_on_a, &[("b", N)]).await;
    // the libzmq subscriber gets exactly two frames per message, in order
    for n in 0..N {
        assert_eq!(line(&mut raw_out), format!("2 Raw.c. {n}"));
    }
    pub_a.join().unwrap();
    pub_b.join().unwrap();
    assert_eq!(line(&mut raw_pub_out), "SENT");
    assert!(raw_pub.wait().unwrap().success());
    assert!(raw_sub.wait().unwrap().success());

    // nothing more arrives: a last tick from A after everything shows none came twice
    publish_ticks(a.frontend.clone(), "z", 1).join().unwrap();
    let last = every_on_b.get(WAIT).await.unwrap();
    assert_eq!((last.source.as_str(), last.n), ("z", 0));
    // C's subscriber wants only "a": it got nothing else, and A's B-only one nothing of A's
    assert!(from_a_on_c.try_get().is_none());
    assert!(from_b_on_a.try_get().is_none());

    let (sa, sb) = (cluster_stats(a), cluster_stats(b));
    assert_eq!(sa["messages_out"].as_u64(), Some(N + 1), "{sa}");
    assert_eq!(sb["messages_out"].as_u64(), Some(N), "{sb}");
    for s in [&sa, &sb] {
        assert_eq!(s["dropped_out"], 0, "{s}");
        assert_eq!(s["dropped_in"], 0, "{s}");
        assert_eq!(s["malformed_in"], 0, "{s}");
    }
    // B received A's ticks (and the last one) from NATS; A received B's and C's raw ones
    assert_eq!(sb["messages_in"].as_u64(), Some(N + 1), "{sb}");
    assert_eq!(sa["messages_in"].as_u64(), Some(2 * N), "{sa}");
    // and /metrics says the same
    let metrics = metrics(a);
    for line in [
        format!("xbus_cluster_messages_total{{direction=\"out\"}} {}", N + 1),
        format!("xbus_cluster_messages_total{{direction=\"in\"}} {}", 2 * N),
        "xbus_cluster_connected 1.0".to_owned(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interest_follows_subscribers_and_unsubscribing_stops_traffic_to_a_proxy() {
    let nats = NatsCluster::start(3);
    let a = proxy_on(&nats.url(0));
    let b = proxy_on(&nats.url(1));
    // before anyone subscribes, B holds no NATS subscription
    assert!(
        event_subscriptions(&nats, 1).is_empty(),
        "{:?}",
        event_subscriptions(&nats, 1)
    );

    let mut ticks = SubscriberAsync::<Tick>::connect(&b.backend).await.unwrap();
    ticks.subscribe::<Tick>(None).unwrap();
    let mut narrower = SubscriberAsync::<Tick>::connect(&b.backend).await.unwrap();
    narrower.subscribe::<Tick>(Some("a")).unwrap();
    let mut marks = SubscriberAsync::<Tick>::connect(&b.backend).await.unwrap();
    marks.subscribe::<Tick>(Some("mark")).unwrap();
    for sub in [&ticks, &narrower, &marks] {
        sub.wait_subscribed(Duration::from_secs(10)).await.unwrap();
    }
    // the minimal cover: "Tick." holds "Tick.a." and "Tick.mark." (no message twice)
    wait_until("B subscribes to the cover of its interest", || {
        event_subscriptions(&nats, 1) == ["xbus.Tick", "xbus.Tick.>"]
    });
    wait_until("A's node hears of it", || {
        routes_with_interest(&nats, 0, "xbus.Tick.a") == 1
    });
    publish_ticks(a.frontend.clone(), "a", 100).join().unwrap();
    receive_ticks(&mut ticks, &[("a", 100)]).await;
    receive_ticks(&mut narrower, &[("a", 100)]).await;
    assert_eq!(cluster_stats(&b)["messages_in"], 100);

    // the wide subscriber leaves: the cover narrows to what is still wanted
    drop(ticks);
    wait_until("B's subscriptions narrow", || {
        event_subscriptions(&nats, 1)
            == [
                "xbus.Tick.a",
                "xbus.Tick.a.>",
                "xbus.Tick.mark",
                "xbus.Tick.mark.>",
            ]
    });
    // then everyone interested in "a" leaves: A's ticks stop reaching B at all
    drop(narrower);
    wait_until("B keeps only the marks", || {
        event_subscriptions(&nats, 1) == ["xbus.Tick.mark", "xbus.Tick.mark.>"]
    });
    wait_until("A's node forgets B's interest in a", || {
        routes_with_interest(&nats, 0, "xbus.Tick.a") == 0
    });
    let before = nats.monitor(1, "connz").unwrap();
    let publisher = PublisherBlocking::connect(&a.frontend).unwrap();
    for n in 0..1_000 {
        publisher
            .publish(&Tick {
                source: "a".into(),
                n,
            })
            .unwrap();
    }
    // a mark after them: when B has it, anything of A's sent before it would have arrived
    publisher
        .publish(&Tick {
            source: "mark".into(),
            n: 0,
        })
        .unwrap();
    publisher.close(Duration::from_secs(20)).unwrap();
    receive_ticks(&mut marks, &[("mark", 1)]).await;
    let stats = cluster_stats(&b);
    assert_eq!(
        stats["messages_in"], 101,
        "only the mark reached B: {stats}"
    );
    let after = nats.monitor(1, "connz").unwrap();
    let out_msgs = |v: &Value| -> u64 {
        v["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["out_msgs"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        out_msgs(&after) - out_msgs(&before),
        1,
        "NATS sent B only the mark"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_nats_node_or_a_proxy_costs_only_its_own_part() {
    let mut nats = NatsCluster::start(3);
    let a = proxy_on(&nats.url(0));
    let mut b = proxy_on(&nats.url(1));
    let c = proxy_on(&nats.url(2));
    let mut on_c = every_tick_at(&c).await;
    wait_until("A's node hears C's interest", || {
        routes_with_interest(&nats, 0, "xbus.Tick.a") == 1
    });
    publish_ticks(a.frontend.clone(), "a", 500).join().unwrap();
    receive_ticks(&mut on_c, &[("a", 500)]).await;

    // C's NATS node dies: C's link moves to another node (learnt from the cluster), and
    // A's events reach C again once its interest is back
    nats.kill(2);
    wait_until("C reconnects through another node", || {
        let s = cluster_stats(&c);
        s["state"] == "connected" && s["disconnects"].as_u64() >= Some(1)
    });
    wait_until("C's interest is back at A's node", || {
        interest_at(&nats, 0, "xbus.Tick.a")
    });
    publish_ticks(a.frontend.clone(), "b", 500).join().unwrap();
    // C's subscriber learns that what crossed while C was away is lost, then gets the rest
    expect_cluster_loss(&mut on_c, 501, 0).await;
    receive_ticks(&mut on_c, &[("b", 500)]).await;

    // proxy B dies: A and C do not notice
    b.kill();
    publish_ticks(a.frontend.clone(), "c", 500).join().unwrap();
    receive_ticks(&mut on_c, &[("c", 500)]).await;
    let s = cluster_stats(&a);
    assert_eq!(s["disconnects"], 0, "{s}");
    assert_eq!(s["dropped_out"], 0, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_nats_outage_local_delivery_goes_on_and_what_could_not_cross_is_counted() {
    let mut nats = NatsCluster::start(1);
    let a = proxy_on(&nats.url(0));
    let mut local = every_tick_at(&a).await;

    nats.kill(0);
    wait_until("A sees the outage", || {
        cluster_stats(&a)["state"] == "disconnected"
    });
    assert_eq!(
        http(&a, "/readyz").0,
        200,
        "an outage leaves the proxy ready"
    );
    publish_ticks(a.frontend.clone(), "a", 300).join().unwrap();
    receive_ticks(&mut local, &[("a", 300)]).await;
    let s = cluster_stats(&a);
    assert_eq!(s["dropped_out"], 300, "{s}");

    // NATS comes back: the link reconnects on its own, and events cross again
    nats.restart(0);
    wait_until("A reconnects", || cluster_stats(&a)["state"] == "connected");
    let b = proxy_on(&nats.url(0));
    let mut remote = every_tick_at(&b).await;
    wait_until("B's interest is known", || {
        interest_at(&nats, 0, "xbus.Tick.a")
    });
    publish_ticks(a.frontend.clone(), "b", 300).join().unwrap();
    receive_ticks(&mut remote, &[("b", 300)]).await;
    // A's subscriber is told that events from other proxies may have been lost during the
    // outage, in order: after the 300 local ones, before the next
    expect_cluster_loss(&mut local, 301, 0).await;
    receive_ticks(&mut local, &[("b", 300)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_proxy_could_not_send_is_told_to_the_other_proxies_subscribers() {
    // A must not move to B's node when its own goes
    let mut nats = NatsCluster::start_without_discovery(2);
    let a = proxy_on(&nats.url(0));
    let b = proxy_on(&nats.url(1));
    let mut remote = every_tick_at(&b).await;
    wait_until("B's interest reaches A's node", || {
        interest_at(&nats, 0, "xbus.Tick.a")
    });
    publish_ticks(a.frontend.clone(), "a", 100).join().unwrap();
    receive_ticks(&mut remote, &[("a", 100)]).await;

    // A's node goes away: what A's publishers send meanwhile cannot leave A
    nats.kill(0);
    wait_until("A sees the outage", || {
        cluster_stats(&a)["state"] == "disconnected"
    });
    publish_ticks(a.frontend.clone(), "b", 300).join().unwrap();
    wait_until("A counts what it dropped", || {
        cluster_stats(&a)["dropped_out"] == 300
    });
    // B, on the other node, has not heard of it yet
    assert_eq!(cluster_stats(&b)["lost_elsewhere"], 0);
    assert!(remote.try_get().is_none(), "nothing reached B");

    // once A is back it tells the others; B's subscriber learns of the 300 in order: after
    // the 100 it had, before what A sends next
    nats.restart(0);
    wait_until("A reconnects", || cluster_stats(&a)["state"] == "connected");
    wait_until("B hears of the loss", || {
        cluster_stats(&b)["lost_elsewhere"] == 300
    });
    wait_until("B's interest reaches A's node again", || {
        interest_at(&nats, 0, "xbus.Tick.c")
    });
    publish_ticks(a.frontend.clone(), "c", 100).join().unwrap();
    expect_cluster_loss(&mut remote, 101, 300).await;
    receive_ticks(&mut remote, &[("c", 100)]).await;
    let metrics = metrics(&b);
    let line = "xbus_cluster_lost_messages_total{reason=\"lost_elsewhere\"} 300";
    assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
}
