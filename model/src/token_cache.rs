//! Tokenised benchmark texts kept on disk, so that evaluating checkpoint after checkpoint of a
//! run tokenises each window of queries and passages once. A file is named by the SHA-256 of
//! the tokenizer's fingerprint, the prefix and the texts themselves, so a changed benchmark,
//! tokenizer or `max_seq_length` can never read stale ids; files are written atomically, and a
//! damaged one is tokenised again (and replaced) with a warning, never trusted.

use std::path::{Path, PathBuf};

use rosetta_common::atomic::write_atomic;
use rosetta_common::digest::sha256_bytes;
use rosetta_datasets::tokenize::TextTokenizer;

/// The first bytes of a cache file (format version 1).
const MAGIC: &[u8; 8] = b"RSTOKV1\0";

/// A directory of windows tokenised by one tokenizer.
#[derive(Debug, Clone)]
pub struct TokenCache {
    dir: PathBuf,
    /// What decides the ids besides the texts ([`TextTokenizer::fingerprint`]).
    fingerprint: String,
}

impl TokenCache {
    /// A cache in `dir` (created on the first write) for ids from the tokenizer of `fingerprint`.
    pub fn new(dir: impl Into<PathBuf>, fingerprint: impl Into<String>) -> Self {
        Self { dir: dir.into(), fingerprint: fingerprint.into() }
    }

    /// A cache in `dir` for `tokenizer`'s ids.
    pub fn for_tokenizer(dir: impl Into<PathBuf>, tokenizer: &TextTokenizer) -> crate::Result<Self> {
        Ok(Self::new(dir, tokenizer.fingerprint()?))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `texts` tokenised with `prefix`.
    fn file(&self, prefix: &str, texts: &[&str]) -> PathBuf {
        // Each part with its length in front, so that no two keys run together the same way.
        let mut key = Vec::with_capacity(64 + texts.iter().map(|t| t.len() + 8).sum::<usize>());
        for part in [self.fingerprint.as_str(), prefix].iter().chain(texts) {
            key.extend_from_slice(&(part.len() as u64).to_le_bytes());
            key.extend_from_slice(part.as_bytes());
        }
        self.dir.join(format!("{}.tokens", sha256_bytes(&key)))
    }

    /// The cached ids of `texts`, or `tokenize(texts)` (then stored). Failing to store is only
    /// a warning: the ids are right either way.
    pub fn get_or_insert<E>(
        &self,
        prefix: &str,
        texts: &[&str],
        tokenize: impl FnOnce() -> Result<Vec<Vec<u32>>, E>,
    ) -> Result<(Vec<Vec<u32>>, bool), E> {
        let path = self.file(prefix, texts);
        if let Ok(bytes) = std::fs::read(&path) {
            match decode(&bytes, texts.len()) {
                Some(ids) => return Ok((ids, true)),
                None => tracing::warn!(file = %path.display(), "damaged token cache file; tokenising again"),
            }
        }
        let ids = tokenize()?;
        let stored = std::fs::create_dir_all(&self.dir)
            .map_err(|e| e.to_string())
            .and_then(|()| write_atomic(&path, &encode(&ids)).map_err(|e| e.to_string()));
        if let Err(error) = stored {
            tracing::warn!(file = %path.display(), %error, "could not store tokenised texts");
        }
        Ok((ids, false))
    }
}

fn encode(ids: &[Vec<u32>]) -> Vec<u8> {
    let total: usize = ids.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(16 + 4 * (ids.len() + total));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    for sequence in ids {
        out.extend_from_slice(&(sequence.len() as u32).to_le_bytes());
    }
    for sequence in ids {
        for id in sequence {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    out
}

/// The ids of a file written by [`encode`] for `expected` texts (None if it is anything else).
fn decode(bytes: &[u8], expected: usize) -> Option<Vec<Vec<u32>>> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let (count, rest) = rest.split_first_chunk::<8>()?;
    let count = usize::try_from(u64::from_le_bytes(*count)).ok()?;
    if count != expected || rest.len() < 4 * count {
        return None;
    }
    let (lengths, mut data) = rest.split_at(4 * count);
    let mut out = Vec::with_capacity(count);
    for length in lengths.chunks_exact(4) {
        let length = u32::from_le_bytes(length.try_into().ok()?) as usize;
        let (sequence, next) = data.split_at_checked(4 * length)?;
        out.push(sequence.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect());
        data = next;
    }
    data.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_keyed_by_texts_prefix_and_tokenizer() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(dir.path().join("cache"), "tok");
        let ids = vec![vec![1, 2, 3], vec![], vec![70_000]];
        let texts = ["a b c", "", "z"];
        let tokenize = || Ok::<_, ()>(ids.clone());
        assert_eq!(cache.get_or_insert("", &texts, tokenize).unwrap(), (ids.clone(), false));
        let never = || -> Result<Vec<Vec<u32>>, ()> { panic!("tokenised although cached") };
        assert_eq!(cache.get_or_insert("", &texts, never).unwrap(), (ids.clone(), true));
        // Any change of key tokenises again.
        for (fingerprint, prefix, texts) in
            [("other", "", &texts[..]), ("tok", "query: ", &texts[..]), ("tok", "", &["a b c", "", "y"][..])]
        {
            let cache = TokenCache::new(dir.path().join("cache"), fingerprint);
            assert!(!cache.get_or_insert(prefix, texts, tokenize).unwrap().1);
        }
    }

    #[test]
    fn a_damaged_file_is_tokenised_again_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(dir.path(), "tok");
        let texts = ["one", "two"];
        let ids = vec![vec![5, 6], vec![7]];
        cache.get_or_insert("", &texts, || Ok::<_, ()>(ids.clone())).unwrap();
        let file = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
        let bytes = std::fs::read(&file).unwrap();
        for damaged in [&bytes[..bytes.len() - 1], &bytes[..4], b"garbage".as_slice()] {
            std::fs::write(&file, damaged).unwrap();
            assert_eq!(cache.get_or_insert("", &texts, || Ok::<_, ()>(ids.clone())).unwrap(), (ids.clone(), false));
            assert_eq!(std::fs::read(&file).unwrap(), bytes, "replaced by a good file");
        }
        assert_eq!(decode(&bytes, 3), None, "a file for another number of texts is not used");
    }
}
