//! Topic frames as NATS subjects, and the NATS filters that cover a topic prefix.
//!
//! Pure, no I/O. A topic frame is any bytes; its subject is `<prefix>.<token>…`, one token per
//! dot-separated segment, with every byte outside the safe set written `~XX`, so a whole-segment
//! prefix becomes a NATS wildcard. The subject of a topic that does not end in `.` ends in the
//! mark `~-`. [`SubjectPrefix::decode`] is the exact inverse of [`SubjectPrefix::encode`]: it
//! accepts only what `encode` writes. docs/wire-format.md ("Cluster subjects (NATS)") specifies
//! the form.
//!
//! The proxy's cluster link publishes events under these subjects, and the JetStream engine
//! of the store (feature `jetstream`) files records under them, so that a topic prefix is a
//! filter the NATS server applies.

/// The longest subject [`SubjectPrefix::encode`] writes, in bytes. A NATS server reads a
/// message's subject in its control line (`PUB <subject> [reply] <size>`), which it limits to
/// 4096 bytes by default (`max_control_line`); 4000 leaves room for the verb, a reply subject
/// of an inbox's size and the payload size.
pub const MAX_SUBJECT_LEN: usize = 4000;

/// The longest subject prefix [`SubjectPrefix::new`] accepts, in bytes, so that a topic always
/// has most of [`MAX_SUBJECT_LEN`] to itself.
pub const MAX_PREFIX_LEN: usize = 256;

/// The subject prefix a proxy uses unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "xbus";

/// The token of an empty segment (as in `A..` or `.`).
pub const EMPTY_TOKEN: &str = "~_";

/// What ends the subject of a topic that does not end in `.` (an unterminated topic): it ends
/// the last token (`a b` → `xbus.a~20b~-`), or is the only token of the empty topic
/// (`xbus.~-`). Being part of the last token, it keeps an unterminated topic such as `A.b` out
/// of the wildcard `xbus.A.b.>` of the prefix `A.b.`.
pub const UNTERMINATED_MARK: &str = "~-";

/// The digits of an escape (`~` and two of these).
const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Why a prefix, topic or subject cannot be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// The subject is (or would be) longer than [`MAX_SUBJECT_LEN`].
    #[error("the subject is {len} bytes long, more than the {max} a subject may have")]
    TooLong {
        /// The subject's length in bytes.
        len: usize,
        /// The most allowed ([`MAX_SUBJECT_LEN`]).
        max: usize,
    },
    /// The subject prefix is not one NATS accepts as literal tokens; the text says why.
    #[error("bad subject prefix: {0}")]
    BadPrefix(String),
    /// The subject does not start with the subject prefix and a `.`.
    #[error("the subject is not under the subject prefix")]
    NotUnderPrefix,
    /// The subject is under the prefix but no topic maps to it; the text says why.
    #[error("malformed subject: {0}")]
    Malformed(String),
}

/// A validated subject prefix, e.g. `xbus` or `site.xbus`: one or more dot-separated tokens of
/// safe-set ASCII (printable, without `.`, `*`, `>` and `~`), not starting with `$` (NATS's
/// system subjects) and at most [`MAX_PREFIX_LEN`] bytes. The default is [`DEFAULT_PREFIX`].
///
/// It maps topic frames to subjects under it and back, exactly, and a topic prefix to the NATS
/// filters that match the subjects of the topics under it.
///
/// # Examples
///
/// ```
/// use xbus_store::subject::{nats_matches, SubjectPrefix};
///
/// let prefix = SubjectPrefix::new("site.xbus")?;
///
/// // A topic frame (any bytes) and its subject, both ways.
/// let mut subject = String::new();
/// prefix.encode("Temperature.lab 1.rack1.".as_bytes(), &mut subject)?;
/// assert_eq!(subject, "site.xbus.Temperature.lab~201.rack1");
/// let mut topic = Vec::new();
/// prefix.decode(&subject, &mut topic)?;
/// assert_eq!(topic, b"Temperature.lab 1.rack1.");
///
/// // The filters of a prefix that ends at a segment boundary match exactly its topics.
/// let filters = prefix.filters(b"Temperature.lab 1.");
/// assert_eq!(filters.subjects, ["site.xbus.Temperature.lab~201", "site.xbus.Temperature.lab~201.>"]);
/// assert!(filters.exact);
/// assert!(filters.subjects.iter().any(|f| nats_matches(f, &subject)));
///
/// // Any other prefix gets the wildcard over its whole segments: it matches more topics
/// // than the prefix, so a receiver checks the prefix on the topics itself.
/// let filters = prefix.filters(b"Temperature.la");
/// assert_eq!(filters.subjects, ["site.xbus.Temperature.>"]);
/// assert!(!filters.exact);
/// # Ok::<(), xbus_store::subject::SubjectError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPrefix {
    prefix: String,
}

