//! Subject syntax: tokens separated by `.`, `*` matching one token and `>` matching one
//! or more trailing tokens, as the NATS server defines them.

/// True if `s` may be subscribed to: non-empty tokens, `>` only as the last token,
/// no whitespace. Wildcard characters inside a longer token are literal.
pub fn is_valid_subject(s: &[u8]) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut tokens = s.split(|&b| b == b'.').peekable();
    while let Some(t) = tokens.next() {
        if t.is_empty() || t.iter().any(|b| b.is_ascii_whitespace()) {
            return false;
        }
        if t == b">" && tokens.peek().is_some() {
            return false;
        }
    }
    true
}

/// True if `s` is a valid subject without wildcard tokens (what a publish may name).
pub fn is_valid_literal_subject(s: &[u8]) -> bool {
    is_valid_subject(s) && s.split(|&b| b == b'.').all(|t| t != b"*" && t != b">")
}

/// True if the literal `subject` is matched by `pattern` (which may hold wildcards).
pub fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    let mut p = pattern.split(|&b| b == b'.');
    let mut s = subject.split(|&b| b == b'.');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some(b">"), Some(_)) => return true,
            (Some(b"*"), Some(_)) => {}
            (Some(pt), Some(st)) if pt == st => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity() {
        for ok in [
            "foo",
            "foo.bar",
            "foo.*",
            "foo.>",
            ">",
            "*",
            "foo.*.baz",
            "a*b.c>",
        ] {
            assert!(is_valid_subject(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "foo.",
            ".foo",
            "foo..bar",
            "foo.>.bar",
            "foo bar",
            "foo\tbar",
        ] {
            assert!(!is_valid_subject(bad.as_bytes()), "{bad}");
        }
        assert!(is_valid_literal_subject(b"foo.bar"));
        assert!(is_valid_literal_subject(b"a*b"));
        assert!(!is_valid_literal_subject(b"foo.*"));
        assert!(!is_valid_literal_subject(b"foo.>"));
    }

    #[test]
    fn matching() {
        assert!(matches(b"foo.*", b"foo.bar"));
        assert!(!matches(b"foo.*", b"foo.bar.baz"));
        assert!(matches(b"foo.>", b"foo.bar.baz"));
        assert!(!matches(b"foo.>", b"foo"));
        assert!(matches(b">", b"foo"));
        assert!(matches(b"*.bar", b"foo.bar"));
        assert!(!matches(b"foo", b"foo.bar"));
        assert!(!matches(b"foo.bar", b"foo"));
    }
}
