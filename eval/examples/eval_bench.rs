//! Evaluation benchmark: a pooled LAReQA-style benchmark of 11 languages × 1,182 parallel
//! questions (13,002 queries, 13,002 candidates, 384-dimensional embeddings given), scored
//! with exact ranks and every metric. Writes the embeddings and the task for the numpy peer
//! (`bench/eval.py`) and prints the time and the headline numbers as JSON.
//!
//! Usage: eval_bench OUT_DIR [shards]

use std::io::Write as _;
use std::time::Instant;

use rosetta_datasets::benchmark::Protocol;
use rosetta_eval::rank::rank_sharded;
use rosetta_eval::report::EvalReport;
use rosetta_eval::task::{EvalTask, Relevant};

const LANGUAGES: usize = 11;
const GROUPS: usize = 1182;
const DIM: usize = 384;

/// SplitMix64 → uniform floats in [-0.5, 0.5).
struct Rng(u64);
impl Rng {
    fn float(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().ok_or("usage: eval_bench OUT_DIR [shards]")?);
    let shards: usize = args.next().map_or(Ok(1), |s| s.parse())?;
    std::fs::create_dir_all(&out)?;
    // Group meaning + language offset + noise: same-language candidates attract, which gives the
    // benchmark a language bias to measure.
    let mut rng = Rng(2024);
    let topics: Vec<Vec<f32>> = (0..GROUPS).map(|_| (0..DIM).map(|_| rng.float()).collect()).collect();
    let accents: Vec<Vec<f32>> = (0..LANGUAGES).map(|_| (0..DIM).map(|_| rng.float()).collect()).collect();
    let mut make = |group: usize, lang: usize, noise: f32| {
        let mut v: Vec<f32> =
            (0..DIM).map(|i| topics[group][i] + 0.6 * accents[lang][i] + noise * rng.float() * 3.0).collect();
        normalise(&mut v);
        v
    };
    let mut queries = Vec::with_capacity(LANGUAGES * GROUPS * DIM);
    let mut docs = Vec::with_capacity(LANGUAGES * GROUPS * DIM);
    let (mut query_lang, mut doc_lang) = (Vec::new(), Vec::new());
    for lang in 0..LANGUAGES {
        for group in 0..GROUPS {
            queries.extend(make(group, lang, 0.8));
            query_lang.push(lang as u16);
        }
        for group in 0..GROUPS {
            docs.extend(make(group, lang, 0.8));
            doc_lang.push(lang as u16);
        }
    }
    // Query (lang, group) is relevant to candidate (l, group) of every language l.
    let relevant: Vec<Vec<Relevant>> = (0..LANGUAGES * GROUPS)
        .map(|q| (0..LANGUAGES).map(|l| Relevant { doc: (l * GROUPS + q % GROUPS) as u32, relevance: 1 }).collect())
        .collect();
    let task = EvalTask {
        name: "pooled-13k".into(),
        protocol: Protocol::Lareqa,
        languages: (0..LANGUAGES)
            .map(|l| format!("q{}{}", (b'a' + (l / 26) as u8) as char, (b'a' + (l % 26) as u8) as char))
            .collect(),
        query_ids: (0..LANGUAGES * GROUPS).map(|q| format!("q{q}")).collect(),
        query_lang,
        doc_ids: (0..LANGUAGES * GROUPS).map(|d| format!("d{d}")).collect(),
        doc_lang,
        relevant,
        pool: Default::default(),
    };
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(out.join("queries.f32"), bytes(&queries))?;
    std::fs::write(out.join("docs.f32"), bytes(&docs))?;
    let started = Instant::now();
    let ranking = rank_sharded(&task, &queries, &docs, DIM, shards, 0)?;
    let ranked = started.elapsed().as_secs_f64();
    let report = EvalReport::compute(&task, &ranking, "synthetic embeddings", None);
    let seconds = started.elapsed().as_secs_f64();
    let result = serde_json::json!({
        "queries": task.num_queries(), "candidates": task.num_docs(), "dim": DIM,
        "languages": LANGUAGES, "groups": GROUPS, "shards": shards,
        "seconds": seconds, "rank_seconds": ranked,
        "monolingual_map": report.metric("monolingual_map"),
        "cross_lingual_map": report.metric("cross_lingual_map"),
        "multilingual_map": report.metric("multilingual_map"),
        "rank_distance": report.metric("rank_distance"),
    });
    writeln!(std::io::stdout(), "{result}")?;
    Ok(())
}
