//! Topic frames as NATS subjects, and the NATS filters that cover a topic prefix.
//!
//! Pure, no I/O. A topic frame is any bytes; its subject is `<prefix>.<token>…`, one token per
//! dot-separated segment, with every byte outside the safe set written `~XX`, so a whole-segment
//! prefix becomes a NATS wildcard. A topic that does not end in `.` ends in the marker token
//! `~-`. [`SubjectPrefix::decode`] is the exact inverse of [`SubjectPrefix::encode`]: it accepts
//! only what `encode` writes. docs/wire-format.md ("Cluster subjects (NATS)") specifies the form.

/// The longest subject [`SubjectPrefix::encode`] writes, in bytes. A NATS server reads a
/// message's subject in its control line (`PUB <subject> [reply] <size>`), which it limits to
/// 4096 bytes by default (`max_control_line`); 4000 leaves room for the verb, a reply subject
/// of an inbox's size and the payload size.
pub(crate) const MAX_SUBJECT_LEN: usize = 4000;

/// The longest subject prefix [`SubjectPrefix::new`] accepts, in bytes, so that a topic always
/// has most of [`MAX_SUBJECT_LEN`] to itself.
pub(crate) const MAX_PREFIX_LEN: usize = 256;

/// The subject prefix a proxy uses unless configured otherwise.
pub(crate) const DEFAULT_PREFIX: &str = "xbus";

/// The token of an empty segment (as in `A..` or `.`).
pub(crate) const EMPTY_TOKEN: &str = "~_";

/// The last token of the subject of a topic that does not end in `.` (an unterminated topic).
pub(crate) const UNTERMINATED_TOKEN: &str = "~-";

/// The digits of an escape (`~` and two of these).
const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Why a prefix, topic or subject cannot be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SubjectError {
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubjectPrefix {
    prefix: String,
}

/// The NATS subscription filters for one topic prefix ([`SubjectPrefix::filters`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filters {
    /// 1 or 2 NATS subjects, possibly ending in `.>`.
    pub(crate) subjects: Vec<String>,
    /// True when the filters match exactly the topics starting with the prefix (a prefix
    /// ending at a segment boundary, i.e. ending in `.`, or ""); false when they match more
    /// (a raw byte prefix like `Temp`) and the receiver must still check the prefix itself.
    pub(crate) exact: bool,
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
    pub(crate) fn new(prefix: &str) -> Result<SubjectPrefix, SubjectError> {
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
    pub(crate) fn as_str(&self) -> &str {
        &self.prefix
    }

    /// Clears `out` and writes the subject of `topic` into it.
    ///
    /// Fails only when the subject would be longer than [`MAX_SUBJECT_LEN`] (then `out` is
    /// left empty).
    pub(crate) fn encode(&self, topic: &[u8], out: &mut String) -> Result<(), SubjectError> {
        out.clear();
        let (segs, terminated) = segments(topic);
        let len = self.prefix.len()
            + segs.map(|seg| 1 + token_len(seg)).sum::<usize>()
            + if terminated {
                0
            } else {
                1 + UNTERMINATED_TOKEN.len()
            };
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
        if !terminated {
            out.push('.');
            out.push_str(UNTERMINATED_TOKEN);
        }
        Ok(())
    }

    /// Clears `out` and writes the topic of `subject` into it (exact inverse of encode).
    ///
    /// Accepts only subjects [`SubjectPrefix::encode`] can write: a `~` escape of a byte that
    /// stands for itself, lowercase hex digits, an empty token, `~_` or `~-` inside a longer
    /// token, `~-` anywhere but last (or right after `~_`) are all [`SubjectError::Malformed`].
    /// On an error `out` holds no meaningful topic.
    pub(crate) fn decode(&self, subject: &str, out: &mut Vec<u8>) -> Result<(), SubjectError> {
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
        let mut terminated = true;
        let mut last_empty = false;
        for (i, token) in rest.split('.').enumerate() {
            let n = i + 1;
            if !terminated {
                return Err(malformed(
                    n - 1,
                    UNTERMINATED_TOKEN,
                    "marks an unterminated topic, so it must be the last token",
                ));
            }
            match token {
                "" => return Err(malformed(n, token, "is empty")),
                UNTERMINATED_TOKEN if last_empty => {
                    return Err(malformed(
                        n,
                        token,
                        "follows an empty segment, but an unterminated topic never ends in '.'",
                    ));
                }
                UNTERMINATED_TOKEN => terminated = false,
                _ => {
                    if i > 0 {
                        out.push(b'.');
                    }
                    last_empty = token == EMPTY_TOKEN;
                    if !last_empty {
                        decode_token(token, out).map_err(|why| malformed(n, token, &why))?;
                    }
                }
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
    pub(crate) fn filters(&self, prefix: &[u8]) -> Filters {
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
                    "has {EMPTY_TOKEN:?} at byte {i}, which must be a whole token (an empty segment)"
                ));
            }
            Some('-') => {
                return Err(format!(
                    "has {UNTERMINATED_TOKEN:?} at byte {i}, which must be the whole last token"
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
