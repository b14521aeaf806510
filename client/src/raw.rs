//! The untyped API for tools such as the `xbus` CLI: [`RawEvent`], and the `publish_raw` /
//! `subscribe_raw` methods on the clients.
//!
//! A `SubscriberAsync<RawEvent>` (or [`RawSubscriberAsync`]) receives every message its raw
//! prefixes select, whatever its type, as the two frames it came in:
//!
//! ```
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let proxy = xbus_proxy::Proxy::builder().frontend("tcp://127.0.0.1:0".parse()?)
//! #     .backend("tcp://127.0.0.1:0".parse()?).build()?.start().await?;
//! # let publish_endpoint = proxy.frontend_endpoints()[0].to_string();
//! # let subscribe_endpoint = proxy.backend_endpoints()[0].to_string();
//! // `xbus sub KernelStatusChanged`:
//! let mut sub = xbus::RawSubscriberAsync::connect(&subscribe_endpoint).await?;
//! sub.subscribe_raw(&xbus::schema::subscription_prefix_for_name("KernelStatusChanged", None)?);
//! sub.wait_subscribed(std::time::Duration::from_secs(5)).await?;
//!
//! // `xbus pub KernelStatusChanged '{"service": "svc1", "status": "idle"}'`:
//! let publisher = xbus::PublisherAsync::connect(&publish_endpoint).await?;
//! let json: serde_json::Value = serde_json::from_str(r#"{"service": "svc1", "status": "idle"}"#)?;
//! let topic = xbus::schema::topic_frame_for_name("KernelStatusChanged", json["service"].as_str())?;
//! let payload = xbus::schema::json_to_payload(&json, xbus::Codec::MessagePack)?;
//! publisher.publish_raw(&topic, &payload).await?;
//!
//! let event = sub.get(Some(std::time::Duration::from_secs(5))).await?;
//! assert_eq!(event.name()?, "KernelStatusChanged");
//! assert_eq!(event.topic()?, Some("svc1"));
//! assert_eq!(event.to_json()?, json);
//! # Ok(()) }
//! ```

use bytes::Bytes;
use xbus_schema::EventSet;

/// A received message, undecoded: the topic frame (`NAME "."` or `NAME "." TOPIC "."`) and
/// the payload (MessagePack or JSON) exactly as they arrived.
///
/// As an [`EventSet`] it accepts every message, and `subscribe::<E>` works for any event type
/// `E` on a `RawEvent` subscriber.
///
/// ```
/// use xbus::{EventSet, RawEvent};
/// let raw = RawEvent::decode(b"Ping.a.b.", br#"{"seq":1}"#).unwrap();
/// assert_eq!(raw.name().unwrap(), "Ping");
/// assert_eq!(raw.topic().unwrap(), Some("a.b"));
/// assert_eq!(raw.to_json().unwrap()["seq"], 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    /// The topic frame.
    pub topic_frame: Bytes,
    /// The payload frame.
    pub payload: Bytes,
}

impl RawEvent {
    /// The event NAME (the topic frame before its first `.`).
    pub fn name(&self) -> Result<&str, xbus_schema::Error> {
        xbus_schema::topic_frame_name(&self.topic_frame)
    }

    /// The topic (the topic frame after the NAME, without the dots around it), `None` if
    /// there is none.
    pub fn topic(&self) -> Result<Option<&str>, xbus_schema::Error> {
        Ok(xbus_schema::split_topic_frame(&self.topic_frame)?.1)
    }

    /// The payload as JSON, whichever codec it was sent with.
    pub fn to_json(&self) -> Result<serde_json::Value, xbus_schema::Error> {
        xbus_schema::payload_to_json(&self.payload)
    }
}

impl EventSet for RawEvent {
    fn names() -> &'static [&'static str] {
        &[]
    }

    fn decode(topic: &[u8], payload: &[u8]) -> Result<Self, xbus_schema::Error> {
        Ok(RawEvent {
            topic_frame: Bytes::copy_from_slice(topic),
            payload: Bytes::copy_from_slice(payload),
        })
    }

    fn contains_name(_name: &str) -> bool {
        true
    }
}

/// A [`SubscriberAsync`](crate::SubscriberAsync) of raw messages.
pub type RawSubscriberAsync = crate::SubscriberAsync<RawEvent>;

/// A [`SubscriberBlocking`](crate::SubscriberBlocking) of raw messages.
pub type RawSubscriberBlocking = crate::SubscriberBlocking<RawEvent>;
