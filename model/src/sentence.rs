//! Sentence encoders: transformer + pooling (+ optional Dense) + optional L2 normalisation,
//! loaded from a Hugging Face or sentence-transformers directory, or created at random.

use std::collections::HashMap;
use std::path::Path;

use rosetta_datasets::tokenize::TextTokenizer;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::encoder::{GraphCut, InferenceWeights, Linear, TransformerEncoder};
use crate::error::{ModelError, Result};
use crate::hf_config::EncoderConfig;
pub use rosetta_worker_config::model::{Pooling, SentenceSettings};

/// Activation of a sentence-transformers Dense layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DenseActivation {
    /// `tanh` (LaBSE).
    Tanh,
    /// None.
    Identity,
}

/// A sentence-transformers Dense module.
#[derive(Debug)]
pub struct Dense {
    /// The linear map (`linear.weight`, `linear.bias` in its file).
    pub linear: Linear,
    /// Its activation.
    pub activation: DenseActivation,
}

/// A batch of token ids ready for the encoder.
#[derive(Debug)]
pub struct TokenBatch {
    /// `[B, L]` int64 ids, padded with the pad id.
    pub input_ids: Tensor,
    /// `[B, L]` int64, 1 for tokens and 0 for padding.
    pub attention_mask: Tensor,
}

/// A bi-encoder tower: text in, vector out.
pub struct SentenceEncoder {
    vs: VarStore,
    encoder: TransformerEncoder,
    dense: Option<Dense>,
    settings: SentenceSettings,
    tokenizer: TextTokenizer,
}

/// Reads a JSON file into `T`, naming the file in errors.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::model(path, e.to_string()))
}

#[derive(Deserialize)]
struct ModuleEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// Pooling config of sentence-transformers, old (`pooling_mode_*_token(s)`) or new (`pooling_mode`).
#[derive(Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode: Option<String>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

#[derive(Deserialize)]
struct DenseFile {
    in_features: i64,
    out_features: i64,
    #[serde(default = "yes")]
    bias: bool,
    #[serde(default)]
    activation_function: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default)]
struct SentenceBertFile {
    #[serde(default)]
    max_seq_length: Option<usize>,
}

/// `config_sentence_transformers.json`: the prompts (E5-style prefixes) of a model.
#[derive(Deserialize, Default)]
struct SentenceTransformersConfigFile {
    #[serde(default)]
    prompts: HashMap<String, String>,
}

#[derive(Deserialize, Default)]
struct TokenizerConfigFile {
    #[serde(default)]
    model_max_length: Option<f64>,
}

impl SentenceEncoder {
    /// Loads a sentence-transformers directory (honouring `modules.json`: Transformer →
    /// Pooling → optional Dense → optional Normalize, and the `query` / `document` prompts of
    /// `config_sentence_transformers.json` as prefixes), or a plain Hugging Face directory with
    /// `default` settings for pooling, normalisation and prefixes.
    pub fn load(dir: &Path, default: &SentenceSettings, device: Device) -> Result<Self> {
        let modules_path = dir.join("modules.json");
        let mut settings = default.clone();
        let mut transformer_dir = dir.to_path_buf();
        let mut dense_dir = None;
        if modules_path.exists() {
            let modules: Vec<ModuleEntry> = read_json(&modules_path)?;
            settings.normalize = false;
            for module in &modules {
                let module_dir = dir.join(&module.path);
                let kind = module.kind.rsplit('.').next().unwrap_or_default();
                match kind {
                    "Transformer" => transformer_dir = module_dir,
                    "Pooling" => settings.pooling = read_pooling(&module_dir.join("config.json"))?,
                    "Dense" => dense_dir = Some(module_dir),
                    "Normalize" => settings.normalize = true,
                    other => {
                        return Err(ModelError::model(
                            &modules_path,
                            format!("module type {other:?} is not supported (Transformer, Pooling, Dense, Normalize)"),
                        ));
                    }
                }
            }
        }
        let prompts_path = dir.join("config_sentence_transformers.json");
        if prompts_path.exists() {
            let prompts = read_json::<SentenceTransformersConfigFile>(&prompts_path)?.prompts;
            if let Some(query) = prompts.get("query").filter(|p| !p.is_empty()) {
                settings.query_prefix = query.clone();
            }
            if let Some(passage) =
                ["document", "passage"].iter().find_map(|k| prompts.get(*k).filter(|p| !p.is_empty()))
            {
                settings.passage_prefix = passage.clone();
            }
        }
        let config = EncoderConfig::load(&transformer_dir.join("config.json"))?;
        settings.max_seq_length = max_seq_length(&transformer_dir, &config, default.max_seq_length)?;
        let tokenizer = TextTokenizer::load(&transformer_dir.join("tokenizer.json"))?;
        let mut model = Self::of_shape(config, tokenizer, settings, None, device)?;
        let dense = match &dense_dir {
            Some(dense_dir) => Some(read_dense_config(&dense_dir.join("config.json"))?),
            None => None,
        };
        if let Some((inputs, outputs, activation)) = dense {
            model.dense =
                Some(Dense { linear: Linear::new(model.vs.root() / "dense" / "linear", inputs, outputs), activation });
        }
        let weights = transformer_dir.join("model.safetensors");
        load_safetensors(&model.vs, &weights, |name| {
            let name = ["bert.", "roberta.", "model."].iter().find_map(|p| name.strip_prefix(p)).unwrap_or(name);
            (!name.starts_with("pooler.") && !name.starts_with("dense.")).then(|| name.to_string())
        })?;
        if let Some(dense_dir) = dense_dir {
            load_safetensors(&model.vs, &dense_dir.join("model.safetensors"), |name| Some(format!("dense.{name}")))?;
        }
        Ok(model)
    }

