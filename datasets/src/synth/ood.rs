//! The out-of-domain synthetic benchmark (`benchmark-ood/`): other people, other facts (where
//! they studied, the year they founded something, how many animals they keep, a city they
//! visited, the instrument they play) stated in other sentence templates (a topic-comment
//! construction that ignores each language's usual word order), in the training languages and
//! in languages held out of training — what "out of domain" means for a model trained on the
//! main corpus.

use std::path::Path;

use super::language::{Language, PROFILES};
use super::{CONCEPTS, World, finish, number_phrase, proper_nouns, with_case};
use crate::error::Result;
use crate::rng::SeededRng;

// Concept indices of the out-of-domain lexicon (after the main one).
const STUDIED: usize = CONCEPTS;
const FOUNDED: usize = CONCEPTS + 1;
const KEEPS: usize = CONCEPTS + 2;
const VISITED: usize = CONCEPTS + 3;
const PLAYS: usize = CONCEPTS + 4;
const TOPIC: usize = CONCEPTS + 5;
const ANIMALS: usize = CONCEPTS + 6;
const WHO_ASKS: usize = CONCEPTS + 7;
const INSTRUMENTS: usize = CONCEPTS + 8;
const INSTRUMENT_COUNT: usize = 8;
/// Words of every language's lexicon: the main concepts, then the out-of-domain ones.
pub(super) const LEXICON: usize = INSTRUMENTS + INSTRUMENT_COUNT;

/// The five asked relations of the out-of-domain benchmark (a sixth sentence is a distractor).
pub const OOD_RELATIONS: [&str; 5] = ["studied_city", "founded_year", "animals", "visited", "instrument"];

/// Name of the out-of-domain benchmark.
pub const OOD_BENCHMARK: &str = "synth-ood";

struct OodPerson {
    id: String,
    name: String,
    studied: String,
    founded: u32,
    animals: u32,
    visited: String,
    instrument: usize,
    other_city: String,
    order: [usize; 6],
}

/// Languages held out of training: the profiles after the training ones (at most `count`).
pub(super) fn held_out_languages(seed: u64, training: usize, count: usize) -> Vec<Language> {
    (training..(training + count).min(PROFILES.len()))
        .map(|i| Language::generate(PROFILES[i], seed, i as u64, LEXICON))
        .collect()
}

fn ood_person(world: &mut World, rng: &mut SeededRng, cities: &[String], id: String) -> OodPerson {
    let name = world.fresh_name(rng);
    let mut order = [0, 1, 2, 3, 4, 5];
    rng.shuffle(&mut order);
    OodPerson {
        id,
        name,
        studied: cities[rng.index(cities.len())].clone(),
        founded: 1600 + rng.below(401) as u32,
        animals: 1 + rng.below(12) as u32,
        visited: cities[rng.index(cities.len())].clone(),
        instrument: rng.index(INSTRUMENT_COUNT),
        other_city: cities[rng.index(cities.len())].clone(),
        order,
    }
}

/// "NAME TOPIC, OBJECT VERB." whatever the language's word order.
fn statement(lang: &Language, person: &OodPerson, index: usize) -> String {
    let (verb, object) = match index {
        0 => (STUDIED, vec![lang.write(&person.studied)]),
        1 => (FOUNDED, number_phrase(lang, person.founded, super::YEAR)),
        2 => (KEEPS, number_phrase(lang, person.animals, ANIMALS)),
        3 => (VISITED, vec![lang.write(&person.visited)]),
        4 => (PLAYS, vec![lang.word(INSTRUMENTS + person.instrument)]),
        _ => (super::KNOWN, vec![lang.write(&person.other_city)]),
    };
    let mut words = vec![lang.write(&person.name), format!("{},", lang.word(TOPIC))];
    words.extend(with_case(lang, object));
    words.push(lang.word(verb));
    finish(words, ".")
}

