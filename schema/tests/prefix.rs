//! Subscription prefix semantics: what a filter selects, byte for byte.

#![allow(clippy::unwrap_used, missing_docs)]

use serde::{Deserialize, Serialize};
use xbus_schema::{
    matches_subscription, split_topic_frame, subscription_prefix, subscription_prefix_for_name,
    topic_frame, topic_frame_for_name, Error, Event, SYSTEM_SUBSCRIPTION,
};

#[derive(Serialize, Deserialize, Event)]
struct Status {
    #[event(topic)]
    path: String,
}

#[derive(Serialize, Deserialize, Event)]
struct StatusChanged {
    #[event(topic)]
    path: String,
}

fn status(path: &str) -> Vec<u8> {
    topic_frame(&Status { path: path.into() }).unwrap()
}

fn changed(path: &str) -> Vec<u8> {
    topic_frame(&StatusChanged { path: path.into() }).unwrap()
}

#[test]
fn filter_matches_the_topic_and_its_subtree_only() {
    let prefix = subscription_prefix::<Status>(Some("a.b")).unwrap();
    assert_eq!(prefix, b"Status.a.b.");
    assert!(matches_subscription(&prefix, &status("a.b")));
    assert!(matches_subscription(&prefix, &status("a.b.c")));
    assert!(matches_subscription(&prefix, &status("a.b.c.d")));
    assert!(!matches_subscription(&prefix, &status("a.c")));
    assert!(!matches_subscription(&prefix, &status("a.bb")));
    assert!(!matches_subscription(&prefix, &status("a")));
    assert!(!matches_subscription(&prefix, &status("")));
    assert!(!matches_subscription(&prefix, &status("x.a.b")));
}

#[test]
fn no_filter_matches_every_topic_of_the_type() {
    let prefix = subscription_prefix::<Status>(None).unwrap();
    assert_eq!(prefix, subscription_prefix::<Status>(Some("")).unwrap());
    for topic in ["", "a", "a.b", "zz.top"] {
        assert!(matches_subscription(&prefix, &status(topic)), "{topic}");
    }
}

#[test]
fn a_filter_never_crosses_event_types() {
    for filter in [None, Some("a"), Some("a.b")] {
        let prefix = subscription_prefix::<Status>(filter).unwrap();
        for topic in ["", "a", "a.b", "a.b.c"] {
            assert!(
                !matches_subscription(&prefix, &changed(topic)),
                "{filter:?} {topic}"
            );
        }
        let prefix = subscription_prefix::<StatusChanged>(filter).unwrap();
        for topic in ["", "a", "a.b", "a.b.c"] {
            assert!(
                !matches_subscription(&prefix, &status(topic)),
                "{filter:?} {topic}"
            );
        }
    }
}

#[test]
fn the_system_subscription_matches_no_event() {
    assert!(!matches_subscription(SYSTEM_SUBSCRIPTION, &status("a")));
    assert!(topic_frame_for_name("$xbus", None).is_err());
    // ...but tools can still display system frames.
    assert_eq!(
        split_topic_frame(b"$xbus.hello.").unwrap(),
        ("$xbus", Some("hello"))
    );
}

#[test]
fn invalid_filters_are_rejected_with_the_event_name() {
    for filter in ["a.", ".a", "a..b", "a\nb"] {
        let err = subscription_prefix::<Status>(Some(filter)).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidFilter { event, .. } if event == "Status"),
            "{err}"
        );
    }
    let err = subscription_prefix_for_name("Status", Some("a.")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid subscription filter \"a.\" for event `Status`: must not end with '.'"
    );
    assert!(subscription_prefix_for_name("Sta tus", None).is_err());
}

#[test]
fn split_is_the_inverse_of_topic_frame() {
    for topic in [None, Some("a"), Some("a.b.c"), Some("ünï cödé")] {
        let frame = topic_frame_for_name("Status", topic).unwrap();
        assert_eq!(split_topic_frame(&frame).unwrap(), ("Status", topic));
    }
    for bad in [&b""[..], b".", b"..", b"Status", b"\xffStatus."] {
        assert!(
            matches!(split_topic_frame(bad), Err(Error::InvalidTopicFrame { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn wildcard_filters_become_match_subscriptions_and_topics_cannot_use_them() {
    // '*' is one segment, '>' (last only) one or more; the plain form is unchanged
    assert_eq!(
        subscription_prefix::<Status>(Some("site1.*.rack1")).unwrap(),
        b"$xbus.match.Status.site1.*.rack1."
    );
    assert_eq!(
        subscription_prefix::<Status>(Some("site1.>")).unwrap(),
        b"$xbus.match.Status.site1.>."
    );
    assert_eq!(
        subscription_prefix::<Status>(Some("site1.a*b")).unwrap(),
        b"Status.site1.a*b."
    );
    let err = subscription_prefix::<Status>(Some("a.>.b")).unwrap_err();
    assert!(matches!(err, Error::InvalidFilter { .. }), "{err}");
    assert!(err.to_string().contains("'>'"), "{err}");
    // a topic segment of just '*' or '>' would be ambiguous in filters: refused
    for topic in ["*", "a.*", ">", "a.>.b"] {
        let err = topic_frame_for_name("Status", Some(topic)).unwrap_err();
        assert!(matches!(err, Error::InvalidTopic { .. }), "{topic}: {err}");
    }
    assert!(topic_frame_for_name("Status", Some("a*.b>")).is_ok());
}
