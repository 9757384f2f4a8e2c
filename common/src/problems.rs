//! The problems of a configuration, each with its YAML path (`job.steps`, `data.train[1]`):
//! every section's `build()` reports all of its problems at once, so that a user fixes a config
//! in one round instead of one error at a time.

/// One problem: where in the YAML, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// YAML path, e.g. `job.heartbeat_timeout_secs`.
    pub path: String,
    /// What was found and what was expected.
    pub message: String,
}

/// Every problem found while building a configuration (empty: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigProblems {
    problems: Vec<ConfigProblem>,
}

impl ConfigProblems {
    /// No problems yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A list holding one problem.
    pub fn one(path: impl Into<String>, message: impl std::fmt::Display) -> Self {
        let mut problems = Self::new();
        problems.push(path, message);
        problems
    }

    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl std::fmt::Display) {
        self.problems.push(ConfigProblem { path: path.into(), message: message.to_string() });
    }

    /// Takes the value of a section's build, or records its problems and gives `None`.
    pub fn absorb<T>(&mut self, built: Result<T, ConfigProblems>) -> Option<T> {
        match built {
            Ok(value) => Some(value),
            Err(problems) => {
                self.problems.extend(problems.problems);
                None
            }
        }
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problems recorded.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigProblem> {
        self.problems.iter()
    }

    /// `Ok(value)` when nothing was recorded, else these problems.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigProblems> {
        if self.is_empty() { Ok(value) } else { Err(self) }
    }

    /// `Ok(())` when nothing was recorded, else these problems.
    pub fn check(self) -> Result<(), ConfigProblems> {
        self.into_result(())
    }
}

impl std::fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration:")?;
        for problem in &self.problems {
            write!(f, "\n  - {}: {}", problem.path, problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigProblems {}

/// A YAML parser's message about `file`, made to read as one error: its own `error:` prefix
/// dropped, the snippet's `<input>` named by the file, and the values a boolean takes said.
pub fn yaml_error_message(file: &std::path::Path, message: &str) -> String {
    let message = message.strip_prefix("error: ").unwrap_or(message);
    let message = message.replace("<input>", &file.display().to_string());
    message.replace("invalid boolean", "invalid boolean (write true or false)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_messages_name_their_file() {
        let message = "error: line 4 column 15: invalid boolean\n --> <input>:4:15";
        let read = yaml_error_message(std::path::Path::new("/c/run.yaml"), message);
        assert_eq!(read, "line 4 column 15: invalid boolean (write true or false)\n --> /c/run.yaml:4:15");
    }

    #[test]
    fn collects_every_problem_with_its_path() {
        let mut problems = ConfigProblems::new();
        problems.push("job.steps", "must be at least 1");
        assert_eq!(problems.absorb::<u32>(Err(ConfigProblems::one("data.train[0]", "missing"))), None);
        assert_eq!(problems.absorb::<u32>(Ok(3)), Some(3));
        let text = problems.to_string();
        assert!(text.contains("  - job.steps: must be at least 1\n  - data.train[0]: missing"), "{text}");
        assert!(ConfigProblems::new().into_result(1).is_ok());
    }
}
