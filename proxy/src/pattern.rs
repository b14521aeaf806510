//! Wildcard subscriptions: `$xbus.match.` followed by a pattern of dot-terminated segments, each
//! a literal, `*` (exactly one segment) or, last only, `>` (one or more segments).
//!
//! A pattern matches a topic frame when its segments match the frame's first dot-terminated
//! segments, one by one; like every xbus filter it is a prefix, so longer topics match too.
//! The literal segments before the first wildcard are the pattern's *head*: the proxy files the
//! pattern under the head in its trie (so only topics starting with the head are ever tested
//! against it) and forwards the head to publishers, which filter at the source as far as a byte
//! prefix can. Subscriptions that do not start with `$xbus.match.` keep their byte-prefix
//! meaning exactly. docs/wire-format.md specifies the form.
//!
//! ```
//! use xbus_proxy::pattern::Pattern;
//! let p = Pattern::parse(b"$xbus.match.Temperature.*.rack1.").unwrap().unwrap();
//! assert_eq!(p.head(), b"Temperature.");
//! assert!(p.matches(b"Temperature.site1.rack1."));
//! assert!(p.matches(b"Temperature.site2.rack1.sensor4."));
//! assert!(!p.matches(b"Temperature.site1.rack2."));
//! assert!(!p.matches(b"Temperature.rack1."));
//! // an ordinary subscription is not a pattern
//! assert!(Pattern::parse(b"Temperature.site1.").is_none());
//! ```

use bytes::Bytes;

/// What a subscription must start with to be a pattern.
pub const MATCH_PREFIX: &[u8] = b"$xbus.match.";

/// One segment after the head.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Segment {
    /// These exact bytes.
    Literal(Box<[u8]>),
    /// `*`: exactly one segment, whatever it holds.
    One,
    /// `>`: one or more segments (last only).
    Rest,
}

/// A parsed wildcard subscription. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pattern {
    /// The literal segments before the first wildcard, each with its dot.
    head: Bytes,
    /// The segments from the first wildcard on.
    tail: Vec<Segment>,
}

/// Why a `$xbus.match.` subscription is not a valid pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Nothing after `$xbus.match.`, or no final `.`.
    #[error("a pattern is one or more segments, each ending with '.'")]
    Shape,
    /// Two dots in a row.
    #[error("a pattern has no empty segments")]
    EmptySegment,
    /// `>` before the last segment.
    #[error("'>' may only be the last segment")]
    RestNotLast,
    /// No `*` or `>` at all: an ordinary subscription says the same thing.
    #[error("a pattern needs a '*' or '>' segment; subscribe to the plain prefix instead")]
    NoWildcard,
}

impl Pattern {
    /// `None` when `subscription` is not a pattern (does not start with [`MATCH_PREFIX`]);
    /// otherwise the pattern, or why it is malformed.
    pub fn parse(subscription: &[u8]) -> Option<Result<Pattern, PatternError>> {
        subscription
            .strip_prefix(MATCH_PREFIX)
            .map(Pattern::parse_body)
    }

