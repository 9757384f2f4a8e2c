//! Streaming reader of SQuAD-style JSON (also the LAReQA release format): one article at a
//! time is held in memory, never the whole file.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::error::{DatasetError, Result};

/// One paragraph with its questions (unknown fields are ignored: SQuAD variants add many).
#[derive(Debug, Clone, Deserialize)]
pub struct Paragraph {
    /// The paragraph text.
    pub context: String,
    /// Questions about it.
    #[serde(default)]
    pub qas: Vec<QuestionAnswer>,
    /// Sentences of the paragraph (LAReQA), if given.
    #[serde(default)]
    pub sentences: Option<Vec<String>>,
    /// `[start, end)` character offsets of each sentence (LAReQA), if given.
    #[serde(default)]
    pub sentence_breaks: Option<Vec<[usize; 2]>>,
}

/// A question with its answers.
#[derive(Debug, Clone, Deserialize)]
pub struct QuestionAnswer {
    /// Question id, shared across languages in parallel releases.
    pub id: String,
    /// The question text.
    pub question: String,
    /// Answers (`answer_start` is a character offset into the context).
    #[serde(default)]
    pub answers: Vec<Answer>,
}

/// One answer span.
#[derive(Debug, Clone, Deserialize)]
pub struct Answer {
    /// Character offset of the answer in the context.
    pub answer_start: usize,
    /// Answer text.
    #[serde(default)]
    pub text: String,
}

#[derive(Deserialize)]
struct Article {
    #[serde(default)]
    paragraphs: Vec<Paragraph>,
}

/// Calls `on_paragraph` for every paragraph of every article of a SQuAD-style file.
pub fn for_each_paragraph(path: &Path, on_paragraph: impl FnMut(Paragraph) -> Result<()>) -> Result<()> {
    let file = File::open(path).map_err(|e| DatasetError::io(path, e))?;
    let mut deserializer = serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 20, file));
    let mut state = State { on_paragraph, failure: None };
    let outcome = TopLevel(&mut state).deserialize(&mut deserializer);
    if let Some(failure) = state.failure {
        return Err(failure);
    }
    outcome.map_err(|e| DatasetError::format(path, format!("not SQuAD-style JSON: {e}")))?;
    deserializer.end().map_err(|e| DatasetError::format(path, format!("trailing data: {e}")))
}

struct State<F> {
    on_paragraph: F,
    failure: Option<DatasetError>,
}

struct TopLevel<'a, F>(&'a mut State<F>);

impl<'de, F: FnMut(Paragraph) -> Result<()>> DeserializeSeed<'de> for TopLevel<'_, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, F: FnMut(Paragraph) -> Result<()>> Visitor<'de> for TopLevel<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a \"data\" array of articles")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut saw_data = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "data" {
                saw_data = true;
                map.next_value_seed(Articles(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if !saw_data {
            return Err(serde::de::Error::missing_field("data"));
        }
        Ok(())
    }
}

struct Articles<'a, F>(&'a mut State<F>);

impl<'de, F: FnMut(Paragraph) -> Result<()>> DeserializeSeed<'de> for Articles<'_, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Paragraph) -> Result<()>> Visitor<'de> for Articles<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of articles")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(article) = seq.next_element::<Article>()? {
            for paragraph in article.paragraphs {
                if let Err(error) = (self.0.on_paragraph)(paragraph) {
                    self.0.failure = Some(error);
                    return Err(serde::de::Error::custom("stopped"));
                }
            }
        }
        Ok(())
    }
}

/// Sentence `[start, end)` character ranges of a paragraph: the given breaks, else a simple
/// split after `.`, `?`, `!`, `。`, `؟` or `।` followed by whitespace or the end.
pub fn sentence_ranges(paragraph: &Paragraph) -> Vec<[usize; 2]> {
    if let Some(breaks) = &paragraph.sentence_breaks {
        return breaks.clone();
    }
    let chars: Vec<char> = paragraph.context.chars().collect();
    let mut ranges = Vec::new();
    let mut start = 0;
    for i in 0..chars.len() {
        let terminal = matches!(chars[i], '.' | '?' | '!' | '。' | '؟' | '।');
        let boundary = i + 1 == chars.len() || chars[i + 1].is_whitespace() || matches!(chars[i], '。');
        if terminal && boundary {
            ranges.push([start, i + 1]);
            start = i + 1;
            while start < chars.len() && chars[start].is_whitespace() {
                start += 1;
            }
        }
    }
    if start < chars.len() {
        ranges.push([start, chars.len()]);
    }
    ranges
}

/// The text of each sentence: the given `sentences`, else the ranges cut from the context.
pub fn sentence_texts(paragraph: &Paragraph, ranges: &[[usize; 2]]) -> Vec<String> {
    if let Some(sentences) = &paragraph.sentences {
        return sentences.clone();
    }
    let chars: Vec<char> = paragraph.context.chars().collect();
    ranges
        .iter()
        .map(|[s, e]| chars[(*s).min(chars.len())..(*e).min(chars.len())].iter().collect::<String>().trim().to_string())
        .collect()
}

/// The index of the sentence whose range contains character offset `at`.
pub fn sentence_containing(ranges: &[[usize; 2]], at: usize) -> Option<usize> {
    ranges.iter().position(|[s, e]| *s <= at && at < *e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive_split_finds_sentence_of_answer() {
        let p = Paragraph {
            context: "Ana lives here. She was born in 1990! Where? Nowhere".into(),
            qas: vec![],
            sentences: None,
            sentence_breaks: None,
        };
        let ranges = sentence_ranges(&p);
        assert_eq!(sentence_texts(&p, &ranges), vec!["Ana lives here.", "She was born in 1990!", "Where?", "Nowhere"]);
        assert_eq!(sentence_containing(&ranges, 32), Some(1));
    }

    #[test]
    fn streams_paragraphs_and_reports_bad_json_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("en.json");
        std::fs::write(&path, r#"{"version":"1","data":[{"title":"t","paragraphs":[{"context":"A. B.","qas":[]}]},{"paragraphs":[{"context":"C.","qas":[]}]}]}"#).unwrap();
        let mut seen = Vec::new();
        for_each_paragraph(&path, |p| {
            seen.push(p.context);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec!["A. B.", "C."]);
        std::fs::write(&path, r#"{"data":[{"paragraphs":[{"qas":[]}]}]}"#).unwrap();
        let err = for_each_paragraph(&path, |_| Ok(())).unwrap_err().to_string();
        assert!(err.contains("en.json") && err.contains("context"), "{err}");
    }
}
