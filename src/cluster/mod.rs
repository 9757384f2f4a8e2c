//! The running system: the coordinator process, worker processes, and the local cluster that
//! `rosetta train` starts on this machine.

pub mod coordinator;
pub mod lookup;
pub mod worker;

/// Environment variable holding the shared token workers present to the coordinator.
pub const TOKEN_ENV: &str = "ROSETTA_TOKEN";

/// Reads the token from `--token-file` or `$ROSETTA_TOKEN` (never logged).
pub fn read_token(token_file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let token = match token_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading token file {}: {e}", path.display()))?
            .trim()
            .to_string(),
        None => {
            std::env::var(TOKEN_ENV).map_err(|_| anyhow::anyhow!("no token: pass --token-file or set {TOKEN_ENV}"))?
        }
    };
    anyhow::ensure!(!token.is_empty(), "the token is empty");
    Ok(token)
}

/// A fresh random token for a local cluster.
pub fn random_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
