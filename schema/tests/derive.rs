//! `#[derive(Event)]` and `#[derive(EventSet)]`: generated behaviour and compile errors.

#![allow(clippy::unwrap_used, missing_docs)]

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use xbus_schema::{encode, topic_frame, Codec, Error, Event, EventSet};

#[derive(Serialize, Deserialize, Event, Debug, PartialEq, Clone)]
struct NoTopic {
    x: u8,
}

#[derive(Serialize, Deserialize, Event, Debug, PartialEq, Clone)]
#[event(name = "Renamed")]
struct WithName {
    #[event(topic)]
    service: String,
}

#[derive(Serialize, Deserialize, Event, Debug, PartialEq, Clone)]
#[event(topic = "{service}.{kind}")]
struct Formatted {
    service: String,
    kind: u32,
}

#[derive(Serialize, Deserialize, Event, Debug, PartialEq, Clone)]
#[event(topic = "fixed.{{x}}")]
struct Constant {}

#[derive(Serialize, Deserialize, Event, Debug, PartialEq, Clone)]
struct OptionalTopic {
    #[event(topic)]
    service: Option<Box<str>>,
}

#[derive(Serialize, Deserialize, Event, Debug, PartialEq, Clone)]
struct CowTopic {
    #[event(topic)]
    r#where: Cow<'static, str>,
}

#[derive(Serialize, Deserialize, Event, Debug, PartialEq, Clone)]
#[event(topic = "{0}")]
struct Newtype(Inner);

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Inner {
    a: u8,
}

impl std::fmt::Display for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a{}", self.a)
    }
}

#[derive(Serialize, Deserialize, Event, Debug, PartialEq, Clone)]
struct Generic<T> {
    value: T,
}

#[allow(non_camel_case_types)]
#[derive(Serialize, Deserialize, Event, Debug, PartialEq, Clone)]
struct r#type {}

mod facade {
    //! Stands in for the `xbus` crate, which re-exports `xbus_schema`'s items.
    pub use xbus_schema::*;
}

#[derive(Serialize, Deserialize, Event, Debug, PartialEq, Clone)]
#[event(crate = "crate::facade", topic = "{a}")]
struct ViaFacade {
    a: String,
}

#[derive(EventSet, Debug, PartialEq)]
#[event_set(crate = "crate::facade")]
enum FacadeSet {
    A(ViaFacade),
}

#[test]
fn names_default_to_the_type_name() {
    assert_eq!(NoTopic::NAME, "NoTopic");
    assert_eq!(WithName::NAME, "Renamed");
    assert_eq!(r#type::NAME, "type");
    assert_eq!(Generic::<u8>::NAME, "Generic");
}

#[test]
fn topics() {
    assert_eq!(NoTopic { x: 1 }.topic(), None);
    assert_eq!(
        WithName {
            service: "svc1".into()
        }
        .topic()
        .as_deref(),
        Some("svc1")
    );
    let f = Formatted {
        service: "svc".into(),
        kind: 7,
    };
    assert_eq!(f.topic().as_deref(), Some("svc.7"));
    assert_eq!(topic_frame(&f).unwrap(), b"Formatted.svc.7.");
    assert_eq!(Constant {}.topic().as_deref(), Some("fixed.{x}"));
    assert_eq!(OptionalTopic { service: None }.topic(), None);
    assert_eq!(
        OptionalTopic {
            service: Some("s".into())
        }
        .topic()
        .as_deref(),
        Some("s")
    );
    assert_eq!(
        CowTopic {
            r#where: "w".into()
        }
        .topic()
        .as_deref(),
        Some("w")
    );
    assert_eq!(Newtype(Inner { a: 4 }).topic().as_deref(), Some("a4"));
    assert_eq!(ViaFacade { a: "x".into() }.topic().as_deref(), Some("x"));
}

#[test]
fn empty_topic_means_no_topic() {
    let ev = WithName {
        service: String::new(),
    };
    assert_eq!(topic_frame(&ev).unwrap(), b"Renamed.");
}

#[test]
fn runtime_topics_are_validated() {
    let ev = Formatted {
        service: String::new(),
        kind: 1,
    };
    let err = topic_frame(&ev).unwrap_err();
    assert!(matches!(err, Error::InvalidTopic { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "invalid topic \".1\" for event `Formatted`: must not start with '.'"
    );
}

#[test]
fn newtype_over_a_struct_is_a_map() {
    let (topic, payload) = encode(&Newtype(Inner { a: 4 }), Codec::Json).unwrap();
    assert_eq!(topic, b"Newtype.a4.");
    assert_eq!(payload, br#"{"a":4}"#);
}

#[derive(EventSet, Debug, PartialEq)]
enum Inbox {
    NoTopic(NoTopic),
    Renamed(WithName),
    Formatted(Formatted),
}

#[derive(EventSet, Debug, PartialEq)]
enum GenericSet<T: Event> {
    Known(NoTopic),
    Other(T),
}

#[test]
fn event_set_names_and_membership() {
    assert_eq!(Inbox::names(), ["NoTopic", "Renamed", "Formatted"]);
    assert!(Inbox::contains_name("Renamed"));
    assert!(!Inbox::contains_name("WithName"));
    assert!(Inbox::contains::<Formatted>());
    assert!(!Inbox::contains::<Constant>());
    assert_eq!(GenericSet::<Constant>::names(), ["NoTopic", "Constant"]);
    assert_eq!(FacadeSet::names(), ["ViaFacade"]);
}

#[test]
fn event_set_decodes_each_member() {
    let events = [
        (
            encode(&NoTopic { x: 3 }, Codec::Json).unwrap(),
            Inbox::NoTopic(NoTopic { x: 3 }),
        ),
        (
            encode(
                &WithName {
                    service: "s".into(),
                },
                Codec::MessagePack,
            )
            .unwrap(),
            Inbox::Renamed(WithName {
                service: "s".into(),
            }),
        ),
        (
            encode(
                &Formatted {
                    service: "s".into(),
                    kind: 2,
                },
                Codec::MessagePack,
            )
            .unwrap(),
            Inbox::Formatted(Formatted {
                service: "s".into(),
                kind: 2,
            }),
        ),
    ];
    for ((topic, payload), want) in events {
        assert_eq!(Inbox::decode(&topic, &payload).unwrap(), want);
    }
    let (topic, payload) = encode(&Constant {}, Codec::Json).unwrap();
    match GenericSet::<Constant>::decode(&topic, &payload).unwrap() {
        GenericSet::Other(c) => assert_eq!(c, Constant {}),
        GenericSet::Known(_) => panic!("wrong variant"),
    }
}

#[test]
fn event_set_reports_unknown_and_malformed_frames() {
    let (topic, payload) = encode(&Constant {}, Codec::Json).unwrap();
    match Inbox::decode(&topic, &payload).unwrap_err() {
        Error::UnknownEvent { topic } => assert_eq!(topic, "Constant.fixed.{x}."),
        other => panic!("unexpected {other}"),
    }
    // `NoTopicX` shares a prefix with `NoTopic` but is a different type.
    assert!(matches!(
        Inbox::decode(b"NoTopicX.", b"{}").unwrap_err(),
        Error::UnknownEvent { .. }
    ));
    assert!(matches!(
        Inbox::decode(b"NoTopic", b"{}").unwrap_err(),
        Error::InvalidTopicFrame { .. }
    ));
    let err = Inbox::decode(b"Formatted.a.b.", br#"{"service":1}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to decode event `Formatted` from json payload: \
         invalid type: integer `1`, expected a string at line 1 column 12"
    );
}

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
