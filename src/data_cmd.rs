//! `rosetta data …`: synth, convert, validate, stats, shard, and the read+tokenise benchmark.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use rosetta_datasets::convert::{self, BeirInputs, LanguageFile, PositiveUnit};
use rosetta_datasets::pairs::{DEFAULT_ROWS_PER_GROUP, pair_columns_of};
use rosetta_datasets::shard::build_shard_index;
use rosetta_datasets::stats::{PairStats, pair_stats};
use rosetta_datasets::synth::{SynthConfig, synthesize};
use rosetta_datasets::table::TableReader;
use rosetta_datasets::tokenize::{TextTokenizer, train_wordpiece};
use rosetta_datasets::validate::{ValidationReport, validate_benchmark, validate_pairs};

/// The `data` subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Write a synthetic parallel corpus: `train.parquet`, a LAReQA-style `benchmark/`, an
    /// out-of-domain `benchmark-ood/` (other facts and templates, plus languages held out of
    /// training) and a WordPiece `tokenizer.json` trained on it. Deterministic in --seed.
    Synth(SynthArgs),
    /// Convert a public release format into Rosetta's Parquet formats (streams its input).
    Convert(ConvertArgs),
    /// Check a training-pairs file or a benchmark directory; lists every problem with file,
    /// row and column. Exits non-zero when there is any.
    Validate(ValidateArgs),
    /// Rows per dataset and language, parallel coverage per language pair, text lengths.
    Stats(StatsArgs),
    /// Split a training-pairs file among N workers by whole row groups, balanced by rows.
    Shard(ShardArgs),
    /// Pack a run's training files into the row store its workers read by row number (what
    /// `rosetta train` and `rosetta coordinator` do on first use): run it ahead on a cluster,
    /// where the store must sit on a path every worker can read (`data.store`).
    Pack(PackArgs),
    /// Benchmark: read a pairs file and tokenise every query and positive; prints JSON.
    #[command(hide = true)]
    BenchRead(BenchReadArgs),
}

/// Arguments of `data synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output directory.
    #[arg(long, default_value = "data/synth")]
    pub out: PathBuf,
    /// Seed: same seed, same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of synthetic languages (5–8): qaa qab qac(Cyrillic) qad qae(Greek) qaf qag qah(Cyrillic).
    #[arg(long, default_value_t = 6)]
    pub languages: usize,
    /// People in the multilingual training set; each gives 6 parallel QA groups.
    #[arg(long, default_value_t = 800)]
    pub train_people: usize,
    /// People only in the first language (the single-language `synth-mono` dataset; 0 = none).
    #[arg(long, default_value_t = 300)]
    pub mono_people: usize,
    /// People in the benchmark (disjoint from training); 6 questions per person and language.
    #[arg(long, default_value_t = 200)]
    pub benchmark_people: usize,
    /// Probability that a training group has each non-pivot language.
    #[arg(long, default_value_t = 0.9)]
    pub coverage: f64,
    /// Hard negatives per training row (other sentences of the same paragraph).
    #[arg(long, default_value_t = 2)]
    pub negatives: usize,
    /// People in the out-of-domain benchmark `benchmark-ood/` (other facts, other sentence
    /// templates, plus the held-out languages; 0 = none).
    #[arg(long, default_value_t = 100)]
    pub ood_people: usize,
    /// Languages held out of training that only the out-of-domain benchmark has (the profiles
    /// after the --languages ones; fewer when fewer remain).
    #[arg(long, default_value_t = 2)]
    pub held_out_languages: usize,
    /// Vocabulary size of the trained WordPiece tokenizer (0 = do not train one).
    #[arg(long, default_value_t = 4000)]
    pub vocab_size: usize,
}

impl SynthArgs {
    fn config(&self) -> SynthConfig {
        SynthConfig {
            seed: self.seed,
            languages: self.languages,
            train_people: self.train_people,
            mono_people: self.mono_people,
            benchmark_people: self.benchmark_people,
            coverage: self.coverage,
            negatives: self.negatives,
            ood_people: self.ood_people,
            held_out_languages: self.held_out_languages,
        }
    }
}