/// "WHO-ASKS NAME TOPIC, WH VERB?"
fn question(lang: &Language, person: &OodPerson, index: usize) -> String {
    let (verb, wh) = match index {
        0 => (STUDIED, vec![lang.word(super::WHERE)]),
        1 => (FOUNDED, vec![lang.word(super::WHEN), lang.word(super::YEAR)]),
        2 => (KEEPS, vec![lang.word(super::HOW_MANY), lang.word(ANIMALS)]),
        3 => (VISITED, vec![lang.word(super::WHERE)]),
        _ => (PLAYS, vec![lang.word(super::WHAT)]),
    };
    let mut words = vec![lang.word(WHO_ASKS), lang.write(&person.name), format!("{},", lang.word(TOPIC))];
    words.extend(wh);
    words.push(lang.word(verb));
    finish(words, "?")
}

/// Writes the out-of-domain benchmark of `people` new people into `dir`; returns (queries, candidates).
pub(super) fn write_ood_benchmark(
    dir: &Path,
    world: &mut World,
    held_out: &[Language],
    people: usize,
    seed: u64,
) -> Result<(usize, usize)> {
    let mut rng = SeededRng::from_parts(&[seed, 0x00D]);
    let cities = proper_nouns(&mut rng, 40);
    let people: Vec<OodPerson> =
        (0..people).map(|i| ood_person(world, &mut rng, &cities, format!("o{i:06}"))).collect();
    let languages: Vec<&Language> = world.languages.iter().chain(held_out).collect();
    super::write_lareqa_benchmark(dir, OOD_BENCHMARK, &languages, &people, &OOD_RELATIONS)
}

impl super::BenchmarkPerson for OodPerson {
    fn id(&self) -> &str {
        &self.id
    }
    fn order(&self) -> &[usize] {
        &self.order
    }
    fn statement(&self, lang: &Language, fact: usize) -> String {
        statement(lang, self, fact)
    }
    fn question(&self, lang: &Language, relation: usize) -> String {
        question(lang, self, relation)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::super::{SynthConfig, synthesize};
    use crate::benchmark::Benchmark;

    #[test]
    fn the_ood_benchmark_is_valid_parallel_and_holds_languages_out_of_training() {
        let dir = tempfile::tempdir().unwrap();
        let config = SynthConfig {
            train_people: 10,
            mono_people: 0,
            benchmark_people: 3,
            ood_people: 4,
            ..SynthConfig::default()
        };
        let summary = synthesize(dir.path(), &config).unwrap();
        let ood_dir = summary.ood_benchmark_dir.clone().unwrap();
        assert_eq!(summary.held_out_languages, ["qag", "qah"]);
        let report = crate::validate::validate_benchmark(&ood_dir).unwrap();
        assert!(report.is_valid(), "{:?}", report.problems);
        assert_eq!(report.queries_without_relevant, 0);
        let ood = Benchmark::load(&ood_dir).unwrap();
        assert_eq!(ood.spec.languages.len(), 8);
        assert_eq!(summary.ood_queries, 4 * 5 * 8);
        assert_eq!(ood.queries.len(), 4 * 5 * 8);
        // Every query has one relevant sentence per language.
        assert_eq!(ood.qrels.len(), 4 * 5 * 8 * 8);
        let training: HashSet<String> =
            crate::pairs::read_pairs(&summary.train_path).unwrap().into_iter().map(|row| row.lang).collect();
        assert!(!training.contains("qag") && !training.contains("qah"), "{training:?}");
        // Other templates: no out-of-domain question is an in-domain one.
        let in_domain = Benchmark::load(&summary.benchmark_dir).unwrap();
        let in_domain_texts: HashSet<&str> = in_domain.queries.iter().map(|q| q.text.as_str()).collect();
        assert!(ood.queries.iter().all(|q| !in_domain_texts.contains(q.text.as_str())));
        let again = tempfile::tempdir().unwrap();
        let second = synthesize(again.path(), &config).unwrap();
        let reloaded = Benchmark::load(second.ood_benchmark_dir.as_ref().unwrap()).unwrap();
        assert_eq!(reloaded.queries, ood.queries, "same seed, same benchmark");
    }
}
