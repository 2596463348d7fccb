//! Reading environment variables: every problem is collected, so one message names them all.

use std::time::Duration;

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

/// A number of milliseconds from 0 to 60000.
pub fn millis(raw: &str) -> Result<Duration, String> {
    match raw.parse::<u64>() {
        Ok(ms) if ms <= 60_000 => Ok(Duration::from_millis(ms)),
        _ => Err("must be a number of milliseconds from 0 to 60000".to_owned()),
    }
}
