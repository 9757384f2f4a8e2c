//! MKQA → `qrels` benchmark ranked over one corpus. MKQA (Longpre et al., 2021) gives 10k
//! questions, each in 26 languages (`queries`: language → text), with answers as strings
//! (`answers`: language → list of `{type, text, aliases}`), and no passages of its own; the
//! protocol BGE-M3 reports retrieves from an English passage collection and counts a query as
//! answered at k when one of its top k passages contains an answer (success@k, their
//! "Recall@k").
//!
//! The conversion finds, once, every passage that contains one of a question's English
//! answers (its `text` or an alias; answers of type `unanswerable` and `long_answer`, and
//! empty ones, are left out) and writes them as the judgements of every language version of
//! the question. The benchmark's pool is the whole corpus (`pool: corpus`), so each language's
//! queries rank the same passages. Matching normalises both sides as SQuAD's evaluation does:
//! lower-case, punctuation removed (every character that is neither a letter, a digit nor
//! white space), the English articles `a`, `an`, `the` dropped, white space collapsed; an
//! answer matches when its tokens occur contiguously among the passage's.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use serde::Deserialize;

use super::{BenchmarkSummary, for_each_line};
use crate::benchmark::{BenchmarkSpec, Candidate, CorpusWriter, Pool, Protocol, Qrel, QrelWriter, Query, QueryWriter};
use crate::error::{DatasetError, Result};
use crate::lang::{normalise_language, unknown_language_message};

/// The language of the passages MKQA's answers are matched in.
pub const MKQA_CORPUS_LANGUAGE: &str = "en";

/// Tokens of `text` after SQuAD-style normalisation (see the module documentation).
pub fn answer_tokens(text: &str) -> Vec<String> {
    let cleaned: String = text.to_lowercase().chars().filter(|c| c.is_alphanumeric() || c.is_whitespace()).collect();
    cleaned.split_whitespace().filter(|t| !matches!(*t, "a" | "an" | "the")).map(str::to_string).collect()
}

fn token_hash(token: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    token.hash(&mut hasher);
    hasher.finish()
}

fn extend(hash: u64, token: u64) -> u64 {
    (hash ^ token).wrapping_mul(0x0000_0100_0000_01B3).rotate_left(17)
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Deserialize)]
struct Example {
    example_id: serde_json::Value,
    queries: std::collections::BTreeMap<String, Option<String>>,
    answers: std::collections::BTreeMap<String, Vec<Answer>>,
}

/// The answers of every question, indexed for matching inside passages.
#[derive(Default)]
struct AnswerIndex {
    /// (answer tokens, question index).
    answers: Vec<(Vec<String>, usize)>,
    /// Hash of an answer's token sequence → its entries in `answers`.
    by_hash: HashMap<u64, Vec<usize>>,
    /// Answer lengths in tokens.
    lengths: BTreeSet<usize>,
}

impl AnswerIndex {
    fn add(&mut self, tokens: Vec<String>, question: usize) {
        let hash = tokens.iter().fold(0, |h, t| extend(h, token_hash(t)));
        self.lengths.insert(tokens.len());
        self.by_hash.entry(hash).or_default().push(self.answers.len());
        self.answers.push((tokens, question));
    }

    /// The questions one of whose answers `text` contains, each once, in order.
    fn questions_in(&self, text: &str) -> Vec<usize> {
        let tokens = answer_tokens(text);
        let hashes: Vec<u64> = tokens.iter().map(|t| token_hash(t)).collect();
        let longest = self.lengths.last().copied().unwrap_or(0);
        let mut found = BTreeSet::new();
        for start in 0..tokens.len() {
            let mut hash = 0;
            for length in 1..=longest.min(tokens.len() - start) {
                hash = extend(hash, hashes[start + length - 1]);
                if !self.lengths.contains(&length) {
                    continue;
                }
                for &entry in self.by_hash.get(&hash).into_iter().flatten() {
                    let (answer, question) = &self.answers[entry];
                    if answer[..] == tokens[start..start + length] {
                        found.insert(*question);
                    }
                }
            }
        }
        found.into_iter().collect()
    }
}

