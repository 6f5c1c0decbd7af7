//! Accounts of the embedded NATS server: separate subject spaces, the users that
//! log into them, and the streams and services one account shares with another.
//!
//! Clients outside any configured account live in the global account `$G`. A message
//! never leaves its account except through an import: a stream import delivers an
//! exporter's messages to the importer's subscribers, a service import sends the
//! importer's requests to the exporter and its answers back.

use super::subject::{is_valid_literal_subject, is_valid_subject};

/// The global account: users of `authorization { }`, and everybody without auth.
pub const GLOBAL: &str = "$G";

/// Service answers reach the requester through this subject space of the exporting
/// account, as with the NATS server (`_R_.<server part>.<request part>`).
pub const REPLY_PREFIX: &[u8] = b"_R_.";

/// Index of an account in the server's table; `$G` is always the first.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub u32);

impl AccountId {
    pub const GLOBAL: AccountId = AccountId(0);
}

/// One configured account (`accounts { NAME: { ... } }`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountConfig {
    pub name: String,
    pub exports: Vec<Export>,
    pub imports: Vec<Import>,
}

/// Stream or service: what an export or import shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareKind {
    Stream,
    Service,
}

/// A subject (or wildcard) an account lets others import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub kind: ShareKind,
    pub subject: String,
    /// The only accounts that may import it; `None` lets every account.
    pub accounts: Option<Vec<String>>,
}

/// What an account takes from another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub kind: ShareKind,
    /// The exporting account.
    pub account: String,
    /// The subject in the exporting account.
    pub subject: String,
    /// The subject in the importing account: the stream's subject with its prefix,
    /// or the local name of the service; equal to `subject` when not renamed.
    pub to: String,
}

/// A user that logs into an account with a name and a password (plain or bcrypt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub pass: String,
    /// The account the user's connections live in.
    pub account: String,
}

/// Whether `secret`, set by the server, is a bcrypt hash: the NATS server compares
/// such a secret with bcrypt and anything else as plain text.
pub fn is_bcrypt(secret: &str) -> bool {
    let b = secret.as_bytes();
    matches!(
        b,
        [b'$', b'2', b'a' | b'b' | b'x' | b'y', b'$', d1, d2, b'$', ..]
            if d1.is_ascii_digit() && d2.is_ascii_digit()
    )
}

