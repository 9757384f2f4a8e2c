//! Random bytes from the operating system, for tokens and secrets.

use crate::atomic::{FileError, FileResult};

/// `N` random bytes from `/dev/urandom`.
pub fn random_bytes<const N: usize>() -> FileResult<[u8; N]> {
    use std::io::Read;
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| FileError::new("/dev/urandom", e))?;
    Ok(bytes)
}

/// `N` random bytes as lowercase hex.
pub fn random_hex<const N: usize>() -> FileResult<String> {
    Ok(random_bytes::<N>()?.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares two byte strings in time that depends only on their lengths (for tokens and secrets).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_and_comparisons() {
        assert_ne!(random_bytes::<16>().unwrap(), random_bytes::<16>().unwrap());
        assert_eq!(random_hex::<4>().unwrap().len(), 8);
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"ab", b"abc")
        );
    }
}