/// The NATS subscription filters for one topic prefix ([`SubjectPrefix::filters`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filters {
    /// 1 or 2 NATS subjects, possibly ending in `.>`.
    pub subjects: Vec<String>,
    /// True when the filters match exactly the topics starting with the prefix (a prefix
    /// ending at a segment boundary, i.e. ending in `.`, or ""); false when they match more
    /// (a raw byte prefix like `Temp`) and the receiver must still check the prefix itself.
    pub exact: bool,
}

impl Default for SubjectPrefix {
    fn default() -> Self {
        SubjectPrefix {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl SubjectPrefix {
    /// Validates `prefix`; the error names the first thing wrong and where.
    pub fn new(prefix: &str) -> Result<SubjectPrefix, SubjectError> {
        let bad = |why: String| Err(SubjectError::BadPrefix(why));
        if prefix.is_empty() {
            return bad("the prefix is empty".to_owned());
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return bad(format!(
                "the prefix is {} bytes long, more than the {MAX_PREFIX_LEN} allowed",
                prefix.len()
            ));
        }
        if prefix.starts_with('$') {
            return bad(format!(
                "{prefix:?} starts with '$', which NATS keeps for its system subjects"
            ));
        }
        let mut token_start = 0;
        for (i, c) in prefix.char_indices() {
            if c == '.' {
                if i == token_start {
                    return bad(format!("{prefix:?} has an empty token at byte {i}"));
                }
                token_start = i + 1;
            } else if !u8::try_from(c).is_ok_and(is_safe) {
                return bad(format!(
                    "{prefix:?} has {} at byte {i}; a token holds only printable ASCII other \
                     than '.', '*', '>' and '~'",
                    describe(c)
                ));
            }
        }
        if token_start == prefix.len() {
            return bad(format!("{prefix:?} ends with '.' (an empty last token)"));
        }
        Ok(SubjectPrefix {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix, e.g. `xbus`.
    pub fn as_str(&self) -> &str {
        &self.prefix
    }

    /// Clears `out` and writes the subject of `topic` into it.
    ///
    /// Fails only when the subject would be longer than [`MAX_SUBJECT_LEN`] (then `out` is
    /// left empty).
    pub fn encode(&self, topic: &[u8], out: &mut String) -> Result<(), SubjectError> {
        out.clear();
        let (segs, terminated) = segments(topic);
        let end = match (terminated, topic.is_empty()) {
            (true, _) => "",
            // The empty topic: the mark alone is its one token.
            (false, true) => ".~-",
            (false, false) => UNTERMINATED_MARK,
        };
        let len = self.prefix.len() + segs.map(|seg| 1 + token_len(seg)).sum::<usize>() + end.len();
        if len > MAX_SUBJECT_LEN {
            return Err(SubjectError::TooLong {
                len,
                max: MAX_SUBJECT_LEN,
            });
        }
        out.reserve(len);
        out.push_str(&self.prefix);
        let (segs, _) = segments(topic);
        for seg in segs {
            out.push('.');
            push_token(seg, out);
        }
        out.push_str(end);
        Ok(())
    }

    /// Clears `out` and writes the topic of `subject` into it (exact inverse of encode).
    ///
    /// Accepts only subjects [`SubjectPrefix::encode`] can write: an empty token, a byte
    /// outside the safe set, a `~` escape of a byte that stands for itself (or of `.`),
    /// lowercase hex digits, `~_` inside a longer token, `~-` anywhere but at the very end, or
    /// ending a token that holds no segment, are all [`SubjectError::Malformed`]. On an error
    /// `out` holds no meaningful topic.
    pub fn decode(&self, subject: &str, out: &mut Vec<u8>) -> Result<(), SubjectError> {
        out.clear();
        if subject.len() > MAX_SUBJECT_LEN {
            return Err(SubjectError::TooLong {
                len: subject.len(),
                max: MAX_SUBJECT_LEN,
            });
        }
        let rest = match subject.strip_prefix(self.prefix.as_str()) {
            Some("") => {
                return Err(SubjectError::Malformed(
                    "no token after the subject prefix".to_owned(),
                ));
            }
            Some(rest) => rest.strip_prefix('.').ok_or(SubjectError::NotUnderPrefix)?,
            None => return Err(SubjectError::NotUnderPrefix),
        };
        let malformed = |n: usize, token: &str, why: &str| {
            SubjectError::Malformed(format!("token {n} ({token:?}) {why}"))
        };
        let (rest, terminated) = match rest.strip_suffix(UNTERMINATED_MARK) {
            // The empty topic.
            Some("") => return Ok(()),
            Some(rest) => (rest, false),
            None => (rest, true),
        };
        if !terminated {
            let (n, last) = rest.split('.').enumerate().last().unwrap_or((0, rest));
            if last.is_empty() || last == EMPTY_TOKEN {
                return Err(malformed(
                    n + 1,
                    &format!("{last}{UNTERMINATED_MARK}"),
                    "ends an unterminated topic with an empty segment, which only a \
                     '.'-terminated topic has",
                ));
            }
        }
        for (i, token) in rest.split('.').enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            match token {
                "" => return Err(malformed(i + 1, token, "is empty")),
                EMPTY_TOKEN => {}
                _ => decode_token(token, out).map_err(|why| malformed(i + 1, token, &why))?,
            }
        }
        if terminated {
            out.push(b'.');
        }
        Ok(())
    }

    /// The NATS subscription filters whose union is the smallest such set that matches every
    /// subject whose topic starts with `prefix`.
    ///
    /// `""` gives `<p>.>`; a prefix ending in `.` (`A.b.`) gives the literal `<p>.A.b` and the
    /// wildcard `<p>.A.b.>`, exactly; any other prefix (`A.b.Te`) gives the wildcard over its
    /// complete segments (`<p>.A.b.>`), not exactly. A filter that would be longer than
    /// [`MAX_SUBJECT_LEN`] is replaced by the longest wildcard over fewer segments that fits
    /// (not exactly); this never fails.
    pub fn filters(&self, prefix: &[u8]) -> Filters {
        // The complete segments of `prefix`, joined with dots (`None`: no segment at all), and
        // whether the filters over them are exact.
        let (complete, exact) = match prefix.split_last() {
            None => (None, true),
            Some((b'.', body)) => (Some(body), true),
            Some(_) => (
                prefix
                    .iter()
                    .rposition(|&b| b == b'.')
                    .map(|dot| &prefix[..dot]),
                false,
            ),
        };
        let mut base = self.prefix.clone();
        for seg in complete
            .into_iter()
            .flat_map(|body| body.split(|&b| b == b'.'))
        {
            if base.len() + 1 + token_len(seg) + ".>".len() > MAX_SUBJECT_LEN {
                // `<base>.<token>.>` does not fit, so no subject under it does either; the
                // wildcard over the tokens before it does (the prefix alone always fits, see
                // MAX_PREFIX_LEN) and covers it.
                base.push_str(".>");
                return Filters {
                    subjects: vec![base],
                    exact: false,
                };
            }
            base.push('.');
            push_token(seg, &mut base);
        }
        let wildcard = format!("{base}.>");
        if complete.is_some() && exact {
            Filters {
                subjects: vec![base, wildcard],
                exact: true,
            }
        } else {
            Filters {
                subjects: vec![wildcard],
                exact,
            }
        }
    }
}

impl std::fmt::Display for SubjectPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.prefix)
    }
}

/// Whether `b` stands for itself in a token: printable ASCII but `.`, `*`, `>` and `~`.
fn is_safe(b: u8) -> bool {
    matches!(b, 0x21..=0x7E) && !matches!(b, b'.' | b'*' | b'>' | b'~')
}

/// The segments of `topic` and whether it is terminated (ends in `.`). A terminated topic
/// loses its final dot and splits on the others (`.` is one empty segment); an unterminated
/// one splits whole, except the empty topic, which has no segment.
fn segments(topic: &[u8]) -> (impl Iterator<Item = &[u8]>, bool) {
    let (body, terminated) = match topic.split_last() {
        Some((b'.', body)) => (Some(body), true),
        Some(_) => (Some(topic), false),
        None => (None, false),
    };
    let segs = body.into_iter().flat_map(|body| body.split(|&b| b == b'.'));
    (segs, terminated)
}

/// The length of `segment`'s token.
fn token_len(segment: &[u8]) -> usize {
    if segment.is_empty() {
        EMPTY_TOKEN.len()
    } else {
        segment
            .iter()
            .map(|&b| if is_safe(b) { 1 } else { 3 })
            .sum()
    }
}

/// Appends `segment`'s token to `out`.
fn push_token(segment: &[u8], out: &mut String) {
    if segment.is_empty() {
        out.push_str(EMPTY_TOKEN);
        return;
    }
    for &b in segment {
        if is_safe(b) {
            out.push(char::from(b));
        } else {
            out.push('~');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0F)]));
        }
    }
}