    /// A randomly initialised encoder (HF initialisation), seeded for reproducibility.
    pub fn random(
        config: EncoderConfig,
        tokenizer: TextTokenizer,
        settings: SentenceSettings,
        seed: i64,
        device: Device,
    ) -> Result<Self> {
        Self::of_shape(config, tokenizer, settings, Some(seed), device)
    }

    /// An encoder of `config`'s shape: initialised from `seed`, or with every parameter zero
    /// (LayerNorm weights one) when `seed` is `None`, for weights to be loaded into — drawing
    /// random weights first would cost seconds on a 250,002-token vocabulary.
    pub fn of_shape(
        config: EncoderConfig,
        tokenizer: TextTokenizer,
        mut settings: SentenceSettings,
        seed: Option<i64>,
        device: Device,
    ) -> Result<Self> {
        config.check().map_err(|m| ModelError::invalid("model", m))?;
        let vs = VarStore::new(device);
        let encoder = TransformerEncoder::new(&vs.root(), &config);
        if let Some(seed) = seed {
            initialise(&vs, seed as u64, config.pad_token_id);
        }
        let limit = usize::try_from(config.max_input_length()).unwrap_or(0);
        settings.max_seq_length = settings.max_seq_length.min(limit);
        let tokenizer = tokenizer.with_truncation(settings.max_seq_length)?;
        Ok(Self { vs, encoder, dense: None, settings, tokenizer })
    }