/// Input formats of `data convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceFormat {
    /// LAReQA JSON (XQuAD-R, MLQA-R): one SQuAD-style file per language → `lareqa` benchmark.
    Lareqa,
    /// SQuAD-style parallel QA, one file per language with shared ids → training pairs.
    Squad,
    /// BEIR / MIRACL directory (corpus.jsonl, queries.jsonl or topics TSV, TSV/TREC qrels) → `qrels` benchmark.
    Beir,
    /// MTEB retrieval sub-sets in BEIR layout, `SUBSET=DIR` each (`deu=…`, cross-lingual
    /// `eng-deu=…`: queries in the first language, corpus in the second) → `qrels` benchmark
    /// whose pools are the sub-sets (XPQA, NeuCLIR, MLQA, Mr. TyDi as MTEB distributes them).
    Mteb,
    /// MKQA: `mkqa.jsonl` and an English passage collection (BEIR `corpus.jsonl` or DPR
    /// `psgs_w100.tsv`) → `qrels` benchmark over the whole corpus, judged by which passages
    /// contain an English answer (success@k as BGE-M3 reports it).
    Mkqa,
    /// Belebele: one JSONL/JSON file per language variant (`link`, `question_number`,
    /// `flores_passage`, `question`, `dialect`) → `lareqa` benchmark (fully parallel).
    Belebele,
    /// JSONL pairs `{"pair_id","lang","query","positive","negatives"?}` → training pairs.
    JsonlPairs,
}

/// Arguments of `data convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Input format.
    #[arg(long = "from", value_enum)]
    pub format: SourceFormat,
    /// Output: a `.parquet` file for training pairs, a directory for benchmarks.
    #[arg(long)]
    pub out: PathBuf,
    /// Inputs. lareqa/squad: `LANG=FILE` or `FILE` named by language (`de.json`); beir: one
    /// directory per language as `LANG=DIR`; mteb: one directory per sub-set as `SUBSET=DIR`;
    /// belebele: one file per language variant (its `dialect` names the language); mkqa: the
    /// MKQA JSONL file, then the passage collection;
    /// jsonl-pairs: JSONL files.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Benchmark name (lareqa, beir); defaults to the output directory's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Dataset name for training rows (squad, jsonl-pairs rows that do not name one).
    #[arg(long, default_value = "converted")]
    pub dataset: String,
    /// Positive passage of SQuAD pairs: the answer's sentence or the whole paragraph.
    #[arg(long, value_enum, default_value_t = PositiveArg::Sentence)]
    pub positive: PositiveArg,
    /// BEIR split whose qrels are converted (`qrels/<split>.tsv`).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Rows per Parquet row group of training pairs (sharding unit).
    #[arg(long, default_value_t = DEFAULT_ROWS_PER_GROUP)]
    pub rows_per_group: usize,
}

/// `--positive` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PositiveArg {
    /// The sentence containing the answer.
    Sentence,
    /// The whole paragraph.
    Paragraph,
}

