//! Tokenisation with the `tokenizers` crate: loading any Hugging Face `tokenizer.json`, and
//! training a WordPiece tokenizer from a corpus for the small default model.

use std::path::{Path, PathBuf};

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Encoding, Tokenizer};

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

    /// The file the tokenizer was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Vocabulary size including special tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of `token`, if in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

/// Trains a BERT-style WordPiece tokenizer (lower-casing, accents kept, so every script
/// survives) on `texts` and saves it as `tokenizer.json` at `out`.
pub fn train_wordpiece<I, S>(texts: I, vocab_size: usize, out: &Path) -> Result<TextTokenizer>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    if vocab_size < SPECIAL_TOKENS.len() + 10 {
        return Err(DatasetError::invalid("vocab_size", "must be at least 15"));
    }
    let err = |e: tokenizers::Error| DatasetError::Tokenizer { path: out.to_path_buf(), message: e.to_string() };
    let mut tokenizer = Tokenizer::new(WordPiece::default());
    tokenizer.with_normalizer(Some(BertNormalizer::new(true, true, Some(false), true))).map_err(err)?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer)).with_decoder(Some(WordPieceDecoder::default()));
    let specials: Vec<AddedToken> = SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true)).collect();
    let mut trainer: TrainerWrapper = WordPieceTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .build()
        .into();
    tokenizer.train(&mut trainer, texts).map_err(err)?;
    let id = |token: &str| {
        tokenizer.token_to_id(token).ok_or_else(|| DatasetError::Tokenizer {
            path: out.to_path_buf(),
            message: format!("trained vocabulary lacks {token}"),
        })
    };
    let processor = BertProcessing::new(("[SEP]".to_string(), id("[SEP]")?), ("[CLS]".to_string(), id("[CLS]")?));
    tokenizer.with_post_processor(Some(processor));
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| DatasetError::io(parent, e))?;
    }
    tokenizer.save(out, false).map_err(err)?;
    TextTokenizer::load(out)
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
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = TextTokenizer::load(Path::new("/nonexistent/tokenizer.json")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/tokenizer.json"), "{err}");
    }
}