/// Checks a client's secret against the server's, as the NATS server does.
pub fn secret_matches(server: &str, client: &str) -> bool {
    if is_bcrypt(server) {
        // `$2x$` hashes are read as `$2a$`: the variant only says which buggy
        // implementation made them, and the check is the same.
        let hash = server.replacen("$2x$", "$2a$", 1);
        bcrypt::verify(client, &hash).unwrap_or(false)
    } else {
        // Constant time, so that a wrong guess says nothing about how close it was.
        let (a, b) = (server.as_bytes(), client.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Checks the exports and imports of `accounts` the way the NATS server does when it
/// loads them; errors in its words.
pub fn validate(accounts: &[AccountConfig]) -> Result<(), String> {
    let find = |name: &str| accounts.iter().find(|a| a.name == name);
    for a in accounts {
        for e in &a.exports {
            let what = match e.kind {
                ShareKind::Stream => "stream",
                ShareKind::Service => "service",
            };
            for name in e.accounts.iter().flatten() {
                if find(name).is_none() {
                    return Err(format!(
                        "{} account not defined for {what} export",
                        crate::gofmt::go_quote(name)
                    ));
                }
            }
            if !is_valid_subject(e.subject.as_bytes()) {
                return Err(format!(
                    "Error adding {what} export {}: invalid subject",
                    crate::gofmt::go_quote(&e.subject)
                ));
            }
        }
    }
    for a in accounts {
        for (i, im) in a.imports.iter().enumerate() {
            let (what, denied) = match im.kind {
                ShareKind::Stream => ("stream", "stream import not authorized"),
                ShareKind::Service => ("service", "service import not authorized"),
            };
            let Some(exporter) = find(&im.account) else {
                return Err(format!(
                    "{} account not defined for {what} import",
                    crate::gofmt::go_quote(&im.account)
                ));
            };
            let fail = |why: &str| {
                Err(format!(
                    "Error adding {what} import {}: {why}",
                    crate::gofmt::go_quote(&im.subject)
                ))
            };
            if !is_valid_subject(im.subject.as_bytes()) || !is_valid_subject(im.to.as_bytes()) {
                return fail("invalid subject");
            }
            if !exporter.exports(im.kind, &im.subject, &a.name) {
                return fail(denied);
            }
            // Renaming a wildcard needs subject transforms, which this server lacks.
            let prefixed =
                im.kind == ShareKind::Stream && im.to.ends_with(&format!(".{}", im.subject));
            if im.to != im.subject && !prefixed && !is_valid_literal_subject(im.subject.as_bytes())
            {
                return fail("renaming a wildcard import is not supported yet by stan-server");
            }
            let duplicate = a.imports[..i]
                .iter()
                .any(|o| o.kind == im.kind && o.account == im.account && o.subject == im.subject);
            if duplicate && im.kind == ShareKind::Stream {
                return fail("stream import already exists");
            }
        }
    }
    Ok(())
}

impl AccountConfig {
    /// Whether this account lets account `to` import `subject` as `kind`: an export
    /// equal to the subject, or one the subject lies within.
    pub fn exports(&self, kind: ShareKind, subject: &str, to: &str) -> bool {
        let allowed = |e: &Export| {
            e.accounts
                .as_ref()
                .is_none_or(|l| l.iter().any(|n| n == to))
        };
        if let Some(e) = self
            .exports
            .iter()
            .find(|e| e.kind == kind && e.subject == subject)
        {
            return allowed(e);
        }
        self.exports
            .iter()
            .find(|e| e.kind == kind && is_subset(subject.as_bytes(), e.subject.as_bytes()))
            .is_some_and(allowed)
    }
}

/// Whether every subject `inner` matches is matched by `outer` too.
fn is_subset(inner: &[u8], outer: &[u8]) -> bool {
    let mut a = inner.split(|&b| b == b'.');
    let mut b = outer.split(|&b| b == b'.');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(_), Some(b">")) => return true,
            (Some(x), Some(y)) => {
                if x == b">" || (x == b"*" && y != b"*") || (y != b"*" && x != y) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_prefixes_are_those_of_the_nats_server() {
        assert!(is_bcrypt("$2a$11$abcdefghijklmnopqrstuv"));
        assert!(is_bcrypt("$2b$04$x"));
        assert!(is_bcrypt("$2y$10$x"));
        assert!(is_bcrypt("$2x$10$x"));
        assert!(!is_bcrypt("$2$10$x"));
        assert!(!is_bcrypt("$2a$1$x"));
        assert!(!is_bcrypt("2a$10$x"));
        assert!(!is_bcrypt("plain"));
    }

    #[test]
    fn secrets_match_plain_or_hashed() {
        let hash = bcrypt::hash_with_result("s3cret", 4)
            .expect("hash")
            .format_for_version(bcrypt::Version::TwoA);
        assert!(secret_matches(&hash, "s3cret"));
        assert!(!secret_matches(&hash, "s3cre"));
        assert!(!secret_matches(&hash, &hash));
        let b = hash.replacen("$2a$", "$2b$", 1);
        assert!(secret_matches(&b, "s3cret"));
        assert!(secret_matches("pw", "pw"));
        assert!(!secret_matches("pw", "pw2"));
        assert!(!secret_matches("pw", ""));
    }

    #[test]
    fn export_subsets() {
        assert!(is_subset(b"a.b", b"a.b"));
        assert!(is_subset(b"a.b", b"a.*"));
        assert!(is_subset(b"a.b.c", b"a.>"));
        assert!(is_subset(b"a.*", b"a.>"));
        assert!(is_subset(b"a.*", b"a.*"));
        assert!(!is_subset(b"a.>", b"a.*"));
        assert!(!is_subset(b"a.*", b"a.b"));
        assert!(!is_subset(b"a", b"a.>"));
        assert!(!is_subset(b"b.c", b"a.*"));
    }
}
