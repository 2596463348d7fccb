//! An e-mail address, normalised.

use std::fmt;

/// A syntactically plausible e-mail address, trimmed and lower-cased.
///
/// This is deliberately not a full RFC 5322 parser: it rejects what is clearly not an address
/// (no `@`, blanks, control characters, an empty local part, a domain without a dot) and leaves
/// deliverability to the mail system.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

/// Longest address accepted (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;

impl Email {
    /// Parses `raw`, or says why it is not an address.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err("email is required");
        }
        if email.len() > MAX_EMAIL_LEN {
            return Err("email is too long");
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err("email must contain @");
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| (c.is_alphanumeric() || c == '-' || c == '.') && !super::is_invisible(c));
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && !local
                .chars()
                .any(|c| c.is_whitespace() || super::is_invisible(c));
        if local_ok && domain_ok {
            Ok(Self(email))
        } else {
            Err("email is not a valid address")
        }
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_and_lower_cased() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").map(|e| e.to_string()),
            Ok("ada@example.com".to_owned())
        );
    }

    #[test]
    fn things_that_are_not_addresses_are_refused() {
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@localhost",
            "a da@example.com",
            "ada@exa mple.com",
            "ada@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
