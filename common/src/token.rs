//! The shared token workers present to the coordinator: made once per local run, read from a
//! file or the environment otherwise, never put on a command line.

use std::path::Path;

/// Why no token could be had (the message names the file or the variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError(pub String);

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "token: {}", self.0)
    }
}

impl std::error::Error for TokenError {}

/// Environment variable holding the token.
pub const TOKEN_ENV: &str = "ROSETTA_TOKEN";

/// Reads the token from `file` (surrounding white space trimmed) or from `$ROSETTA_TOKEN`.
pub fn read_token(file: Option<&Path>) -> Result<String, TokenError> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| TokenError(format!("reading {}: {e}", path.display())))?
            .trim()
            .to_string(),
        None => std::env::var(TOKEN_ENV)
            .map_err(|_| TokenError(format!("none given: pass --token-file or set {TOKEN_ENV}")))?,
    };
    if token.is_empty() {
        return Err(TokenError("the token is empty".into()));
    }
    Ok(token)
}

/// A fresh random token (128 bits from /dev/urandom, as hex).
pub fn random_token() -> Result<String, TokenError> {
    crate::random::random_hex::<16>().map_err(|e| TokenError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_files_are_trimmed() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        let dir = std::env::temp_dir().join(format!("rosetta-token-{}", std::process::id()));
        std::fs::write(&dir, "  secret\n").unwrap();
        assert_eq!(read_token(Some(&dir)).unwrap(), "secret");
        std::fs::write(&dir, "\n").unwrap();
        assert!(read_token(Some(&dir)).unwrap_err().to_string().contains("empty"));
        std::fs::remove_file(&dir).unwrap();
    }
}