    fn parse_body(body: &[u8]) -> Result<Pattern, PatternError> {
        let Some(body) = body.strip_suffix(b".") else {
            return Err(PatternError::Shape);
        };
        if body.is_empty() {
            return Err(PatternError::Shape);
        }
        let segments: Vec<&[u8]> = body.split(|&b| b == b'.').collect();
        let mut head = Vec::new();
        let mut tail = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            let parsed = match *seg {
                b"" => return Err(PatternError::EmptySegment),
                b"*" => Segment::One,
                b">" if i + 1 == segments.len() => Segment::Rest,
                b">" => return Err(PatternError::RestNotLast),
                literal => Segment::Literal(literal.into()),
            };
            match parsed {
                Segment::Literal(l) if tail.is_empty() => {
                    head.extend_from_slice(&l);
                    head.push(b'.');
                }
                other => tail.push(other),
            }
        }
        if tail.is_empty() {
            return Err(PatternError::NoWildcard);
        }
        Ok(Pattern {
            head: head.into(),
            tail,
        })
    }

    /// The literal head: what the trie files it under and publishers are asked for.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Whether a topic frame matches.
    pub fn matches(&self, topic: &[u8]) -> bool {
        topic
            .strip_prefix(&self.head[..])
            .is_some_and(|rest| self.matches_after_head(rest))
    }

    /// Whether the part of a topic frame after the head matches the rest of the pattern.
    #[inline]
    pub fn matches_after_head(&self, mut rest: &[u8]) -> bool {
        for seg in &self.tail {
            match seg {
                Segment::Rest => return rest.contains(&b'.'),
                Segment::One => match rest.iter().position(|&b| b == b'.') {
                    Some(dot) => rest = &rest[dot + 1..],
                    None => return false,
                },
                Segment::Literal(l) => match rest.strip_prefix(&l[..]) {
                    Some([b'.', after @ ..]) => rest = after,
                    _ => return false,
                },
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn pattern(s: &str) -> Pattern {
        Pattern::parse(format!("$xbus.match.{s}").as_bytes())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn malformed_patterns_say_why() {
        let err = |s: &str| Pattern::parse(s.as_bytes()).unwrap().unwrap_err();
        assert_eq!(err("$xbus.match."), PatternError::Shape);
        assert_eq!(err("$xbus.match.A.*"), PatternError::Shape);
        assert_eq!(err("$xbus.match.A..*."), PatternError::EmptySegment);
        assert_eq!(err("$xbus.match.A.>.b."), PatternError::RestNotLast);
        assert_eq!(err("$xbus.match.A.b."), PatternError::NoWildcard);
    }

    #[test]
    fn one_rest_and_literals() {
        let p = pattern("A.*.c.");
        assert!(p.matches(b"A.b.c.") && p.matches(b"A.bb.c.d."));
        assert!(!p.matches(b"A.b.cc.") && !p.matches(b"A.c.") && !p.matches(b"AA.b.c."));
        let p = pattern("A.>.");
        assert!(p.matches(b"A.b.") && p.matches(b"A.b.c."));
        assert!(!p.matches(b"A.") && !p.matches(b"A.b"));
        let p = pattern("*.");
        assert_eq!(p.head(), b"");
        assert!(p.matches(b"Any.") && p.matches(b"Any.thing.") && !p.matches(b"raw"));
        // '*' and '>' inside a segment are literal bytes
        let p = pattern("A*.*.");
        assert!(p.matches(b"A*.x.") && !p.matches(b"Ab.x."));
    }

    /// The reference: split both into dot-terminated segments and compare one by one.
    fn model(pattern: &[&str], topic: &str) -> bool {
        let segs: Vec<&str> = topic
            .split_inclusive('.')
            .filter(|s| s.ends_with('.'))
            .collect();
        let segs: Vec<&str> = segs.iter().map(|s| &s[..s.len() - 1]).collect();
        for (i, p) in pattern.iter().enumerate() {
            match *p {
                ">" => return segs.len() > i,
                "*" if i < segs.len() => {}
                lit if segs.get(i) == Some(&lit) => {}
                _ => return false,
            }
        }
        true
    }

    proptest! {
        #[test]
        fn matches_the_segment_model(
            pattern in proptest::collection::vec(prop_oneof!["[ab]{1,2}", Just("*".to_owned())], 1..4),
            rest in proptest::bool::ANY,
            topic in "[ab.]{0,10}",
        ) {
            let mut segs: Vec<String> = pattern.clone();
            if rest { segs.push(">".into()); }
            let text = format!("{}.", segs.join("."));
            let parsed = Pattern::parse(format!("$xbus.match.{text}").as_bytes()).unwrap();
            let refs: Vec<&str> = segs.iter().map(String::as_str).collect();
            match parsed {
                Ok(p) => prop_assert_eq!(p.matches(topic.as_bytes()), model(&refs, &topic)),
                Err(e) => prop_assert_eq!(e, PatternError::NoWildcard),
            }
        }
    }
}