    /// The parameters (HF names; the Dense layer under `dense.linear.`).
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    /// Mutable parameters (e.g. to load a checkpoint).
    pub fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.vs
    }

    /// The transformer.
    pub fn encoder(&self) -> &TransformerEncoder {
        &self.encoder
    }

    /// The Dense layer, if any.
    pub fn dense(&self) -> Option<&Dense> {
        self.dense.as_ref()
    }

    /// Pooling, normalisation, length and prefixes.
    pub fn settings(&self) -> &SentenceSettings {
        &self.settings
    }

    /// The tokenizer (truncating to `max_seq_length`).
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Tokenises `texts` (each prefixed by `prefix`), truncated and padded to the longest.
    pub fn tokenize(&self, texts: &[&str], prefix: &str) -> Result<TokenBatch> {
        let encodings = self.token_ids(texts, prefix)?;
        Ok(self.batch_of(encodings.iter().map(Vec::as_slice)))
    }

    /// The token ids of `texts` (each prefixed by `prefix`), truncated to `max_seq_length`.
    pub fn token_ids(&self, texts: &[&str], prefix: &str) -> Result<Vec<Vec<u32>>> {
        let prefixed: Vec<String>;
        let inputs: Vec<&str> = if prefix.is_empty() {
            texts.to_vec()
        } else {
            prefixed = texts.iter().map(|t| format!("{prefix}{t}")).collect();
            prefixed.iter().map(String::as_str).collect()
        };
        Ok(self.tokenizer.encode_batch(inputs)?.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// A batch of token-id sequences padded to the longest.
    fn batch_of<'a>(&self, sequences: impl ExactSizeIterator<Item = &'a [u32]> + Clone) -> TokenBatch {
        let count = sequences.len();
        let length = sequences.clone().map(<[u32]>::len).max().unwrap_or(1).max(1);
        let pad = self.encoder.config().pad_token_id;
        let mut ids = Vec::with_capacity(count * length);
        let mut mask = Vec::with_capacity(count * length);
        for tokens in sequences {
            ids.extend(tokens.iter().map(|&t| i64::from(t)));
            ids.extend(std::iter::repeat_n(pad, length - tokens.len()));
            mask.extend(std::iter::repeat_n(1i64, tokens.len()));
            mask.extend(std::iter::repeat_n(0i64, length - tokens.len()));
        }
        let device = self.vs.device();
        let shape = [count as i64, length as i64];
        TokenBatch {
            input_ids: Tensor::from_slice(&ids).view(shape).to_device(device),
            attention_mask: Tensor::from_slice(&mask).view(shape).to_device(device),
        }
    }

    /// Sentence embeddings `[B, D]` of a batch (with gradients; dropout when `train`).
    pub fn embed(&self, batch: &TokenBatch, train: bool) -> Tensor {
        self.embed_cut(batch, train, None)
    }

    /// [`SentenceEncoder::embed`] with the graph cut in front of every layer when `cuts` is
    /// given (see [`crate::encoder::GraphCut`]).
    pub fn embed_cut(&self, batch: &TokenBatch, train: bool, cuts: Option<&mut Vec<GraphCut>>) -> Tensor {
        self.pool(batch, self.encoder.forward_cut(&batch.input_ids, &batch.attention_mask, train, cuts))
    }

    /// Sentence embeddings of a batch for inference (no dropout), the encoder's linear layers
    /// reading `weights` where given (see [`TransformerEncoder::inference_weights`]).
    pub fn embed_for_inference(&self, batch: &TokenBatch, weights: Option<&InferenceWeights>) -> Tensor {
        let hidden = match weights {
            Some(weights) => self.encoder.forward_inference(&batch.input_ids, &batch.attention_mask, weights),
            None => self.encoder.forward(&batch.input_ids, &batch.attention_mask, false),
        };
        self.pool(batch, hidden)
    }

    /// Pooling, the Dense layer and normalisation of the last hidden states `hidden`.
    fn pool(&self, batch: &TokenBatch, hidden: Tensor) -> Tensor {
        let pooled = match self.settings.pooling {
            Pooling::Cls => hidden.select(1, 0),
            Pooling::Mean => {
                let mask = batch.attention_mask.unsqueeze(-1).to_kind(hidden.kind());
                let summed = (&hidden * &mask).sum_dim_intlist(1, false, hidden.kind());
                let counts = mask.sum_dim_intlist(1, false, hidden.kind()).clamp_min(1e-9);
                summed / counts
            }
        };
        let pooled = match &self.dense {
            Some(dense) => {
                let projected = dense.linear.forward(&pooled);
                match dense.activation {
                    DenseActivation::Tanh => projected.tanh(),
                    DenseActivation::Identity => projected,
                }
            }
            None => pooled,
        };
        if self.settings.normalize {
            let norm = pooled.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-12);
            pooled / norm
        } else {
            pooled
        }
    }

    /// Embeddings of several batches (with gradients; dropout when `train`), one tensor per
    /// batch. Short batches of similar length go through the encoder as one padded batch: with
    /// small sequences the per-operation cost dominates, and one pass over 2B rows is cheaper
    /// than two over B (measured: 15% of a training step). Batches are kept apart when padding
    /// them together would cost more than a quarter more tokens.
    pub fn embed_many(&self, batches: &[&TokenBatch], train: bool) -> Vec<Tensor> {
        self.embed_many_cut(batches, train, None)
    }

    /// [`SentenceEncoder::embed_many`] with the graph cut in front of every layer of every
    /// forward pass when `cuts` is given: `layers` cuts per pass, passes in order.
    pub fn embed_many_cut(
        &self,
        batches: &[&TokenBatch],
        train: bool,
        mut cuts: Option<&mut Vec<GraphCut>>,
    ) -> Vec<Tensor> {
        if !Self::merges(batches) {
            return batches.iter().map(|b| self.embed_cut(b, train, cuts.as_deref_mut())).collect();
        }
        let rows: Vec<i64> = batches.iter().map(|b| b.input_ids.size2().unwrap_or((0, 0)).0).collect();
        let longest = batches.iter().map(|b| b.input_ids.size2().unwrap_or((0, 0)).1).max().unwrap_or(0);
        let pad = self.encoder.config().pad_token_id;
        let widen = |t: &Tensor, value: i64| {
            let (b, l) = t.size2().unwrap_or((0, 0));
            if l == longest {
                t.shallow_clone()
            } else {
                Tensor::cat(&[t.shallow_clone(), Tensor::full([b, longest - l], value, (Kind::Int64, t.device()))], 1)
            }
        };
        let merged = TokenBatch {
            input_ids: Tensor::cat(&batches.iter().map(|b| widen(&b.input_ids, pad)).collect::<Vec<_>>(), 0),
            attention_mask: Tensor::cat(&batches.iter().map(|b| widen(&b.attention_mask, 0)).collect::<Vec<_>>(), 0),
        };
        self.embed_cut(&merged, train, cuts).split_with_sizes(&rows, 0)
    }

    /// Whether [`SentenceEncoder::embed_many`] runs `batches` as one padded pass: at least two
    /// non-empty batches, and padding them together costs at most a quarter more tokens.
    pub fn merges(batches: &[&TokenBatch]) -> bool {
        let shapes: Vec<(i64, i64)> = batches.iter().map(|b| b.input_ids.size2().unwrap_or((0, 0))).collect();
        let longest = shapes.iter().map(|s| s.1).max().unwrap_or(0);
        let separate: i64 = shapes.iter().map(|(b, l)| b * l).sum();
        let together = shapes.iter().map(|s| s.0).sum::<i64>() * longest;
        shapes.len() >= 2 && shapes.iter().all(|s| s.0 > 0) && together * 4 <= separate * 5
    }

    /// Embeddings of `texts` for inference (no gradient, no dropout), in batches of `batch_size`.
    pub fn encode(&self, texts: &[&str], prefix: &str, batch_size: usize) -> Result<Tensor> {
        let mut parts = Vec::new();
        let weights = self.encoder.inference_weights();
        for chunk in texts.chunks(batch_size.max(1)) {
            let batch = self.tokenize(chunk, prefix)?;
            parts.push(tch::no_grad(|| self.embed_for_inference(&batch, weights.as_ref())));
        }
        if parts.is_empty() {
            return Ok(Tensor::zeros([0, self.embedding_width()], (Kind::Float, self.vs.device())));
        }
        Ok(Tensor::cat(&parts, 0))
    }

    /// Embeddings `[N, D]` of `texts`, in their order, from batches of texts of similar length
    /// (little padding, as sentence-transformers does): each `window` of texts, counted from the
    /// slice's start, is tokenised once, ordered by token count (ties by position), cut into
    /// batches of `batch_size`, and the embeddings are put back in order. Windows that start at
    /// the same global positions give the same batches, whatever slice they come in.
    pub fn encode_by_length(&self, texts: &[&str], prefix: &str, batch_size: usize, window: usize) -> Result<Tensor> {
        self.encode_by_length_cached(texts, prefix, batch_size, window, None, 1)
    }

    /// [`SentenceEncoder::encode_by_length`], each window's token ids taken from `cache` when
    /// it has them (and stored there when not), the batches run longest first in `streams`
    /// [`crate::streams`] of one intra-op thread each when `streams` > 1. Streams set libtorch's
    /// process-wide thread count to one while they run, so only a process that does nothing
    /// else meanwhile (an evaluation shard) should ask for them; there, on e5-small's shape and
    /// 2 cores, 2 streams encode about 9 % faster than one stream of 2 threads.
    pub fn encode_by_length_cached(
        &self,
        texts: &[&str],
        prefix: &str,
        batch_size: usize,
        window: usize,
        cache: Option<&crate::token_cache::TokenCache>,
        streams: usize,
    ) -> Result<Tensor> {
        let batch_size = batch_size.max(1);
        // Every window's token ids and length order first, so that the streams run over the
        // batches of all windows.
        let mut windows = Vec::new();
        for block in texts.chunks(window.max(batch_size)) {
            let sequences = match cache {
                Some(cache) => cache.get_or_insert(prefix, block, || self.token_ids(block, prefix))?.0,
                None => self.token_ids(block, prefix)?,
            };
            let mut order: Vec<usize> = (0..block.len()).collect();
            order.sort_by_key(|&i| (sequences[i].len(), i));
            windows.push((sequences, order));
        }
        // (window, first position in its length order) of every batch.
        let batches: Vec<(usize, usize)> = windows
            .iter()
            .enumerate()
            .flat_map(|(w, (_, order))| (0..order.len()).step_by(batch_size).map(move |start| (w, start)))
            .collect();
        let rows = |&(w, start): &(usize, usize)| {
            let (sequences, order) = &windows[w];
            order[start..(start + batch_size).min(order.len())].iter().map(|&i| sequences[i].as_slice())
        };
        // Padded tokens: the batch's texts are in length order, so its last is its longest.
        let cost = |batch: &(usize, usize)| {
            let mut texts = rows(batch);
            texts.len() * texts.next_back().map_or(0, <[u32]>::len)
        };
        let mut longest_first: Vec<usize> = (0..batches.len()).collect();
        longest_first.sort_by_key(|&b| (std::cmp::Reverse(cost(&batches[b])), b));
        // The linear weights laid out once for every batch (fp32 on AVX-512 CPUs).
        let weights = self.encoder.inference_weights();
        let embedded = crate::streams::run_in_streams(self, streams, &longest_first, |encoder, b| {
            let batch = encoder.batch_of(rows(&batches[b]));
            tch::no_grad(|| encoder.embed_for_inference(&batch, weights.as_ref()))
        });
        let mut by_batch = embedded.into_iter();
        let mut parts = Vec::new();
        for (_, order) in &windows {
            let count = order.len().div_ceil(batch_size);
            let embedded: Vec<Tensor> = by_batch.by_ref().take(count).collect();
            let mut inverse = vec![0i64; order.len()];
            for (position, &i) in order.iter().enumerate() {
                inverse[i] = position as i64;
            }
            let inverse = Tensor::from_slice(&inverse).to_device(self.vs.device());
            parts.push(Tensor::cat(&embedded, 0).index_select(0, &inverse));
        }
        if parts.is_empty() {
            return Ok(Tensor::zeros([0, self.embedding_width()], (Kind::Float, self.vs.device())));
        }
        Ok(Tensor::cat(&parts, 0))
    }

    /// Width of the output vectors.
    pub fn embedding_width(&self) -> i64 {
        match &self.dense {
            Some(dense) => dense.linear.weight.size()[0],
            None => self.encoder.config().hidden_size,
        }
    }
}

