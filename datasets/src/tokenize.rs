//! Tokenisation with the `tokenizers` crate: loading any Hugging Face `tokenizer.json`, and
//! training a WordPiece tokenizer from a corpus for the small default model.

use std::path::{Path, PathBuf};

use std::collections::{BTreeMap, HashMap};
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{Encoding, Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, Tokenizer};

use crate::error::{DatasetError, Result};

/// Special tokens of the trained WordPiece tokenizer, in id order.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// A loaded tokenizer that remembers its file for error messages.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
}

impl TextTokenizer {
    /// Loads a Hugging Face `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| DatasetError::Tokenizer { path: path.to_path_buf(), message: e.to_string() })?;
        Ok(Self { inner, path: path.to_path_buf() })
    }

    /// Encodes many texts in parallel, with special tokens, without padding or truncation.
    pub fn encode_batch(&self, texts: Vec<&str>) -> Result<Vec<Encoding>> {
        self.inner
            .encode_batch(texts, true)
            .map_err(|e| DatasetError::Tokenizer { path: self.path.clone(), message: e.to_string() })
    }

    /// A copy that truncates every encoding to `max_length` tokens (special tokens included),
    /// the way Hugging Face tokenizers do with `truncation=True, max_length=…`.
    pub fn with_truncation(&self, max_length: usize) -> Result<Self> {
        let mut inner = self.inner.clone();
        inner
            .with_truncation(Some(tokenizers::TruncationParams { max_length, ..Default::default() }))
            .map_err(|e| DatasetError::Tokenizer { path: self.path.clone(), message: e.to_string() })?;
        inner.with_padding(None);
        Ok(Self { inner, path: self.path.clone() })
    }

    /// A digest of everything that decides the token ids (vocabulary, normaliser,
    /// pre-tokeniser, post-processor, truncation), for caches of tokenised text.
    pub fn fingerprint(&self) -> Result<String> {
        let json = self
            .inner
            .to_string(false)
            .map_err(|e| DatasetError::Tokenizer { path: self.path.clone(), message: e.to_string() })?;
        Ok(rosetta_common::digest::sha256_bytes(json.as_bytes()))
    }

    /// The file the tokenizer was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Vocabulary size including special tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The token of `id`, if in the vocabulary.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of `token`, if in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

/// Trains a BERT-style WordPiece tokenizer (lower-casing, accents kept, so every script
/// survives) on `texts` and saves it as `tokenizer.json` at `out`.
///
/// The vocabulary is learnt by Rosetta itself — byte-pair merges over word types, ties broken
/// by the pieces' text — rather than by the `tokenizers` trainer, whose result changes from
/// run to run (hash-map order decides ties). Same texts, same `tokenizer.json`, byte for byte.
pub fn train_wordpiece<I, S>(texts: I, vocab_size: usize, out: &Path) -> Result<TextTokenizer>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    if vocab_size < SPECIAL_TOKENS.len() + 10 {
        return Err(DatasetError::invalid("vocab_size", "must be at least 15"));
    }
    let err = |e: tokenizers::Error| DatasetError::Tokenizer { path: out.to_path_buf(), message: e.to_string() };
    let normalizer = BertNormalizer::new(true, true, Some(false), true);
    let mut word_counts: BTreeMap<String, u64> = BTreeMap::new();
    for text in texts {
        let mut pretokenized = PreTokenizedString::from(text.as_ref());
        pretokenized.normalize(|s| normalizer.normalize(s)).map_err(err)?;
        BertPreTokenizer.pre_tokenize(&mut pretokenized).map_err(err)?;
        for (word, _, _) in pretokenized.get_splits(OffsetReferential::Original, OffsetType::Byte) {
            *word_counts.entry(word.to_string()).or_default() += 1;
        }
    }
    let vocab = learn_wordpiece_vocab(&word_counts, vocab_size - SPECIAL_TOKENS.len(), 2);
    let mut tokenizer = Tokenizer::new(WordPiece::default());
    tokenizer.with_normalizer(Some(normalizer)).map_err(err)?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer)).with_decoder(Some(WordPieceDecoder::default()));
    tokenizer.with_post_processor(Some(BertProcessing::new(("[SEP]".to_string(), 3), ("[CLS]".to_string(), 2))));
    let mut json: serde_json::Value = serde_json::from_str(&tokenizer.to_string(false).map_err(err)?)
        .map_err(|e| DatasetError::Tokenizer { path: out.to_path_buf(), message: e.to_string() })?;
    let mut table = serde_json::Map::new();
    for (id, token) in SPECIAL_TOKENS.iter().map(|t| t.to_string()).chain(vocab).enumerate() {
        table.insert(token, serde_json::Value::from(id));
    }
    json["model"]["vocab"] = serde_json::Value::Object(table);
    json["added_tokens"] = SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(id, content)| {
            serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                               "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    rosetta_common::atomic::write_atomic(out, json.to_string().as_bytes())?;
    TextTokenizer::load(out)
}

