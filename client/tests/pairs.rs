//! Every publisher configuration delivers to every subscriber configuration through the real
//! proxy: {PublisherAsync, PublisherBlocking} × {MessagePack, JSON} publishers against
//! {SubscriberAsync, SubscriberBlocking} × {one event type, an EventSet enum} subscribers.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{tick, Inbox, TestProxy, Tick};
use xbus::{
    Codec, PublisherAsync, PublisherBlocking, PublisherOptions, SubscriberAsync, SubscriberBlocking,
};

const N: u64 = 200;
const WAIT: Option<Duration> = Some(Duration::from_secs(10));

/// What a received item says about the event: (source, seq).
trait Seen {
    fn seen(self) -> (String, u64);
}

impl Seen for Tick {
    fn seen(self) -> (String, u64) {
        (self.source, self.seq)
    }
}

impl Seen for Inbox {
    fn seen(self) -> (String, u64) {
        match self {
            Inbox::Tick(t) => (t.source, t.seq),
            Inbox::Alarm(a) => panic!("unexpected {a:?}"),
        }
    }
}

fn options(codec: Codec) -> PublisherOptions {
    PublisherOptions::new().codec(codec)
}

fn publish_blocking(endpoint: &str, codec: Codec, source: &str) {
    let publisher = PublisherBlocking::connect_with(endpoint, options(codec)).unwrap();
    for seq in 0..N {
        publisher.publish(&tick(source, seq)).unwrap();
    }
    publisher.flush(Duration::from_secs(10)).unwrap();
}

async fn publish_async(endpoint: &str, codec: Codec, source: &str) {
    let publisher = PublisherAsync::connect_with(endpoint, options(codec))
        .await
        .unwrap();
    for seq in 0..N {
        publisher.publish(&tick(source, seq)).await.unwrap();
    }
    publisher.flush(Duration::from_secs(10)).await.unwrap();
}

fn check(received: Vec<(String, u64)>, source: &str) {
    let expected: Vec<(String, u64)> = (0..N).map(|seq| (source.to_owned(), seq)).collect();
    assert_eq!(received, expected);
}

macro_rules! pairing {
    ($name:ident, blocking_pub, $codec:expr, async_sub, $set:ty) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let proxy = TestProxy::start();
            let mut sub = SubscriberAsync::<$set>::connect(&proxy.subscribe)
                .await
                .unwrap();
            sub.subscribe::<Tick>(Some("src")).unwrap();
            sub.wait_subscribed(Duration::from_secs(10)).await.unwrap();
            // The blocking publisher runs off the runtime, as in an application.
            let publishing = {
                let publish = proxy.publish.clone();
                tokio::task::spawn_blocking(move || publish_blocking(&publish, $codec, "src"))
            };
            let mut got = Vec::new();
            for _ in 0..N {
                got.push(sub.get(WAIT).await.unwrap().seen());
            }
            publishing.await.unwrap();
            check(got, "src");
        }
    };
    ($name:ident, async_pub, $codec:expr, async_sub, $set:ty) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let proxy = TestProxy::start();
            let mut sub = SubscriberAsync::<$set>::connect(&proxy.subscribe)
                .await
                .unwrap();
            sub.subscribe::<Tick>(Some("src")).unwrap();
            sub.wait_subscribed(Duration::from_secs(10)).await.unwrap();
            publish_async(&proxy.publish, $codec, "src").await;
            let mut got = Vec::new();
            for _ in 0..N {
                got.push(sub.get(WAIT).await.unwrap().seen());
            }
            check(got, "src");
        }
    };
    ($name:ident, blocking_pub, $codec:expr, blocking_sub, $set:ty) => {
        #[test]
        fn $name() {
            let proxy = TestProxy::start();
            let mut sub = SubscriberBlocking::<$set>::connect(&proxy.subscribe).unwrap();
            sub.subscribe::<Tick>(Some("src")).unwrap();
            sub.wait_subscribed(Duration::from_secs(10)).unwrap();
            publish_blocking(&proxy.publish, $codec, "src");
            let got: Vec<_> = (0..N).map(|_| sub.get(WAIT).unwrap().seen()).collect();
            check(got, "src");
        }
    };
    ($name:ident, async_pub, $codec:expr, blocking_sub, $set:ty) => {
        #[test]
        fn $name() {
            let proxy = TestProxy::start();
            let mut sub = SubscriberBlocking::<$set>::connect(&proxy.subscribe).unwrap();
            sub.subscribe::<Tick>(Some("src")).unwrap();
            sub.wait_subscribed(Duration::from_secs(10)).unwrap();
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(publish_async(&proxy.publish, $codec, "src"));
            let got: Vec<_> = sub
                .iter()
                .take(N as usize)
                .map(|r| r.unwrap().seen())
                .collect();
            check(got, "src");
        }
    };
}

pairing!(
    blocking_msgpack_to_async_single,
    blocking_pub,
    Codec::MessagePack,
    async_sub,
    Tick
);
pairing!(
    blocking_msgpack_to_async_set,
    blocking_pub,
    Codec::MessagePack,
    async_sub,
    Inbox
);
pairing!(
    blocking_msgpack_to_blocking_single,
    blocking_pub,
    Codec::MessagePack,
    blocking_sub,
    Tick
);
pairing!(
    blocking_msgpack_to_blocking_set,
    blocking_pub,
    Codec::MessagePack,
    blocking_sub,
    Inbox
);
pairing!(
    blocking_json_to_async_single,
    blocking_pub,
    Codec::Json,
    async_sub,
    Tick
);
pairing!(
    blocking_json_to_async_set,
    blocking_pub,
    Codec::Json,
    async_sub,
    Inbox
);
pairing!(
    blocking_json_to_blocking_single,
    blocking_pub,
    Codec::Json,
    blocking_sub,
    Tick
);
pairing!(
    blocking_json_to_blocking_set,
    blocking_pub,
    Codec::Json,
    blocking_sub,
    Inbox
);
pairing!(
    async_msgpack_to_async_single,
    async_pub,
    Codec::MessagePack,
    async_sub,
    Tick
);
pairing!(
    async_msgpack_to_async_set,
    async_pub,
    Codec::MessagePack,
    async_sub,
    Inbox
);
pairing!(
    async_msgpack_to_blocking_single,
    async_pub,
    Codec::MessagePack,
    blocking_sub,
    Tick
);
pairing!(
    async_msgpack_to_blocking_set,
    async_pub,
    Codec::MessagePack,
    blocking_sub,
    Inbox
);
pairing!(
    async_json_to_async_single,
    async_pub,
    Codec::Json,
    async_sub,
    Tick
);
pairing!(
    async_json_to_async_set,
    async_pub,
    Codec::Json,
    async_sub,
    Inbox
);
pairing!(
    async_json_to_blocking_single,
    async_pub,
    Codec::Json,
    blocking_sub,
    Tick
);
pairing!(
    async_json_to_blocking_set,
    async_pub,
    Codec::Json,
    blocking_sub,
    Inbox
);
