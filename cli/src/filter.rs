//! `xbus sub` filters: `NAME` or `NAME.TOPIC_FILTER`, turned into the subscription the typed
//! clients would send, and rejected with a reason when they could never match.
//!
//! A filter means exactly what `subscribe::<E>(filter)` means on a typed subscriber: whole
//! segments, so `KernelStatusChanged` receives `KernelStatusChanged` events and never
//! `KernelStatusChangedV2`, and `Job.w1` receives topics `w1` and `w1.…`, never `w10`. The
//! subscription is built by [`xbus::schema::subscription_prefix_for_name`], the function the
//! typed clients use, so the CLI cannot drift from them.
//!
//! Wildcard segments in the topic (`*`: exactly one segment; `>`: one or more, last only) are
//! the schema's to turn into a wildcard subscription ([`xbus::schema::MATCH_PREFIX`] followed
//! by the pattern), which the proxy matches segment by segment.

/// Whether a segment is a wildcard.
fn is_wildcard(segment: &str) -> bool {
    segment == "*" || segment == ">"
}

/// The subscription for one filter, or why it could never match.
///
/// A trailing `.` is accepted and changes nothing (`Name.` is `Name`), for scripts written
/// when filters were raw prefixes.
pub fn subscription(filter: &str) -> Result<Vec<u8>, String> {
    let why = |reason: &str| format!("filter {filter:?} could never match: {reason}");
    let body = filter.strip_suffix('.').unwrap_or(filter);
    if body.is_empty() {
        return Err(why(
            "it is empty (give no filter to receive every event, or --raw-prefix '' to say so)",
        ));
    }
    if body.split('.').any(str::is_empty) {
        return Err(why(
            "it has an empty segment (a leading `.` or `..`); topic frames never do",
        ));
    }
    let (name, topic) = match body.split_once('.') {
        Some((name, topic)) => (name, Some(topic)),
        None => (body, None),
    };
    if is_wildcard(name) {
        return Err(why(
            "the event NAME cannot be a wildcard: `*` and `>` stand for topic segments after a \
             NAME (e.g. `Temperature.*.rack1`, `Job.>`); give no filter to receive every event",
        ));
    }
    xbus::schema::subscription_prefix_for_name(name, topic).map_err(|err| why(&err.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_and_topics_match_whole_segments() {
        assert_eq!(
            subscription("KernelStatusChanged").unwrap(),
            b"KernelStatusChanged."
        );
        assert_eq!(
            subscription("KernelStatusChanged.").unwrap(),
            b"KernelStatusChanged."
        );
        assert_eq!(subscription("Job.w1").unwrap(), b"Job.w1.");
        assert_eq!(subscription("Job.w1.").unwrap(), b"Job.w1.");
        assert_eq!(
            subscription("Job.rack 3.temp").unwrap(),
            b"Job.rack 3.temp."
        );
    }

    #[test]
    fn filters_that_cannot_match_say_why() {
        for (filter, needle) in [
            ("", "empty"),
            (".", "empty"),
            ("*", "NAME cannot be a wildcard"),
            (">", "NAME cannot be a wildcard"),
            ("*.w1", "NAME cannot be a wildcard"),
            ("w1 ", "whitespace"),
            ("$xbus", "$"),
            ("Job..w1", "empty segment"),
            (".Job", "empty segment"),
            ("Job.>.w1", "last segment"),
        ] {
            let err = subscription(filter).unwrap_err();
            assert!(err.contains(&format!("{filter:?}")), "{filter:?}: {err}");
            assert!(err.contains(needle), "{filter:?}: {err}");
        }
    }

    #[test]
    fn wildcards_in_the_topic_are_wildcard_subscriptions() {
        assert_eq!(
            subscription("Temperature.*.rack1").unwrap(),
            b"$xbus.match.Temperature.*.rack1."
        );
        assert_eq!(subscription("Job.>").unwrap(), b"$xbus.match.Job.>.");
        assert_eq!(
            subscription("Job.w1.>").unwrap(),
            [xbus::schema::MATCH_PREFIX.as_bytes(), b"Job.w1.>."].concat()
        );
    }
}