/// Learns up to `size` WordPiece tokens from word counts: every character (word-initial, and
/// `##`-prefixed inside words), then the most frequent adjacent merges (count ≥ `min_count`;
/// ties to the lexicographically smallest pair), in the order they were learnt.
pub fn learn_wordpiece_vocab(word_counts: &BTreeMap<String, u64>, size: usize, min_count: u64) -> Vec<String> {
    let mut symbols: Vec<String> = Vec::new();
    let mut symbol_ids: HashMap<String, u32> = HashMap::new();
    fn intern(s: String, symbols: &mut Vec<String>, ids: &mut HashMap<String, u32>) -> u32 {
        *ids.entry(s.clone()).or_insert_with(|| {
            symbols.push(s);
            (symbols.len() - 1) as u32
        })
    }
    let mut words: Vec<(Vec<u32>, u64)> = Vec::with_capacity(word_counts.len());
    for (word, &count) in word_counts {
        let pieces: Vec<u32> = word
            .chars()
            .enumerate()
            .map(|(i, c)| intern(if i == 0 { c.to_string() } else { format!("##{c}") }, &mut symbols, &mut symbol_ids))
            .collect();
        words.push((pieces, count));
    }
    // Alphabet first, sorted, so the order does not depend on the corpus order.
    let mut vocab: Vec<String> = symbols.clone();
    vocab.sort();
    vocab.truncate(size);
    while vocab.len() < size {
        let mut pair_counts: HashMap<(u32, u32), u64> = HashMap::new();
        for (pieces, count) in &words {
            for pair in pieces.windows(2) {
                *pair_counts.entry((pair[0], pair[1])).or_default() += count;
            }
        }
        let best = pair_counts.into_iter().filter(|(_, c)| *c >= min_count).max_by(|(pa, ca), (pb, cb)| {
            ca.cmp(cb).then_with(|| {
                let key = |p: &(u32, u32)| (symbols[p.0 as usize].clone(), symbols[p.1 as usize].clone());
                key(pb).cmp(&key(pa))
            })
        });
        let Some(((left, right), _)) = best else { break };
        let merged = format!("{}{}", symbols[left as usize], symbols[right as usize].trim_start_matches("##"));
        let is_new = !symbol_ids.contains_key(&merged);
        let id = intern(merged.clone(), &mut symbols, &mut symbol_ids);
        if is_new {
            vocab.push(merged);
        }
        for (pieces, _) in &mut words {
            let mut i = 0;
            while i + 1 < pieces.len() {
                if pieces[i] == left && pieces[i + 1] == right {
                    pieces[i] = id;
                    pieces.remove(i + 1);
                }
                i += 1;
            }
        }
    }
    vocab
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trains_saves_and_reloads_a_wordpiece_tokenizer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        let corpus = ["Kadoru Mesil was born in 1987.", "Кадору Месил родился.", "Καδορυ γεννήθηκε."];
        let texts = corpus.iter().cycle().take(60).copied();
        let tokenizer = train_wordpiece(texts, 200, &path).unwrap();
        assert_eq!(tokenizer.token_to_id("[PAD]"), Some(0));
        let encodings = tokenizer.encode_batch(vec!["Kadoru was born in 1987.", "Кадору"]).unwrap();
        let first = encodings[0].get_tokens();
        assert_eq!(first.first().map(String::as_str), Some("[CLS]"));
        assert_eq!(first.last().map(String::as_str), Some("[SEP]"));
        assert!(first.iter().any(|t| t == "1987"), "{first:?}");
        assert!(!encodings[1].get_tokens().iter().any(|t| t == "[UNK]"), "{:?}", encodings[1].get_tokens());
        let reloaded = TextTokenizer::load(&path).unwrap();
        assert_eq!(reloaded.vocab_size(), tokenizer.vocab_size());
        // Deterministic: the same texts give the same file.
        let again = dir.path().join("again.json");
        train_wordpiece(corpus.iter().cycle().take(60).copied(), 200, &again).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&again).unwrap());
    }

    #[test]
    fn merges_follow_frequency_then_text() {
        let counts: BTreeMap<String, u64> =
            [("abab".to_string(), 5), ("ab".to_string(), 3), ("ba".to_string(), 1)].into();
        let vocab = learn_wordpiece_vocab(&counts, 8, 2);
        // Alphabet (sorted), then "ab" (8+... occurrences), then "##ab" etc.
        assert_eq!(&vocab[..4], &["##a", "##b", "a", "b"]);
        assert_eq!(vocab[4], "ab");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = TextTokenizer::load(Path::new("/nonexistent/tokenizer.json")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/tokenizer.json"), "{err}");
    }
}