/// Hugging Face's initialisation — normal(0, 0.02) weights and embeddings, zero biases, unit
/// LayerNorm, zero padding row — drawn from Rosetta's own seeded generator, one stream per
/// parameter name, so a seed gives the same model on every machine and thread.
fn initialise(vs: &VarStore, seed: u64, pad_token_id: i64) {
    use rosetta_datasets::rng::SeededRng;
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut var) in variables {
            if name.contains("LayerNorm") {
                let _ = var.fill_(if name.ends_with(".weight") { 1.0 } else { 0.0 });
                continue;
            }
            if name.ends_with(".bias") {
                let _ = var.zero_();
                continue;
            }
            let stream = rosetta_datasets::rng::fnv1a(name.as_bytes());
            let mut rng = SeededRng::from_parts(&[seed, stream]);
            let count = var.numel();
            let mut values = Vec::with_capacity(count);
            while values.len() < count {
                // Box–Muller: two standard normals from two uniforms.
                let u1 = rng.unit_f64().max(f64::MIN_POSITIVE);
                let u2 = rng.unit_f64();
                let radius = (-2.0 * u1.ln()).sqrt();
                let angle = std::f64::consts::TAU * u2;
                values.push((0.02 * radius * angle.cos()) as f32);
                values.push((0.02 * radius * angle.sin()) as f32);
            }
            values.truncate(count);
            let source = Tensor::from_slice(&values).view(var.size().as_slice()).to_device(var.device());
            var.copy_(&source);
            if name == "embeddings.word_embeddings.weight" && (0..var.size()[0]).contains(&pad_token_id) {
                let _ = var.get(pad_token_id).zero_();
            }
        }
    });
}