/// Appends the segment of `token` (neither empty nor a marker) to `out`, or says what is wrong.
fn decode_token(token: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let mut chars = token.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '~' {
            match u8::try_from(c) {
                Ok(b) if is_safe(b) => out.push(b),
                _ => return Err(format!("has {} at byte {i}", describe(c))),
            }
            continue;
        }
        let (hi, lo) = (chars.next().map(|(_, c)| c), chars.next().map(|(_, c)| c));
        match hi {
            Some('_') => {
                return Err(format!(
                    "has {EMPTY_TOKEN:?} at byte {i}, which must be a whole token (an empty \
                     segment)"
                ));
            }
            Some('-') => {
                return Err(format!(
                    "has {UNTERMINATED_MARK:?} at byte {i}, which may only end the last token"
                ));
            }
            _ => {}
        }
        let Some(b) = hi
            .and_then(hex_digit)
            .zip(lo.and_then(hex_digit))
            .map(|(h, l)| h << 4 | l)
        else {
            return Err(format!(
                "has '~' at byte {i} without two uppercase hex digits after it"
            ));
        };
        if b == b'.' || is_safe(b) {
            return Err(format!(
                "has \"~{b:02X}\" at byte {i}, but {:?} is never escaped",
                char::from(b)
            ));
        }
        out.push(b);
    }
    Ok(())
}