/// One passage of the collection: a BEIR `corpus.jsonl` line (`_id`, `title`?, `text`) or a
/// DPR TSV line (`id<TAB>text<TAB>title`, header `id text title` allowed).
fn parse_passage(path: &Path, line: usize, text: &str, tsv: bool) -> Result<Option<(String, String)>> {
    if tsv {
        let fields: Vec<&str> = text.split('\t').collect();
        if line == 1 && fields.first() == Some(&"id") {
            return Ok(None);
        }
        let [id, body, rest @ ..] = fields.as_slice() else {
            return Err(DatasetError::at_line(path, line, "expected `id<TAB>text<TAB>title`"));
        };
        let title = rest.first().map_or("", |t| t.trim());
        let body = body.trim().trim_matches('"');
        return Ok(Some((id.to_string(), if title.is_empty() { body.to_string() } else { format!("{title} {body}") })));
    }
    #[derive(Deserialize)]
    struct Doc {
        #[serde(alias = "docid", alias = "doc_id", alias = "id")]
        _id: serde_json::Value,
        #[serde(default)]
        title: Option<String>,
        text: String,
    }
    let doc: Doc = serde_json::from_str(text).map_err(|e| DatasetError::at_line(path, line, e.to_string()))?;
    let id = match doc._id {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        other => {
            return Err(DatasetError::at_line(path, line, format!("field `_id`: expected a string, found {other}")));
        }
    };
    Ok(Some(match doc.title.filter(|t| !t.trim().is_empty()) {
        Some(title) => (id, format!("{title} {}", doc.text)),
        None => (id, doc.text),
    }))
}

/// What the MKQA conversion wrote, beyond the counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MkqaSummary {
    /// Queries, passages and judgements written; `unanswerable`: questions left out for
    /// having no usable English answer.
    pub benchmark: BenchmarkSummary,
    /// Questions with at least one passage containing an answer.
    pub answered_questions: usize,
    /// Questions kept whose answers no passage contains (their queries are skipped by the
    /// evaluation, which reports them in its coverage).
    pub questions_without_passage: usize,
    /// Query languages.
    pub languages: Vec<String>,
}