fn read_pooling(path: &Path) -> Result<Pooling> {
    let file: PoolingFile = read_json(path)?;
    let mode = file.pooling_mode.unwrap_or_else(|| {
        if file.pooling_mode_cls_token {
            "cls".into()
        } else if file.pooling_mode_max_tokens {
            "max".into()
        } else if file.pooling_mode_mean_tokens {
            "mean".into()
        } else {
            String::new()
        }
    });
    match mode.as_str() {
        "cls" => Ok(Pooling::Cls),
        "mean" => Ok(Pooling::Mean),
        other => Err(ModelError::model(path, format!("pooling mode {other:?} is not supported (cls, mean)"))),
    }
}

fn read_dense_config(path: &Path) -> Result<(i64, i64, DenseActivation)> {
    let file: DenseFile = read_json(path)?;
    if !file.bias {
        return Err(ModelError::model(path, "Dense layers without bias are not supported"));
    }
    let activation = match file.activation_function.as_deref().map(|a| a.rsplit('.').next().unwrap_or(a)) {
        Some("Tanh") => DenseActivation::Tanh,
        None | Some("Identity") => DenseActivation::Identity,
        Some(other) => {
            return Err(ModelError::model(path, format!("activation {other:?} is not supported (Tanh, Identity)")));
        }
    };
    Ok((file.in_features, file.out_features, activation))
}

