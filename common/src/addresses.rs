//! `RUN/coordinator.json`: where a serving coordinator can be reached, written by the
//! coordinator once it listens and read by launchers, tests and by workers started with
//! `--coordinator-file` (whose coordinator took any free port).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What a serving coordinator records about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorAddresses {
    /// The URL workers connect to: `http://HOST:PORT`, or `https://` when it serves TLS; the
    /// host is the machine's name when it listens on every interface.
    pub url: String,
    /// The gRPC address it is bound to.
    pub grpc: String,
    /// The Prometheus endpoint it is bound to.
    pub metrics: String,
    /// Its process id.
    pub pid: u32,
}

impl CoordinatorAddresses {
    /// Writes the record atomically.
    pub fn write(&self, path: &Path) -> Result<(), crate::atomic::FileError> {
        let text = serde_json::to_string(self).unwrap_or_else(|_| unreachable!("four strings and a number"));
        crate::atomic::write_atomic(path, text.as_bytes())
    }

    /// Reads a record; the error names the file and what is wrong.
    pub fn read(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: not a coordinator record: {e}", path.display()))
    }

    /// Waits for a coordinator to write its record at `path`, for at most `patience` (it may
    /// still be packing its data), and reads it.
    pub fn wait_for(path: &Path, patience: Duration) -> Result<Self, String> {
        let deadline = Instant::now() + patience;
        loop {
            match Self::read(path) {
                Ok(addresses) => return Ok(addresses),
                Err(_) if path.exists() && Instant::now() < deadline => {}
                Err(error) if path.exists() => return Err(error),
                Err(_) if Instant::now() >= deadline => {
                    return Err(format!(
                        "{} did not appear within {patience:?}: no coordinator of this run is serving",
                        path.display()
                    ));
                }
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_waited_for_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.json");
        let record = CoordinatorAddresses {
            url: "https://node1:40123".into(),
            grpc: "0.0.0.0:40123".into(),
            metrics: "0.0.0.0:9464".into(),
            pid: 7,
        };
        let err = CoordinatorAddresses::wait_for(&path, Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("did not appear within"), "{err}");
        let writer = {
            let (path, record) = (path.clone(), record.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150));
                record.write(&path).unwrap();
            })
        };
        assert_eq!(CoordinatorAddresses::wait_for(&path, Duration::from_secs(5)).unwrap(), record);
        writer.join().unwrap();
        std::fs::write(&path, "{").unwrap();
        assert!(CoordinatorAddresses::read(&path).unwrap_err().contains("not a coordinator record"));
    }
}
