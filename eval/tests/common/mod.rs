//! Random evaluation tasks and embeddings for the eval crate's tests.
#![allow(dead_code)] // each test binary uses a different subset

use rosetta_datasets::benchmark::Protocol;
use rosetta_eval::task::{EvalTask, Relevant};

/// A small deterministic generator (SplitMix64), so failures replay.
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A random task: `languages` languages, queries with 0–4 relevant candidates of any language
/// (graded 1–3 for qrels), and embeddings that are small integers when `ties` (many exact ties)
/// or random floats otherwise. Returns the task, query and corpus embeddings, and the width.
pub fn random_task(
    seed: u64,
    protocol: Protocol,
    languages: usize,
    queries: usize,
    docs: usize,
    ties: bool,
) -> (EvalTask, Vec<f32>, Vec<f32>, usize) {
    let mut rng = Rng(seed);
    let dim = 8;
    let langs: Vec<String> = (0..languages)
        .map(|i| format!("q{}{}", (b'a' + (i / 26) as u8) as char, (b'a' + (i % 26) as u8) as char))
        .collect();
    // LAReQA: queries come in parallel groups, one version per language, sharing their relevant set.
    let query_lang: Vec<u16> = (0..queries)
        .map(|q| if protocol == Protocol::Lareqa { (q % languages) as u16 } else { rng.below(languages) as u16 })
        .collect();
    let doc_lang: Vec<u16> = (0..docs).map(|_| rng.below(languages) as u16).collect();
    let mut relevant: Vec<Vec<Relevant>> = (0..queries)
        .map(|_| {
            let mut list: Vec<Relevant> = (0..rng.below(5))
                .map(|_| Relevant { doc: rng.below(docs) as u32, relevance: 1 + rng.below(3) as i32 })
                .collect();
            list.sort_by_key(|r| r.doc);
            list.dedup_by_key(|r| r.doc);
            if protocol == Protocol::Lareqa {
                list.iter_mut().for_each(|r| r.relevance = 1);
            }
            list
        })
        .collect();
    if protocol == Protocol::Lareqa {
        // Three of every four groups are parallel (the fourth keeps independent relevant sets).
        for q in 0..queries {
            let first = q - q % languages;
            if q != first && (q / languages) % 4 != 3 {
                relevant[q] = relevant[first].clone();
            }
        }
    }
    let value = |rng: &mut Rng| {
        if ties { rng.below(3) as f32 - 1.0 } else { (rng.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5 }
    };
    let q: Vec<f32> = (0..queries * dim).map(|_| value(&mut rng)).collect();
    let d: Vec<f32> = (0..docs * dim).map(|_| value(&mut rng)).collect();
    let task = EvalTask {
        name: "random".into(),
        protocol,
        languages: langs,
        query_ids: (0..queries).map(|i| format!("q{i}")).collect(),
        query_lang,
        doc_ids: (0..docs).map(|i| format!("d{i}")).collect(),
        doc_lang,
        relevant,
        pool: Default::default(),
    };
    (task, q, d, dim)
}