fn max_seq_length(dir: &Path, config: &EncoderConfig, fallback: usize) -> Result<usize> {
    let st = dir.join("sentence_bert_config.json");
    if st.exists()
        && let Some(length) = read_json::<SentenceBertFile>(&st)?.max_seq_length
    {
        return Ok(length);
    }
    let tokenizer_config = dir.join("tokenizer_config.json");
    if tokenizer_config.exists() {
        let file: TokenizerConfigFile = read_json(&tokenizer_config)?;
        if let Some(length) = file.model_max_length.filter(|l| *l >= 1.0 && *l < 1e6) {
            return Ok(length as usize);
        }
    }
    Ok(fallback.min(usize::try_from(config.max_input_length()).unwrap_or(fallback)))
}

/// Copies tensors of a safetensors file into the variables of `vs`, one tensor at a time
/// straight from the file (no second copy of the weights in memory). `rename` maps a file name
/// to a variable name (or `None` to skip it). Every variable must be found with its shape;
/// the error lists each missing or mis-shaped tensor.
pub fn load_safetensors(vs: &VarStore, path: &Path, rename: impl Fn(&str) -> Option<String>) -> Result<()> {
    let file = crate::tensor_file::TensorFile::open(path)?;
    let by_name: HashMap<String, &str> =
        file.names().filter_map(|name| rename(name).map(|var_name| (var_name, name))).collect();
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    let mut problems = Vec::new();
    let mut loaded = 0;
    for (name, mut var) in variables {
        let Some(prefix) = name.split('.').next() else { continue };
        // Only variables whose family the file covers are expected in it (the Dense file
        // holds `dense.*` only; the transformer file everything else).
        let covered = by_name.keys().any(|k| k.split('.').next() == Some(prefix));
        if !covered {
            continue;
        }
        let Some(&file_name) = by_name.get(&name) else {
            problems.push(format!("tensor {name} is missing"));
            continue;
        };
        match file.shape(file_name) {
            Some(shape) if shape != var.size().as_slice() => {
                problems.push(format!("tensor {name} has shape {shape:?}, expected {:?}", var.size()))
            }
            _ => {
                file.read_into(file_name, &mut var)?;
                loaded += 1;
            }
        }
    }
    if loaded == 0 && problems.is_empty() {
        problems.push("no tensor of the model was found in the file".to_string());
    }
    if problems.is_empty() { Ok(()) } else { Err(ModelError::model(path, problems.join("; "))) }
}
