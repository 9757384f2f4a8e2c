//! Files of an evaluation: the report in every form, and TREC run and qrels files.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rosetta_datasets::benchmark::{Pool, Protocol};

use crate::error::{EvalError, Result};
use crate::rank::Ranking;
use crate::render;
use crate::report::EvalReport;
use crate::task::EvalTask;

/// File name of the machine-readable report inside a report directory.
pub const REPORT_JSON: &str = "report.json";
/// File name of every query's numbers inside a report directory.
pub const PER_QUERY_JSON: &str = "per_query.json";

/// Writes `report.json`, `report.md`, `report.html` and (LAReQA) `heatmap.svg` and `bias.svg`
/// into `dir`, each atomically (temporary file, then rename). Returns the paths written.
pub fn write_report(dir: &Path, report: &EvalReport) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
    let json = serde_json::to_string_pretty(report).map_err(|e| EvalError::invalid("report", e.to_string()))?;
    let mut files =
        vec![(REPORT_JSON, json), ("report.md", render::markdown(report)), ("report.html", render::html(report))];
    if let Some(per_query) = &report.per_query {
        let text =
            serde_json::to_string(per_query).map_err(|e| EvalError::invalid("per-query results", e.to_string()))?;
        files.push((PER_QUERY_JSON, text));
    }
    if let Some(lareqa) = &report.lareqa {
        files.push((
            "heatmap.svg",
            render::heatmap_svg(lareqa, &format!("{}: mAP by query × corpus language", report.benchmark)),
        ));
        files.push(("bias.svg", render::bias_svg(lareqa, "rank distance by query language (lower is less biased)")));
    }
    files.into_iter().map(|(name, text)| write_atomic(&dir.join(name), text.as_bytes())).collect()
}

/// Reads the per-query numbers of a report directory (`per_query.json`).
pub fn read_per_query(dir: &Path) -> Result<crate::per_query::PerQueryResults> {
    let file = dir.join(PER_QUERY_JSON);
    let bytes = std::fs::read(&file).map_err(|e| EvalError::io(&file, e))?;
    serde_json::from_slice(&bytes).map_err(|e| EvalError::invalid(file.display().to_string(), e.to_string()))
}

/// The size of the TREC run files `write_trec` would write: lines and bytes (about).
pub fn trec_size(task: &EvalTask, depth: usize) -> (usize, usize) {
    let pools = match task.protocol {
        Protocol::Lareqa => task.languages.len() + 1,
        Protocol::Qrels => 1,
    };
    let lines = task.num_queries() * depth.min(task.num_docs()) * pools;
    let id = |ids: &[String]| ids.iter().map(String::len).sum::<usize>() / ids.len().max(1);
    (lines, lines * (id(&task.query_ids) + id(&task.doc_ids) + 30))
}

/// Reads a report from `report.json` or from a directory that holds one.
pub fn read_report(path: &Path) -> Result<EvalReport> {
    let file = if path.is_dir() { path.join(REPORT_JSON) } else { path.to_path_buf() };
    let bytes = std::fs::read(&file).map_err(|e| EvalError::io(&file, e))?;
    serde_json::from_slice(&bytes).map_err(|e| EvalError::invalid(file.display().to_string(), e.to_string()))
}

/// Writes `bytes` to `path` atomically (rosetta_common::atomic) and returns the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    rosetta_common::atomic::write_atomic(path, bytes)?;
    Ok(path.to_path_buf())
}

/// Writes TREC run files of the ranking's top lists into `dir` (tag `rosetta`) and `qrels.txt`:
/// LAReQA: `multilingual.run` (pooled corpus) and `pairs/{query}-{corpus}.run` per language pair;
/// qrels: `{lang}.run` per language. Query ids stay those of the benchmark.
pub fn write_trec(dir: &Path, task: &EvalTask, ranking: &Ranking, depth: usize) -> Result<Vec<PathBuf>> {
    if ranking.top.len() != task.num_queries() * task.languages.len() {
        return Err(EvalError::invalid("ranking", "no top lists: rank with a TREC depth above 0"));
    }
    let languages = task.languages.len();
    let mut written = Vec::new();
    let pairs_dir = dir.join("pairs");
    std::fs::create_dir_all(&pairs_dir).map_err(|e| EvalError::io(&pairs_dir, e))?;
    let qrels_path = dir.join("qrels.txt");
    let mut qrels = String::new();
    for (query, list) in task.relevant.iter().enumerate() {
        for relevant in list {
            qrels.push_str(&format!(
                "{} 0 {} {}\n",
                task.query_ids[query], task.doc_ids[relevant.doc as usize], relevant.relevance
            ));
        }
    }
    written.push(write_atomic(&qrels_path, qrels.as_bytes())?);
    let write_run =
        |path: PathBuf, rows: &mut dyn Iterator<Item = (usize, Vec<crate::rank::Hit>)>| -> Result<PathBuf> {
            let staged = rosetta_common::atomic::StagedFile::new(&path)?;
            let tmp = staged.temp_path().to_path_buf();
            let mut out = std::io::BufWriter::new(staged.create()?);
            for (query, hits) in rows {
                for (rank, hit) in hits.iter().take(depth).enumerate() {
                    writeln!(
                        out,
                        "{} Q0 {} {} {} rosetta",
                        task.query_ids[query],
                        task.doc_ids[hit.doc as usize],
                        rank + 1,
                        hit.score
                    )
                    .map_err(|e| EvalError::io(&tmp, e))?;
                }
            }
            drop(out.into_inner().map_err(|e| EvalError::io(&tmp, e.into_error()))?);
            staged.commit()?;
            Ok(path)
        };
    match task.protocol {
        Protocol::Lareqa => {
            let pooled = (0..task.num_queries()).map(|q| {
                let mut hits: Vec<_> = ranking.top[q * languages..(q + 1) * languages].concat();
                hits.sort_unstable_by(crate::rank::hit_order);
                (q, hits)
            });
            written.push(write_run(dir.join("multilingual.run"), &mut pooled.into_iter())?);
            for ql in 0..languages {
                for cl in 0..languages {
                    let mut rows = (0..task.num_queries())
                        .filter(|&q| task.query_lang[q] as usize == ql)
                        .map(|q| (q, ranking.top[q * languages + cl].clone()))
                        .peekable();
                    if rows.peek().is_none() {
                        continue;
                    }
                    let name = format!("{}-{}.run", task.languages[ql], task.languages[cl]);
                    written.push(write_run(pairs_dir.join(name), &mut rows)?);
                }
            }
        }
        Protocol::Qrels => {
            for lang in 0..languages {
                // The query's pool: its language's candidates, or the whole corpus merged.
                let top = |q: usize| match task.pool {
                    Pool::Language => ranking.top[q * languages + lang].clone(),
                    Pool::Corpus => {
                        let mut all: Vec<_> =
                            ranking.top[q * languages..(q + 1) * languages].iter().flatten().cloned().collect();
                        all.sort_by(crate::rank::hit_order);
                        all.truncate(depth);
                        all
                    }
                };
                let mut rows = (0..task.num_queries())
                    .filter(|&q| task.query_lang[q] as usize == lang)
                    .map(|q| (q, top(q)))
                    .peekable();
                if rows.peek().is_some() {
                    written.push(write_run(dir.join(format!("{}.run", task.languages[lang])), &mut rows)?);
                }
            }
        }
    }
    Ok(written)
}
