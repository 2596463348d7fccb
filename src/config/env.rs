//! Reading environment variables: every problem is collected, so one message names them all.

use std::{fmt::Display, ops::RangeInclusive, str::FromStr, time::Duration};

use super::ConfigError;

/// Collects problems while reading variables so all of them can be reported together.
pub struct Reader<'a, F: Fn(&str) -> Option<String>> {
    lookup: &'a F,
    /// What is wrong so far, one sentence per variable.
    pub problems: Vec<String>,
}

impl<'a, F: Fn(&str) -> Option<String>> Reader<'a, F> {
    /// A reader over `lookup` (a variable name → its value).
    pub fn new(lookup: &'a F) -> Self {
        Self {
            lookup,
            problems: Vec::new(),
        }
    }

    /// `value` when nothing was wrong, else every problem at once.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, ConfigError> {
        match value {
            Some(value) if self.problems.is_empty() => Ok(value),
            _ => Err(ConfigError {
                problems: self.problems,
            }),
        }
    }

    /// A set, non-blank value, trimmed.
    pub fn value(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A variable that must be set (a problem otherwise).
    pub fn required(&mut self, name: &str) -> Option<String> {
        let value = self.value(name);
        if value.is_none() {
            self.problems
                .push(format!("{name} is required but not set"));
        }
        value
    }

    /// Records `result`'s problem, if any, against `name`.
    pub fn check(&mut self, name: &str, result: Result<(), String>) -> Option<()> {
        match result {
            Ok(()) => Some(()),
            Err(why) => {
                self.problems.push(format!("{name} {why}"));
                None
            }
        }
    }

    /// A variable parsed by `parse`, or `default` when unset or blank.
    pub fn parsed<T>(
        &mut self,
        name: &str,
        default: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.value(name).unwrap_or_else(|| default.to_owned());
        match parse(&raw) {
            Ok(value) => Some(value),
            Err(why) => {
                self.problems.push(format!("{name} {why}"));
                None
            }
        }
    }

    /// A number in `range`, or `default` when unset or blank; `what` names it in the problem
    /// ("must be {what} from {start} to {end}").
    fn number_in<T>(
        &mut self,
        name: &str,
        default: T,
        range: RangeInclusive<T>,
        what: &str,
    ) -> Option<T>
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        let Some(raw) = self.value(name) else {
            return Some(default);
        };
        match raw.parse::<T>() {
            Ok(n) if range.contains(&n) => Some(n),
            _ => {
                self.problems.push(format!(
                    "{name} must be {what} from {} to {}",
                    range.start(),
                    range.end()
                ));
                None
            }
        }
    }

    /// A whole number in `range`, or `default`.
    pub fn int_in<T>(&mut self, name: &str, default: T, range: RangeInclusive<T>) -> Option<T>
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        self.number_in(name, default, range, "a whole number")
    }

    /// A number of bytes in `range`, or `default`.
    pub fn bytes_in(
        &mut self,
        name: &str,
        default: usize,
        range: RangeInclusive<usize>,
    ) -> Option<usize> {
        self.number_in(name, default, range, "a number of bytes")
    }

    /// A duration given in milliseconds, in `range` (milliseconds), or `default_ms`.
    pub fn millis_in(
        &mut self,
        name: &str,
        default_ms: u64,
        range: RangeInclusive<u64>,
    ) -> Option<Duration> {
        self.number_in(name, default_ms, range, "a number of milliseconds")
            .map(Duration::from_millis)
    }

    /// A duration given in whole seconds, in `range` (seconds), or `default_secs`.
    pub fn secs_in(
        &mut self,
        name: &str,
        default_secs: u64,
        range: RangeInclusive<u64>,
    ) -> Option<Duration> {
        self.number_in(name, default_secs, range, "a whole number of seconds")
            .map(Duration::from_secs)
    }

    /// A Temporal name (namespace, task queue, workflow type): non-empty, no whitespace.
    pub fn name(&mut self, name: &str, default: &str) -> Option<String> {
        self.parsed(name, default, |raw| {
            if raw.chars().any(char::is_whitespace) || raw.len() > 255 {
                Err("must be a single word of at most 255 characters".to_owned())
            } else {
                Ok(raw.to_owned())
            }
        })
    }
}
