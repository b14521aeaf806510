//! Validation rules checked at compile time for topic format strings. (The NAME rule is
//! `xbus_names::check_name`, shared with `xbus-schema`.)

/// One piece of a topic format string.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Literal text (braces already unescaped).
    Lit(String),
    /// A `{field}` placeholder.
    Field(String),
}

/// Parses `"{service}.{kind}"` into pieces; `{{` and `}}` are literal braces.
pub(crate) fn parse_format(fmt: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '}' => {
                return Err("unmatched `}` in topic format; write `}}` for a literal brace".into())
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => {
                            return Err(
                                "unclosed `{` in topic format; write `{{` for a literal brace"
                                    .into(),
                            )
                        }
                    }
                }
                let name = name.trim().to_owned();
                if name.is_empty() {
                    return Err("empty `{}` in topic format: name a field, like `{service}`".into());
                }
                if name.contains(':') {
                    return Err(format!(
                        "format specs are not supported in topic formats: use `{{{}}}`",
                        name.split(':').next().unwrap_or_default().trim()
                    ));
                }
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Field(name));
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    Ok(pieces)
}

/// Checks the fixed parts of a topic format against the topic rules, assuming every field
/// renders as a non-empty segment part.
pub(crate) fn format_rule(pieces: &[Piece]) -> Result<(), &'static str> {
    if pieces.is_empty() {
        return Err("the topic format is empty; remove the attribute for an event without a topic");
    }
    let sample: String = pieces
        .iter()
        .map(|p| match p {
            Piece::Lit(s) => s.as_str(),
            Piece::Field(_) => "x",
        })
        .collect();
    if sample.starts_with('.') {
        Err("a topic must not start with '.'")
    } else if sample.ends_with('.') {
        Err("a topic must not end with '.'")
    } else if sample.contains("..") {
        Err("a topic must not contain an empty segment ('..')")
    } else if sample.chars().any(char::is_control) {
        Err("a topic must not contain control characters")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_formats() {
        assert_eq!(
            parse_format("{service}.{ kind }-{{x}}"),
            Ok(vec![
                Piece::Field("service".into()),
                Piece::Lit(".".into()),
                Piece::Field("kind".into()),
                Piece::Lit("-{x}".into()),
            ])
        );
        assert!(parse_format("{a").is_err());
        assert!(parse_format("a}").is_err());
        assert!(parse_format("{}").is_err());
        assert!(parse_format("{a:>4}").is_err());
    }

    #[test]
    fn checks_format_literals() {
        let ok = parse_format("{a}.{b}").unwrap_or_default();
        assert!(format_rule(&ok).is_ok());
        for bad in ["{a}..{b}", ".{a}", "{a}.", "", "a\tb"] {
            let pieces = parse_format(bad).unwrap_or_default();
            assert!(format_rule(&pieces).is_err(), "{bad}");
        }
    }
}