/// The value of an uppercase hex digit.
fn hex_digit(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        'A'..='F' => Some(c as u8 - b'A' + 10),
        _ => None,
    }
}

/// `c` for an error message.
fn describe(c: char) -> String {
    if c == ' ' {
        "a space".to_owned()
    } else if c.is_control() {
        format!("the control character U+{:04X}", u32::from(c))
    } else if c.is_ascii() {
        format!("{c:?}")
    } else {
        format!("the non-ASCII character {c:?}")
    }
}

/// Whether the NATS filter `filter` matches `subject` as a NATS server matches them: literal
/// tokens, `*` (exactly one token) and a last `>` (one or more tokens).
///
/// ```
/// use xbus_store::subject::nats_matches;
///
/// assert!(nats_matches("xbus.A.>", "xbus.A.b.c"));
/// assert!(nats_matches("xbus.*.b", "xbus.A.b"));
/// assert!(!nats_matches("xbus.A.>", "xbus.A"));
/// ```
pub fn nats_matches(filter: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for f in filter.split('.') {
        match (f, subject.next()) {
            (">", Some(_)) => return true,
            (_, None) => return false,
            ("*", Some(_)) => {}
            (f, Some(s)) if f == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn xbus() -> SubjectPrefix {
        SubjectPrefix::new("xbus").unwrap()
    }

    fn encode(topic: &[u8]) -> Result<String, SubjectError> {
        let mut out = String::new();
        xbus().encode(topic, &mut out).map(|()| out)
    }

    fn decode(subject: &str) -> Result<Vec<u8>, SubjectError> {
        let mut out = Vec::new();
        xbus().decode(subject, &mut out).map(|()| out)
    }

    fn malformed(subject: &str) -> String {
        match decode(subject) {
            Err(SubjectError::Malformed(why)) => why,
            other => panic!("{subject:?} decoded to {other:?}"),
        }
    }

    #[test]
    fn the_documented_examples() {
        for (topic, subject) in [
            ("Temperature.lab.rack1.", "xbus.Temperature.lab.rack1"),
            (
                "kühlschrank.温度.🧊.",
                "xbus.k~C3~BChlschrank.~E6~B8~A9~E5~BA~A6.~F0~9F~A7~8A",
            ),
            ("a b", "xbus.a~20b~-"),
            ("", "xbus.~-"),
            ("A..", "xbus.A.~_"),
            (".", "xbus.~_"),
            ("a.b", "xbus.a.b~-"),
            (".a", "xbus.~_.a~-"),
            ("a..b", "xbus.a.~_.b~-"),
            ("~", "xbus.~7E~-"),
            ("~*>.", "xbus.~7E~2A~3E"),
            ("$xbus.x.", "xbus.$xbus.x"),
        ] {
            assert_eq!(encode(topic.as_bytes()).unwrap(), subject, "{topic:?}");
            assert_eq!(decode(subject).unwrap(), topic.as_bytes(), "{subject:?}");
        }
        let mut out = String::new();
        SubjectPrefix::new("site.xbus")
            .unwrap()
            .encode(b"A.b.", &mut out)
            .unwrap();
        assert_eq!(out, "site.xbus.A.b");
        assert_eq!(SubjectPrefix::default(), xbus());
    }

    #[test]
    fn encode_refuses_long_subjects_and_clears_out() {
        // "xbus." + 3995 bytes = 4000: fits; one more does not.
        let fits = [b'a'; MAX_SUBJECT_LEN - 5];
        assert_eq!(
            encode(&[&fits[..], b"."].concat()).unwrap().len(),
            MAX_SUBJECT_LEN
        );
        let mut out = "stale".to_owned();
        assert_eq!(
            xbus().encode(&[&fits[..], b"a."].concat(), &mut out),
            Err(SubjectError::TooLong {
                len: MAX_SUBJECT_LEN + 1,
                max: MAX_SUBJECT_LEN
            })
        );
        assert!(out.is_empty());
        // Escapes count three bytes each.
        let escaped = [0xFF_u8; 2000];
        assert_eq!(
            encode(&escaped),
            Err(SubjectError::TooLong {
                len: 4 + 1 + 6000 + 2,
                max: MAX_SUBJECT_LEN
            })
        );
        let long = format!("xbus.{}", "a".repeat(MAX_SUBJECT_LEN));
        assert!(matches!(decode(&long), Err(SubjectError::TooLong { .. })));
    }

    #[test]
    fn bad_prefixes_are_refused_with_the_reason() {
        for (prefix, says) in [
            ("", "empty"),
            ("$SYS", "'$'"),
            ("a b", "a space at byte 1"),
            ("a.*", "'*' at byte 2"),
            ("a>", "'>' at byte 1"),
            ("x~", "'~' at byte 1"),
            ("kühl", "non-ASCII character 'ü' at byte 1"),
            ("a\tb", "control character U+0009 at byte 1"),
            (".a", "empty token at byte 0"),
            ("a..b", "empty token at byte 2"),
            ("a.", "ends with '.'"),
        ] {
            match SubjectPrefix::new(prefix) {
                Err(SubjectError::BadPrefix(why)) => {
                    assert!(why.contains(says), "{prefix:?}: {why}");
                }
                other => panic!("{prefix:?}: {other:?}"),
            }
        }
        assert!(SubjectPrefix::new(&"a".repeat(MAX_PREFIX_LEN)).is_ok());
        assert!(SubjectPrefix::new(&"a".repeat(MAX_PREFIX_LEN + 1)).is_err());
        assert_eq!(
            SubjectPrefix::new("site-1.xbus").unwrap().as_str(),
            "site-1.xbus"
        );
        let err = SubjectPrefix::new("a b").unwrap_err().to_string();
        assert!(
            err.starts_with("bad subject prefix: \"a b\" has a space"),
            "{err}"
        );
    }

    #[test]
    fn malformed_subjects_are_refused_with_the_reason() {
        for (subject, says) in [
            ("xbus.a~4", "without two uppercase hex digits"),
            ("xbus.a~4G", "without two uppercase hex digits"),
            ("xbus.~c3", "without two uppercase hex digits"),
            ("xbus.~41", "\"~41\" at byte 0, but 'A' is never escaped"),
            ("xbus.~2E", "'.' is never escaped"),
            ("xbus.a~_", "must be a whole token"),
            ("xbus.~_a", "must be a whole token"),
            ("xbus.a~-b", "may only end the last token"),
            ("xbus.a~-.b", "token 1 (\"a~-\") has \"~-\" at byte 1"),
            ("xbus.~-.a", "may only end the last token"),
            ("xbus.~-.~-", "token 2 (\"~-\") ends an unterminated topic"),
            (
                "xbus.a.~-",
                "token 2 (\"~-\") ends an unterminated topic with an empty segment",
            ),
            ("xbus.~_~-", "token 1 (\"~_~-\") ends an unterminated topic"),
            (
                "xbus.a.~_~-",
                "token 2 (\"~_~-\") ends an unterminated topic",
            ),
            ("xbus.a~~-", "without two uppercase hex digits"),
            ("xbus.a..b", "token 2 (\"\") is empty"),
            ("xbus.a.", "is empty"),
            ("xbus.", "is empty"),
            ("xbus", "no token"),
            ("xbus.a*", "'*'"),
            ("xbus.>", "'>'"),
            ("xbus.a b", "a space"),
            ("xbus.kühl", "non-ASCII character 'ü' at byte 1"),
            ("xbus.a\u{7f}", "control character U+007F"),
        ] {
            let why = malformed(subject);
            assert!(why.contains(says), "{subject:?}: {why}");
        }
        for subject in ["xbusx.a", "xbu", "other.a", "", ".xbus.a", "XBUS.a"] {
            assert_eq!(
                decode(subject),
                Err(SubjectError::NotUnderPrefix),
                "{subject:?}"
            );
        }
    }

    fn filters(prefix: &str) -> (Vec<String>, bool) {
        let f = xbus().filters(prefix.as_bytes());
        (f.subjects, f.exact)
    }

    fn owned(subjects: &[&str]) -> Vec<String> {
        subjects.iter().map(|&s| s.to_owned()).collect()
    }

    #[test]
    fn filters_of_prefixes() {
        assert_eq!(filters(""), (owned(&["xbus.>"]), true));
        assert_eq!(
            filters("Name.a.b."),
            (owned(&["xbus.Name.a.b", "xbus.Name.a.b.>"]), true)
        );
        assert_eq!(filters("Name.a.Te"), (owned(&["xbus.Name.a.>"]), false));
        assert_eq!(filters("Te"), (owned(&["xbus.>"]), false));
        assert_eq!(filters("."), (owned(&["xbus.~_", "xbus.~_.>"]), true));
        assert_eq!(filters(".Te"), (owned(&["xbus.~_.>"]), false));
        assert_eq!(filters("a..Te"), (owned(&["xbus.a.~_.>"]), false));
        assert_eq!(
            filters("ü b."),
            (owned(&["xbus.~C3~BC~20b", "xbus.~C3~BC~20b.>"]), true)
        );
        // The prefix itself, and extensions: unterminated, empty segment, longer.
        let (subjects, _) = filters("Name.a.b.");
        for topic in ["Name.a.b.", "Name.a.b.x", "Name.a.b..", "Name.a.b.x.y."] {
            let subject = encode(topic.as_bytes()).unwrap();
            assert!(
                subjects.iter().any(|f| nats_matches(f, &subject)),
                "{topic}"
            );
        }
    }

    #[test]
    fn filters_too_long_fall_back_to_a_shorter_wildcard() {
        let seg = "s".repeat(1000);
        // Four tokens of 1000 make "xbus" + 4 × 1001 = 4008 bytes: only three fit.
        let prefix = format!("{seg}.{seg}.{seg}.{seg}.");
        let f = xbus().filters(prefix.as_bytes());
        assert_eq!(f.subjects, vec![format!("xbus.{seg}.{seg}.{seg}.>")]);
        assert!(!f.exact);
        // "xbus." + 3995 bytes: the literal fits exactly, its wildcard does not.
        let prefix = format!("{}.", "a".repeat(MAX_SUBJECT_LEN - 5));
        let f = xbus().filters(prefix.as_bytes());
        assert_eq!((f.subjects, f.exact), (vec!["xbus.>".to_owned()], false));
        // One huge unterminated segment.
        let f = xbus().filters(&[0xFF; 100_000]);
        assert_eq!((f.subjects, f.exact), (vec!["xbus.>".to_owned()], false));
        let f = xbus().filters(&[&b"A."[..], &[0xFF; 100_000], b"."].concat());
        assert_eq!((f.subjects, f.exact), (vec!["xbus.A.>".to_owned()], false));
    }

    #[test]
    fn nats_matcher() {
        assert!(nats_matches("a.>", "a.b"));
        assert!(nats_matches("a.>", "a.b.c"));
        assert!(!nats_matches("a.>", "a"));
        assert!(nats_matches("a.*", "a.b"));
        assert!(!nats_matches("a.*", "a.b.c"));
        assert!(nats_matches("a.b", "a.b"));
        assert!(!nats_matches("a.b", "a.b.c"));
        assert!(!nats_matches("a.b.c", "a.b"));
    }

    /// Topic bytes weighted towards what makes the mapping interesting: dots, `~`, the other
    /// unsafe ASCII, Unicode and arbitrary bytes.
    fn topic_bytes(max_pieces: usize) -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            4 => Just(b".".to_vec()),
            4 => "[ab]".prop_map(String::into_bytes),
            2 => "[~*> _-]".prop_map(String::into_bytes),
            1 => "[üé温🧊]".prop_map(String::into_bytes),
            1 => any::<char>().prop_map(|c| c.to_string().into_bytes()),
            1 => any::<u8>().prop_map(|b| vec![b]),
        ];
        proptest::collection::vec(piece, 0..max_pieces).prop_map(|p| p.concat())
    }

    /// The text of a subject after `xbus.`: mostly valid, sometimes near-valid.
    fn subject_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            8 => "[ab]{1,2}\\.?",
            3 => "~(C3|BC|7E|20)\\.?",
            1 => "~_\\.",
            1 => "~(-|2E|41|c3|4)",
            1 => "[*> ü]",
        ];
        (proptest::collection::vec(piece, 0..12), any::<bool>()).prop_map(|(p, mark)| {
            let text = p.concat();
            let text = text.trim_end_matches('.');
            text.to_owned() + if mark { UNTERMINATED_MARK } else { "" }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn decode_inverts_encode(topic in topic_bytes(40)) {
            let subject = encode(&topic).unwrap();
            prop_assert_eq!(decode(&subject).unwrap(), topic);
            // Every token is non-empty ASCII NATS takes literally.
            let rest = subject.strip_prefix("xbus.").unwrap();
            for token in rest.split('.') {
                prop_assert!(!token.is_empty());
                prop_assert!(token.bytes().all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>'));
                prop_assert!(token != "*" && token != ">");
            }
        }

        #[test]
        fn encode_inverts_decode(rest in subject_text()) {
            let subject = format!("xbus.{rest}");
            if let Ok(topic) = decode(&subject) {
                prop_assert_eq!(encode(&topic).unwrap(), subject);
            }
        }

        #[test]
        fn filters_match_the_topics_under_the_prefix(
            prefix in topic_bytes(6),
            suffix in topic_bytes(6),
            extend in any::<bool>(),
        ) {
            let topic = if extend { [&prefix[..], &suffix[..]].concat() } else { suffix };
            let f = xbus().filters(&prefix);
            prop_assert!(matches!(f.subjects.len(), 1 | 2));
            let subject = encode(&topic).unwrap();
            let matched = f.subjects.iter().any(|s| nats_matches(s, &subject));
            if topic.starts_with(&prefix) {
                prop_assert!(matched, "{:?} {:?}", subject, f);
            }
            if f.exact && matched {
                prop_assert!(topic.starts_with(&prefix), "{:?} {:?}", subject, f);
            }
            // The filters of one prefix never both match one subject.
            prop_assert!(f.subjects.iter().filter(|s| nats_matches(s, &subject)).count() <= 1);
        }
    }
}
