//! Login throttling in Postgres, so every replica shares it.
//!
//! An attempt is counted *before* its password is hashed, in one atomic call
//! (`login_throttle_reserve`, row locks): fifty parallel guesses for one e-mail check at most
//! `LOGIN_MAX_FAILURES` passwords. Three keys count each attempt:
//!
//! - the (client address, e-mail) pair, with the low limit, and a lock that doubles each time it
//!   locks again: the guesser is slowed down, the owner at another address is not;
//! - the e-mail alone, with a much higher ceiling, against guessing from many addresses; its
//!   lock doubles too, and it is waived for an address that has not failed for that e-mail
//!   within the window (the owner's): while an e-mail is locked, every address that has not
//!   failed for it may try once per window, and one wrong password puts it under the lock;
//! - the address alone, so one address cannot spray many e-mails.
//!
//! An address is an IPv4 address, or an IPv6 /64 (what one subscriber is given).
//!
//! A successful login clears its pair and gives the attempt back to the other two keys. Rows
//! expire and are deleted (`store::purge_expired_throttle`). The statements are in `store`.

use std::{net::IpAddr, time::Duration};

use chrono::{DateTime, Utc};

use crate::types::Email;

/// Throttling policy.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Failures per (address, e-mail) within `window` before that pair is locked.
    pub max_failures: u32,
    /// Failures per e-mail, from any address, within `window` before the e-mail is locked.
    pub max_failures_per_email: u32,
    /// Failures per address, for any e-mail, within `window` before the address is locked.
    pub max_failures_per_address: u32,
    /// How far back failures count.
    pub window: Duration,
    /// How long a lock lasts (the first pair lock; later ones double).
    pub lockout: Duration,
    /// The longest a pair lock can grow to.
    pub max_lockout: Duration,
}

/// The keys one login attempt is counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptKeys {
    pub(super) pair: String,
    pub(super) email: String,
    pub(super) address: String,
}

impl AttemptKeys {
    /// The keys of an attempt for `email` from `address`.
    pub fn new(address: IpAddr, email: &Email) -> Self {
        // IPv4-mapped IPv6 addresses count as the IPv4 address they are; any other IPv6
        // address counts as its /64, the block one subscriber is given, so rotating through it
        // earns no fresh keys.
        let address = match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => ipnet::Ipv6Net::new(v6, 64)
                    .map_or_else(|_| v6.to_string(), |net| net.trunc().to_string()),
            },
            IpAddr::V4(v4) => v4.to_string(),
        };
        Self {
            pair: format!("pair:{address}|{}", email.as_str()),
            email: format!("email:{}", email.as_str()),
            address: format!("addr:{address}"),
        }
    }
}

/// The outcome of reserving an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Go ahead and check the password. `locks_at` is set when this attempt was the last one
    /// allowed: a failure now answers "throttled until then".
    Allowed {
        /// The lock this attempt started, if it reached a limit.
        locked_until: Option<DateTime<Utc>>,
    },
    /// Refused without checking anything, until this time.
    Refused {
        /// When the next attempt may be made.
        until: DateTime<Utc>,
    },
}

/// The reservation a set of per-key answers amounts to: refused while any key is locked
/// (until the latest lock ends), otherwise allowed, noting the earliest lock it started.
pub(super) fn decide(rows: &[(String, bool, Option<DateTime<Utc>>)]) -> Reservation {
    let refused_until = rows
        .iter()
        .filter(|(_, allowed, _)| !allowed)
        .filter_map(|(_, _, until)| *until)
        .max();
    match refused_until {
        Some(until) => Reservation::Refused { until },
        None if rows.iter().any(|(_, allowed, _)| !allowed) => Reservation::Refused {
            until: Utc::now() + chrono::Duration::seconds(1),
        },
        None => Reservation::Allowed {
            locked_until: rows.iter().filter_map(|(_, _, until)| *until).min(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0)
    }

    #[test]
    fn any_locked_key_refuses_until_the_latest_lock_ends() {
        let rows = [
            ("pair".to_owned(), false, at(60)),
            ("email".to_owned(), true, None),
            ("addr".to_owned(), false, at(600)),
        ];

        let reservation = decide(&rows);

        assert_eq!(
            reservation,
            Reservation::Refused {
                until: at(600).unwrap_or_default()
            }
        );
    }

    #[test]
    fn the_attempt_that_reaches_a_limit_is_allowed_and_reports_the_lock() {
        let rows = [
            ("pair".to_owned(), true, at(60)),
            ("email".to_owned(), true, None),
            ("addr".to_owned(), true, None),
        ];

        assert_eq!(
            decide(&rows),
            Reservation::Allowed {
                locked_until: at(60)
            }
        );
    }

    #[test]
    fn every_address_of_one_ipv6_slash_64_shares_its_keys() {
        let email = Email::parse("a@example.com").unwrap_or_else(|e| panic!("{e}"));
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap_or_else(|_| [0; 4].into());
        let same_64: IpAddr = "2001:db8:1:2:ffff:1234:5678:9abc"
            .parse()
            .unwrap_or_else(|_| [0; 4].into());
        let next_64: IpAddr = "2001:db8:1:3::1".parse().unwrap_or_else(|_| [0; 4].into());

        assert_eq!(
            AttemptKeys::new(one, &email),
            AttemptKeys::new(same_64, &email)
        );
        assert_ne!(
            AttemptKeys::new(one, &email),
            AttemptKeys::new(next_64, &email)
        );
        assert_eq!(
            AttemptKeys::new(one, &email).address,
            "addr:2001:db8:1:2::/64"
        );
    }

    #[test]
    fn ipv4_mapped_addresses_share_the_ipv4_keys() {
        let email = Email::parse("a@example.com").unwrap_or_else(|e| panic!("{e}"));
        let v4: IpAddr = [10, 0, 0, 1].into();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap_or(v4);

        assert_eq!(
            AttemptKeys::new(v4, &email),
            AttemptKeys::new(mapped, &email)
        );
    }
}