/// Arguments of `data validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// A training-pairs `.parquet` file, a benchmark directory, or a directory holding both (as
    /// `data synth` writes it: each file and benchmark in it is checked).
    pub path: PathBuf,
    /// Problems to print (all are counted).
    #[arg(long, default_value_t = 50)]
    pub max_problems: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `data stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// A training-pairs `.parquet` file.
    pub path: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `data shard`.
#[derive(Debug, Args)]
pub struct ShardArgs {
    /// A training-pairs `.parquet` file.
    pub path: PathBuf,
    /// Number of workers (shards).
    #[arg(long)]
    pub workers: usize,
    /// Where to write the shard index (JSON); default `<path>.shards.json`.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Arguments of `data pack`.
#[derive(Debug, Args)]
pub struct PackArgs {
    /// Run config (YAML) whose `data:` section names the training files and the store.
    #[arg(long)]
    pub config: PathBuf,
}

fn pack_cmd(args: &PackArgs) -> anyhow::Result<()> {
    let inputs = rosetta_deploy::run_config::ScheduleInputs::load(&args.config)?;
    let store = rosetta_deploy::prepare::open_store(&inputs.data)?;
    let manifest = store.manifest();
    println!(
        "{}: {} rows, {} parallel groups, {} dataset(s), languages {}",
        store.dir().display(),
        manifest.rows,
        manifest.groups,
        manifest.datasets.len(),
        manifest.languages.join(" ")
    );
    Ok(())
}

/// Arguments of the hidden `data bench-read`.
#[derive(Debug, Args)]
pub struct BenchReadArgs {
    /// Training-pairs file.
    #[arg(long)]
    pub pairs: PathBuf,
    /// `tokenizer.json`.
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Texts per tokenizer call.
    #[arg(long, default_value_t = 8192)]
    pub batch_size: usize,
}

/// Runs one `data` subcommand.
pub fn run(command: DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::Synth(args) => synth(&args),
        DataCommand::Convert(args) => convert_cmd(&args),
        DataCommand::Validate(args) => validate_cmd(&args),
        DataCommand::Stats(args) => {
            let stats = pair_stats(&args.path)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print_stats(&args.path, &stats);
            }
            Ok(())
        }
        DataCommand::Shard(args) => shard_cmd(&args),
        DataCommand::Pack(args) => pack_cmd(&args),
        DataCommand::BenchRead(args) => bench_read(&args),
    }
}

/// Synthesises the corpus and (unless `vocab_size` is 0) trains its tokenizer.
pub fn synth(args: &SynthArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let summary = synthesize(&args.out, &args.config())?;
    println!(
        "synth: {} training rows in {} parallel groups -> {}",
        summary.train_rows,
        summary.train_groups,
        summary.train_path.display()
    );
    println!(
        "synth: benchmark with {} queries and {} candidates in {} -> {}",
        summary.benchmark_queries,
        summary.benchmark_candidates,
        summary.languages.join(" "),
        summary.benchmark_dir.display()
    );
    if let Some(dir) = &summary.ood_benchmark_dir {
        println!(
            "synth: out-of-domain benchmark with {} queries (other facts and sentence templates; held out of training: {}) -> {}",
            summary.ood_queries,
            if summary.held_out_languages.is_empty() {
                "none".to_string()
            } else {
                summary.held_out_languages.join(" ")
            },
            dir.display()
        );
    }
    if args.vocab_size > 0 {
        let tokenizer_path = args.out.join("tokenizer.json");
        let tokenizer = train_tokenizer(&summary.train_path, args.vocab_size, &tokenizer_path)?;
        println!("synth: WordPiece tokenizer, {} tokens -> {}", tokenizer.vocab_size(), tokenizer_path.display());
    }
    println!("synth: done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Trains a WordPiece tokenizer on the queries and positives of a pairs file.
pub fn train_tokenizer(pairs: &Path, vocab_size: usize, out: &Path) -> anyhow::Result<TextTokenizer> {
    let rows = rosetta_datasets::pairs::read_pairs(pairs)?;
    let texts = rows.iter().flat_map(|r| [r.query.as_str(), r.positive.as_str()]);
    Ok(train_wordpiece(texts, vocab_size, out)?)
}

fn convert_cmd(args: &ConvertArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let name = args.name.clone().unwrap_or_else(|| {
        args.out.file_name().and_then(|n| n.to_str()).unwrap_or("benchmark").trim_end_matches(".parquet").to_string()
    });
    let language_files = || -> anyhow::Result<Vec<LanguageFile>> {
        args.inputs.iter().map(|s| LanguageFile::parse(s).map_err(anyhow::Error::from)).collect()
    };
    match args.format {
        SourceFormat::Lareqa => {
            let s = convert::convert_lareqa(&language_files()?, &args.out, &name)?;
            println!(
                "convert: {} queries, {} candidates, {} judgements -> {} ({} questions without an answer sentence skipped)",
                s.queries,
                s.candidates,
                s.qrels,
                args.out.display(),
                s.unanswerable
            );
        }
        SourceFormat::Beir => {
            let mut inputs = Vec::new();
            for spec in &args.inputs {
                let file = LanguageFile::parse(spec)?;
                inputs.push(BeirInputs::discover(&file.path, &args.split, &file.lang)?);
            }
            let s = convert::convert_beir(&inputs, &args.out, &name)?;
            println!(
                "convert: {} queries, {} documents, {} judgements -> {}",
                s.queries,
                s.candidates,
                s.qrels,
                args.out.display()
            );
        }
        SourceFormat::Mteb => {
            let inputs = args
                .inputs
                .iter()
                .map(|spec| convert::mteb_subset(spec, &args.split))
                .collect::<Result<Vec<_>, _>>()?;
            let s = convert::convert_beir(&inputs, &args.out, &name)?;
            let pools: Vec<&str> = inputs.iter().map(|i| i.lang.as_str()).collect();
            println!(
                "convert: {} queries, {} documents, {} judgements in sub-sets {} -> {}",
                s.queries,
                s.candidates,
                s.qrels,
                pools.join(" "),
                args.out.display()
            );
        }
        SourceFormat::Mkqa => {
            let [mkqa, passages] = args.inputs.as_slice() else {
                anyhow::bail!(
                    "--from mkqa takes two inputs: the MKQA JSONL file, then the passages (corpus.jsonl or .tsv)"
                );
            };
            let s = convert::convert_mkqa(Path::new(mkqa), Path::new(passages), &args.out, &name)?;
            println!(
                "convert: {} queries in {} languages, {} passages, {} judgements (passages holding an English answer) -> {}",
                s.benchmark.queries,
                s.languages.len(),
                s.benchmark.candidates,
                s.benchmark.qrels,
                args.out.display()
            );
            println!(
                "convert: {} questions answered by some passage, {} by none (evaluation skips those), {} without a usable English answer left out",
                s.answered_questions, s.questions_without_passage, s.benchmark.unanswerable
            );
        }
        SourceFormat::Belebele => {
            let inputs: Vec<PathBuf> = args.inputs.iter().map(PathBuf::from).collect();
            let s = convert::convert_belebele(&inputs, &args.out, &name)?;
            println!(
                "convert: {} questions, {} passages, {} judgements -> {}",
                s.queries,
                s.candidates,
                s.qrels,
                args.out.display()
            );
        }
        SourceFormat::Squad => {
            let unit = match args.positive {
                PositiveArg::Sentence => PositiveUnit::Sentence,
                PositiveArg::Paragraph => PositiveUnit::Paragraph,
            };
            let s =
                convert::convert_squad_pairs(&language_files()?, &args.out, &args.dataset, unit, args.rows_per_group)?;
            println!("convert: {} rows in {} parallel groups -> {}", s.rows, s.groups, args.out.display());
        }
        SourceFormat::JsonlPairs => {
            let inputs: Vec<PathBuf> = args.inputs.iter().map(PathBuf::from).collect();
            let s = convert::convert_jsonl_pairs(&inputs, &args.out, &args.dataset, args.rows_per_group)?;
            println!("convert: {} rows in {} parallel groups -> {}", s.rows, s.groups, args.out.display());
        }
    }
    println!("convert: done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// What `data validate PATH` checks: a pairs file, a benchmark directory, or a directory that
/// holds pairs files and benchmark directories (the output of `data synth`).
enum ValidationTarget {
    Pairs(PathBuf),
    Benchmark(PathBuf),
}

fn validation_targets(path: &Path) -> anyhow::Result<Vec<ValidationTarget>> {
    if path.is_file() {
        return Ok(vec![ValidationTarget::Pairs(path.to_path_buf())]);
    }
    if !path.is_dir() {
        bail!("{}: no such file or directory", path.display());
    }
    if path.join(rosetta_datasets::benchmark::SPEC_FILE).is_file() {
        return Ok(vec![ValidationTarget::Benchmark(path.to_path_buf())]);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    entries.sort();
    let targets: Vec<ValidationTarget> = entries
        .into_iter()
        .filter_map(|entry| {
            if entry.is_dir() && entry.join(rosetta_datasets::benchmark::SPEC_FILE).is_file() {
                Some(ValidationTarget::Benchmark(entry))
            } else if entry.is_file() && entry.extension().is_some_and(|e| e == "parquet") {
                Some(ValidationTarget::Pairs(entry))
            } else {
                None
            }
        })
        .collect();
    if targets.is_empty() {
        bail!(
            "{}: not a benchmark directory (no {}) and it holds no training-pairs files (*.parquet) or benchmark \
             directories",
            path.display(),
            rosetta_datasets::benchmark::SPEC_FILE
        );
    }
    Ok(targets)
}

fn validate_cmd(args: &ValidateArgs) -> anyhow::Result<()> {
    let mut invalid = Vec::new();
    let mut reports = Vec::new();
    for target in validation_targets(&args.path)? {
        let (path, report, benchmark) = match target {
            ValidationTarget::Pairs(path) => {
                let report = validate_pairs(&path)?;
                (path, report, false)
            }
            ValidationTarget::Benchmark(path) => {
                let report = validate_benchmark(&path)?;
                (path, report, true)
            }
        };
        if !args.json {
            for problem in report.problems.iter().take(args.max_problems) {
                println!("{problem}");
            }
            if report.problems.len() > args.max_problems {
                println!("... and {} more problems", report.problems.len() - args.max_problems);
            }
            if benchmark {
                println!(
                    "{} queries have no relevant document (evaluation skips them)",
                    report.queries_without_relevant
                );
            }
            println!("{}: {} rows checked, {} problems", path.display(), report.rows, report.problems.len());
        }
        if !report.is_valid() {
            invalid.push(format!("{} ({} problems)", path.display(), report.problems.len()));
        }
        reports.push((path, report));
    }
    if args.json {
        match reports.as_slice() {
            [(_, report)] => println!("{}", report_json(report)),
            many => {
                let all: Vec<serde_json::Value> = many
                    .iter()
                    .map(|(path, report)| {
                        let mut value: serde_json::Value =
                            serde_json::from_str(&report_json(report)).unwrap_or_default();
                        value["path"] = serde_json::json!(path.display().to_string());
                        value
                    })
                    .collect();
                println!("{}", serde_json::json!({ "valid": invalid.is_empty(), "targets": all }));
            }
        }
    }
    if !invalid.is_empty() {
        bail!("not valid: {}", invalid.join(", "));
    }
    Ok(())
}

fn report_json(report: &ValidationReport) -> String {
    let problems: Vec<serde_json::Value> = report
        .problems
        .iter()
        .map(|p| {
            serde_json::json!({
                "file": p.file.display().to_string(), "row": p.row, "column": p.column, "message": p.message,
            })
        })
        .collect();
    serde_json::json!({
        "valid": report.is_valid(), "rows": report.rows, "problems": problems,
        "queries_without_relevant": report.queries_without_relevant,
    })
    .to_string()
}

/// Prints the stats tables.
pub fn print_stats(path: &Path, stats: &PairStats) {
    println!(
        "{}: {} rows, {} parallel groups, {} rows with hard negatives",
        path.display(),
        stats.rows,
        stats.groups,
        stats.rows_with_negatives
    );
    println!("\nrows per dataset and language");
    for (dataset, langs) in &stats.rows_by_dataset {
        let cells: Vec<String> = langs.iter().map(|(l, n)| format!("{l}={n}")).collect();
        println!("  {dataset:<20} {}", cells.join("  "));
    }
    println!("\ngroups by number of languages");
    for (k, n) in &stats.groups_by_language_count {
        println!("  {k} language(s): {n}");
    }
    println!("\nparallel coverage (groups having both languages)");
    let cells: Vec<String> = stats.coverage.iter().map(|(pair, n)| format!("{pair}={n}")).collect();
    for chunk in cells.chunks(6) {
        println!("  {}", chunk.join("  "));
    }
    println!("\nlength in characters   p50   p90   p99   max");
    for (name, p) in [("query", &stats.query_chars), ("positive", &stats.positive_chars)] {
        println!("  {name:<20} {:>5} {:>5} {:>5} {:>5}", p.p50, p.p90, p.p99, p.max);
    }
}

fn shard_cmd(args: &ShardArgs) -> anyhow::Result<()> {
    let index = build_shard_index(&args.path, args.workers)?;
    let out = args.out.clone().unwrap_or_else(|| {
        let mut name = args.path.file_name().unwrap_or_default().to_os_string();
        name.push(".shards.json");
        args.path.with_file_name(name)
    });
    index.save(&out).with_context(|| format!("writing {}", out.display()))?;
    for shard in &index.shards {
        let first = shard.row_groups.first().copied().unwrap_or(0);
        let last = shard.row_groups.last().copied().unwrap_or(0);
        println!("shard {}: row groups {first}..={last}, {} rows", shard.rank, shard.rows);
    }
    println!("shard index of {} rows for {} workers -> {}", index.total_rows, args.workers, out.display());
    Ok(())
}

fn bench_read(args: &BenchReadArgs) -> anyhow::Result<()> {
    let tokenizer = TextTokenizer::load(&args.tokenizer)?;
    let started = Instant::now();
    let reader = TableReader::open(&args.pairs)?;
    let columns: Vec<&str> =
        pair_columns_of(&reader).into_iter().filter(|c| *c == "query" || *c == "positive").collect();
    let mut pairs = 0usize;
    let mut tokens = 0usize;
    reader.scan(
        &columns,
        args.batch_size,
        |_, batch| {
            let query = rosetta_datasets::table::text_column(batch, "query");
            let positive = rosetta_datasets::table::text_column(batch, "positive");
            let (Some(query), Some(positive)) = (query, positive) else {
                return Err(rosetta_datasets::DatasetError::format(&args.pairs, "query/positive columns missing"));
            };
            let mut texts = Vec::with_capacity(batch.num_rows() * 2);
            for i in 0..batch.num_rows() {
                texts.push(query.get(i).unwrap_or(""));
                texts.push(positive.get(i).unwrap_or(""));
            }
            for encoding in tokenizer.encode_batch(texts)? {
                tokens += encoding.get_ids().len();
            }
            pairs += batch.num_rows();
            Ok(())
        },
        |row, column, message| eprintln!("row {row}, column {column}: {message}"),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"impl": "rosetta", "pairs": pairs, "tokens": tokens, "seconds": seconds,
                           "pairs_per_second": pairs as f64 / seconds})
    );
    Ok(())
}