/// Converts an MKQA JSONL file and an English passage collection into a benchmark.
pub fn convert_mkqa(mkqa: &Path, passages: &Path, out_dir: &Path, name: &str) -> Result<MkqaSummary> {
    let mut index = AnswerIndex::default();
    let mut questions: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut seen_ids = HashMap::new();
    let mut unanswerable = 0;
    for_each_line(mkqa, |line, text| {
        let at = |message: String| DatasetError::at_line(mkqa, line, message);
        let example: Example = serde_json::from_str(text).map_err(|e| at(e.to_string()))?;
        let id = match &example.example_id {
            serde_json::Value::String(s) if !s.is_empty() => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            other => return Err(at(format!("field `example_id`: expected a number or string, found {other}"))),
        };
        if let Some(first) = seen_ids.insert(id.clone(), line) {
            return Err(at(format!("example_id {id} repeats line {first}")));
        }
        let english = example.answers.get(MKQA_CORPUS_LANGUAGE).ok_or_else(|| {
            at(format!("field `answers`: no {MKQA_CORPUS_LANGUAGE:?} answers to match in the English passages"))
        })?;
        let mut answers: Vec<Vec<String>> = english
            .iter()
            .filter(|a| !matches!(a.kind.as_deref(), Some("unanswerable" | "long_answer")))
            .flat_map(|a| a.text.iter().chain(&a.aliases))
            .map(|t| answer_tokens(t))
            .filter(|t| !t.is_empty())
            .collect();
        answers.sort();
        answers.dedup();
        if answers.is_empty() {
            unanswerable += 1;
            return Ok(());
        }
        let mut versions = Vec::new();
        for (code, query) in &example.queries {
            let lang = normalise_language(code)
                .ok_or_else(|| at(format!("field `queries.{code}`: {}", unknown_language_message(code))))?;
            match query.as_deref().map(str::trim) {
                Some(query) if !query.is_empty() => versions.push((lang, query.to_string())),
                _ => return Err(at(format!("field `queries.{code}`: empty question"))),
            }
        }
        if versions.is_empty() {
            return Err(at("field `queries`: no language versions".into()));
        }
        for tokens in answers {
            index.add(tokens, questions.len());
        }
        questions.push((id, versions));
        Ok(())
    })?;
    if questions.is_empty() {
        return Err(DatasetError::format(mkqa, "no question with an English answer"));
    }
    let mut languages: Vec<String> = questions.iter().flat_map(|(_, v)| v.iter().map(|(l, _)| l.clone())).collect();
    languages.push(MKQA_CORPUS_LANGUAGE.to_string());
    languages.sort();
    languages.dedup();
    BenchmarkSpec { pool: Pool::Corpus, ..BenchmarkSpec::new(name, Protocol::Qrels, languages.clone()) }
        .save(out_dir)?;
    let tsv = passages.extension().is_some_and(|e| e == "tsv");
    let mut corpus = CorpusWriter::create(out_dir)?;
    let mut relevant: Vec<Vec<String>> = vec![Vec::new(); questions.len()];
    let mut doc_ids = HashMap::new();
    for_each_line(passages, |line, text| {
        let Some((id, text)) = parse_passage(passages, line, text, tsv)? else { return Ok(()) };
        if text.trim().is_empty() {
            return Err(DatasetError::at_line(passages, line, "field `text` is empty"));
        }
        if let Some(first) = doc_ids.insert(id.clone(), line) {
            return Err(DatasetError::at_line(passages, line, format!("passage id {id:?} repeats line {first}")));
        }
        for question in index.questions_in(&text) {
            relevant[question].push(id.clone());
        }
        corpus.push(Candidate { doc_id: id, lang: MKQA_CORPUS_LANGUAGE.to_string(), text, context: None })
    })?;
    let candidates = corpus.finish()?;
    let mut queries = QueryWriter::create(out_dir)?;
    let mut qrels = QrelWriter::create(out_dir)?;
    let mut qrel_count = 0;
    for ((id, versions), docs) in questions.iter().zip(&relevant) {
        for (lang, text) in versions {
            let query_id = format!("{id}.{lang}");
            queries.push(Query { query_id: query_id.clone(), lang: lang.clone(), text: text.clone() })?;
            for doc in docs {
                qrels.push(Qrel { query_id: query_id.clone(), doc_id: doc.clone(), relevance: 1 })?;
                qrel_count += 1;
            }
        }
    }
    let query_count = queries.finish()?;
    qrels.finish()?;
    let answered = relevant.iter().filter(|r| !r.is_empty()).count();
    Ok(MkqaSummary {
        benchmark: BenchmarkSummary { queries: query_count, candidates, qrels: qrel_count, unanswerable },
        answered_questions: answered,
        questions_without_passage: questions.len() - answered,
        languages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::benchmark::Benchmark;

    #[test]
    fn normalisation_drops_case_punctuation_and_articles() {
        assert_eq!(answer_tokens("The Beatles!"), ["beatles"]);
        assert_eq!(answer_tokens("  U.S.  an  Army,  a-team "), ["us", "army", "ateam"]);
        assert_eq!(answer_tokens("Ünïcödé ﬁne"), ["ünïcödé", "ﬁne"]);
        assert!(answer_tokens("the a an ...").is_empty());
    }

    #[test]
    fn answers_match_whole_token_runs_only() {
        let mut index = AnswerIndex::default();
        index.add(answer_tokens("New York"), 0);
        index.add(answer_tokens("1969"), 1);
        index.add(answer_tokens("York"), 2);
        assert_eq!(index.questions_in("He moved to new-york? No: to New York, in 1969."), [0, 1, 2]);
        assert_eq!(index.questions_in("Yorkshire in 19690."), Vec::<usize>::new());
        assert_eq!(index.questions_in("the york"), [2]);
    }

    fn write(path: &Path, lines: &[serde_json::Value]) {
        std::fs::write(path, lines.iter().map(|l| l.to_string() + "\n").collect::<String>()).unwrap();
    }

    #[test]
    fn every_language_version_is_judged_by_the_passages_holding_an_english_answer() {
        let dir = tempfile::tempdir().unwrap();
        let mkqa = dir.path().join("mkqa.jsonl");
        write(
            &mkqa,
            &[
                serde_json::json!({"example_id": 7, "query": "who sang yesterday",
                    "queries": {"en": "who sang yesterday", "de": "wer sang yesterday", "zh_cn": "谁唱了昨天"},
                    "answers": {"en": [{"type": "entity", "text": "The Beatles", "aliases": ["Beatles band"]}],
                                "de": [{"type": "entity", "text": "Die Beatles", "aliases": []}]}}),
                serde_json::json!({"example_id": 8, "queries": {"en": "is water wet", "de": "ist wasser nass"},
                    "answers": {"en": [{"type": "unanswerable", "text": null, "aliases": []}]}}),
                serde_json::json!({"example_id": 9, "queries": {"en": "when", "de": "wann"},
                    "answers": {"en": [{"type": "date", "text": "1066", "aliases": []}]}}),
            ],
        );
        let passages = dir.path().join("psgs.tsv");
        std::fs::write(
            &passages,
            "id\ttext\ttitle\n1\t\"Yesterday was recorded by the Beatles in 1965.\"\tYesterday\n\
             2\tA beatle is an insect.\tBeetle\n3\tThe Beatles band split.\tBand\n",
        )
        .unwrap();
        let out = dir.path().join("bench");
        let summary = convert_mkqa(&mkqa, &passages, &out, "mkqa").unwrap();
        assert_eq!(summary.benchmark.unanswerable, 1);
        assert_eq!((summary.answered_questions, summary.questions_without_passage), (1, 1));
        assert_eq!(summary.languages, ["de", "en", "zh"]);
        let bench = Benchmark::load(&out).unwrap();
        assert_eq!(bench.spec.pool, Pool::Corpus);
        assert_eq!(bench.queries.len(), 5);
        let judged =
            |q: &str| bench.qrels.iter().filter(|r| r.query_id == q).map(|r| r.doc_id.clone()).collect::<Vec<_>>();
        assert_eq!(judged("7.zh"), ["1", "3"]);
        assert_eq!(judged("7.de"), ["1", "3"]);
        assert!(judged("9.de").is_empty());
        assert_eq!(bench.corpus[0].text, "Yesterday Yesterday was recorded by the Beatles in 1965.");
        let report = crate::validate::validate_benchmark(&out).unwrap();
        assert!(report.is_valid(), "{report:?}");
    }

    #[test]
    fn errors_name_the_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let mkqa = dir.path().join("mkqa.jsonl");
        let passages = dir.path().join("corpus.jsonl");
        write(&passages, &[serde_json::json!({"_id": "p1", "text": "x"})]);
        let good = serde_json::json!({"example_id": 1, "queries": {"en": "q"}, "answers": {"en": [{"type": "entity", "text": "x"}]}});
        for (second, expected) in [
            (serde_json::json!({"example_id": 1, "queries": {"en": "q"}, "answers": {"en": []}}), "repeats line 1"),
            (
                serde_json::json!({"example_id": 2, "queries": {"xx": "q"}, "answers": {"en": [{"text": "x"}]}}),
                "queries.xx",
            ),
            (
                serde_json::json!({"example_id": 3, "queries": {"de": ""}, "answers": {"en": [{"text": "x"}]}}),
                "queries.de",
            ),
            (serde_json::json!({"example_id": 4, "queries": {"de": "q"}, "answers": {"de": []}}), "field `answers`"),
            (serde_json::json!({"queries": {"de": "q"}, "answers": {}}), "example_id"),
        ] {
            write(&mkqa, &[good.clone(), second]);
            let err = convert_mkqa(&mkqa, &passages, &dir.path().join("out"), "m").unwrap_err().to_string();
            assert!(
                err.contains("mkqa.jsonl") && err.contains("line 2") && err.contains(expected),
                "{expected}: {err}"
            );
        }
        write(&mkqa, &[good]);
        write(
            &passages,
            &[serde_json::json!({"_id": "p1", "text": "x"}), serde_json::json!({"_id": "p1", "text": "y"})],
        );
        let err = convert_mkqa(&mkqa, &passages, &dir.path().join("out"), "m").unwrap_err().to_string();
        assert!(err.contains("corpus.jsonl") && err.contains("line 2") && err.contains("repeats line 1"), "{err}");
    }
}
