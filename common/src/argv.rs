//! Command lines of Rosetta's own processes, built from their typed configurations: each
//! process crate turns its configuration into an [`Argv`] (`to_args()`), and parses the same
//! flags back with clap, so that every launcher starts a process from one type instead of
//! spelling its flags by hand. Also the exact decimal form of the durations such flags carry.

use std::fmt::Display;
use std::path::Path;
use std::time::Duration;

/// The arguments of one `rosetta` subcommand, in order (the program itself not included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Argv(Vec<String>);

impl Argv {
    /// The arguments of `rosetta <subcommand> …`.
    pub fn new(subcommand: &str) -> Self {
        Self(vec![subcommand.to_string()])
    }

    /// Adds a positional argument.
    pub fn positional(mut self, value: impl Display) -> Self {
        self.0.push(value.to_string());
        self
    }

    /// Adds `name` when `on`.
    pub fn flag(mut self, name: &str, on: bool) -> Self {
        if on {
            self.0.push(name.to_string());
        }
        self
    }

    /// Adds `name value`.
    pub fn value(mut self, name: &str, value: impl Display) -> Self {
        self.0.push(name.to_string());
        self.0.push(value.to_string());
        self
    }

    /// Adds `name path`.
    pub fn path(self, name: &str, path: &Path) -> Self {
        let text = path.display().to_string();
        self.value(name, text)
    }

    /// Adds `name value` when there is a value.
    pub fn optional(self, name: &str, value: Option<impl Display>) -> Self {
        match value {
            Some(value) => self.value(name, value),
            None => self,
        }
    }

    /// Adds `name path` when there is a path.
    pub fn optional_path(self, name: &str, path: Option<&Path>) -> Self {
        match path {
            Some(path) => self.path(name, path),
            None => self,
        }
    }

    /// Adds `name value` once per value.
    pub fn repeated<T: Display>(self, name: &str, values: impl IntoIterator<Item = T>) -> Self {
        values.into_iter().fold(self, |argv, value| argv.value(name, value))
    }

    /// Adds `name path` once per path.
    pub fn repeated_paths<'a>(self, name: &str, paths: impl IntoIterator<Item = &'a Path>) -> Self {
        paths.into_iter().fold(self, |argv, path| argv.path(name, path))
    }

    /// Adds `name seconds` in [`seconds`]'s exact form.
    pub fn duration(self, name: &str, duration: Duration) -> Self {
        self.value(name, seconds(duration))
    }

    /// The arguments.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// The arguments, owned.
    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

/// A duration as decimal seconds that [`parse_seconds`] reads back exactly (`20`, `0.5`,
/// `1.000000001`).
pub fn seconds(duration: Duration) -> String {
    let nanos = duration.subsec_nanos();
    if nanos == 0 {
        return duration.as_secs().to_string();
    }
    let fraction = format!("{nanos:09}");
    format!("{}.{}", duration.as_secs(), fraction.trim_end_matches('0'))
}

/// Decimal seconds (at most nanosecond precision, at most a day) as a duration; the error
/// says what was expected.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not a number of seconds between 0 and 86400");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 || whole.len() > 5 {
        return Err(invalid());
    }
    let secs: u64 = whole.parse().map_err(|_| invalid())?;
    let nanos: u32 = if fraction.is_empty() { 0 } else { format!("{fraction:0<9}").parse().map_err(|_| invalid())? };
    let duration = Duration::new(secs, nanos);
    if duration > Duration::from_secs(86_400) {
        return Err(invalid());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_arguments_in_order() {
        let argv = Argv::new("worker")
            .value("--coordinator", "http://h:1")
            .flag("--quiet", true)
            .flag("--loud", false)
            .optional("--threads", Some(2))
            .optional("--device", None::<&str>)
            .repeated_paths("--benchmark", [Path::new("/a"), Path::new("/b c")])
            .duration("--rpc-timeout", Duration::from_millis(2500));
        assert_eq!(
            argv.into_vec(),
            [
                "worker",
                "--coordinator",
                "http://h:1",
                "--quiet",
                "--threads",
                "2",
                "--benchmark",
                "/a",
                "--benchmark",
                "/b c",
                "--rpc-timeout",
                "2.5"
            ]
        );
    }

    #[test]
    fn seconds_round_trip_exactly_and_bad_ones_are_refused() {
        for duration in [
            Duration::ZERO,
            Duration::from_secs(20),
            Duration::from_millis(1500),
            Duration::new(3, 1),
            Duration::new(86_399, 999_999_999),
        ] {
            assert_eq!(parse_seconds(&seconds(duration)), Ok(duration), "{}", seconds(duration));
        }
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["", "-1", "1e3", "nan", ".5", "86401", "1.0000000001", "1 "] {
            assert!(parse_seconds(bad).unwrap_err().contains("not a number of seconds"), "{bad:?}");
        }
    }
}
