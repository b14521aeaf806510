//! The rule for xbus event NAMEs, in one place.
//!
//! An event NAME is the first part of every topic frame (`NAME "."` or `NAME "." TOPIC "."`).
//! Both `xbus-schema` (at run time) and its derive macros (at compile time) check NAMEs; a
//! proc-macro crate cannot depend on the crate that re-exports it, so the rule lives here,
//! in a crate with no dependencies that both can use. It is `no_std`.
//!
//! ```
//! use xbus_names::{check_name, NameRule};
//!
//! assert_eq!(check_name("KernelStatusChanged"), Ok(()));
//! assert_eq!(check_name("a.b"), Err(NameRule::Dot));
//! ```

#![no_std]

use core::fmt;

/// A rule an event NAME can break, as returned by [`check_name`].
///
/// [`message`](NameRule::message) (also its `Display`) says what the rule requires, in words
/// meant to follow `invalid event name "...": `.
///
/// ```
/// use xbus_names::NameRule;
///
/// assert_eq!(NameRule::Empty.message(), "must not be empty");
/// assert_eq!(NameRule::Whitespace.to_string(), "must not contain whitespace");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameRule {
    /// The NAME is empty.
    Empty,
    /// The NAME contains `.`, which ends the NAME in a topic frame.
    Dot,
    /// The NAME contains whitespace (any Unicode white space).
    Whitespace,
    /// The NAME contains a control character (Unicode category Cc).
    Control,
    /// The NAME starts with `$`, reserved for the proxy's system traffic (such as `$xbus.`).
    Reserved,
}

impl NameRule {
    /// What the rule requires, as a lowercase phrase.
    ///
    /// ```
    /// use xbus_names::NameRule;
    ///
    /// assert_eq!(
    ///     NameRule::Dot.message(),
    ///     "must not contain '.' (it separates the name from the topic)"
    /// );
    /// ```
    pub const fn message(self) -> &'static str {
        match self {
            NameRule::Empty => "must not be empty",
            NameRule::Dot => "must not contain '.' (it separates the name from the topic)",
            NameRule::Whitespace => "must not contain whitespace",
            NameRule::Control => "must not contain control characters",
            NameRule::Reserved => {
                "must not start with '$' (reserved for the proxy's system events)"
            }
        }
    }
}

impl fmt::Display for NameRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// Checks an event NAME, returning the first rule it breaks.
///
/// A NAME must be non-empty, must not contain `.`, whitespace or control characters, and
/// must not start with `$`. Any other Unicode is allowed. The rules are checked in the order
/// of [`NameRule`]'s variants, so a NAME breaking several reports the first.
///
/// ```
/// use xbus_names::{check_name, NameRule};
///
/// assert_eq!(check_name("Reading"), Ok(()));
/// assert_eq!(check_name("Événement"), Ok(()));
/// assert_eq!(check_name(""), Err(NameRule::Empty));
/// assert_eq!(check_name("a b"), Err(NameRule::Whitespace));
/// assert_eq!(check_name("a\u{7f}"), Err(NameRule::Control));
/// assert_eq!(check_name("$xbus"), Err(NameRule::Reserved));
/// assert_eq!(check_name("$a.b"), Err(NameRule::Dot));
/// ```
pub fn check_name(name: &str) -> Result<(), NameRule> {
    if name.is_empty() {
        Err(NameRule::Empty)
    } else if name.contains('.') {
        Err(NameRule::Dot)
    } else if name.chars().any(char::is_whitespace) {
        Err(NameRule::Whitespace)
    } else if name.chars().any(char::is_control) {
        Err(NameRule::Control)
    } else if name.starts_with('$') {
        Err(NameRule::Reserved)
    } else {
        Ok(())
    }
}
