//! The transformer encoder (BERT / XLM-RoBERTa) in libtorch, with Hugging Face parameter names
//! so that `model.safetensors` files load and export unchanged. Attention goes through
//! libtorch's fused `scaled_dot_product_attention` (see `attention` for training on the CPU,
//! and `cpu_attention` for bf16 inference on CPUs with AVX-512 BF16 but no AMX); fp32 inference
//! on CPUs with AVX-512 runs the linear layers in [`crate::kernels::cpu_gemm`]; dropout goes through
//! [`crate::dropout`].

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use crate::dropout::dropout;
use crate::hf_config::{Architecture, EncoderConfig};
use crate::kernels::cpu_gemm::PackedLinear;

/// A dense layer `y = x Wᵀ + b` with HF names `weight`, `bias`.
#[derive(Debug)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Tensor,
}

impl Linear {
    /// Creates the parameters under `path`, zero until they are loaded or initialised.
    pub fn new(path: nn::Path<'_>, inputs: i64, outputs: i64) -> Self {
        Self {
            weight: path.var("weight", &[outputs, inputs], Init::Const(0.0)),
            bias: path.var("bias", &[outputs], Init::Const(0.0)),
        }
    }

    /// Applies the layer.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }

    /// `residual + forward(x)`, the residual and bias summed first and the product added onto
    /// that sum in place by the GEMM: no separate copy of the bias into the output and no
    /// separate residual add (one pass less over `[rows, out]` each).
    fn forward_onto(&self, x: &Tensor, residual: &Tensor) -> Tensor {
        if x.kind() != self.weight.kind() || residual.kind() != self.weight.kind() {
            return self.forward(x) + residual;
        }
        let size = residual.size();
        let inputs = x.size().last().copied().unwrap_or(1);
        let mut sum = (residual + &self.bias).reshape([-1, self.bias.size()[0]]);
        let _ = sum.addmm_(&x.reshape([-1, inputs]), &self.weight.tr());
        sum.view(size.as_slice())
    }
}

/// A LayerNorm with HF names `weight`, `bias`.
#[derive(Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    width: i64,
}

impl LayerNorm {
    fn new(path: nn::Path<'_>, width: i64, eps: f64) -> Self {
        Self {
            weight: path.var("weight", &[width], Init::Const(1.0)),
            bias: path.var("bias", &[width], Init::Const(0.0)),
            eps,
            width,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.width], Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}

/// An encoder's linear weights laid out for [`crate::kernels::cpu_gemm`] (fp32 inference on CPUs with
/// AVX-512), made once for many batches by [`TransformerEncoder::inference_weights`].
#[derive(Debug)]
pub struct InferenceWeights(Vec<PackedLayer>);

/// One layer's weights laid out for [`crate::kernels::cpu_gemm`].
#[derive(Debug)]
struct PackedLayer {
    qkv: PackedLinear,
    attention_output: PackedLinear,
    intermediate: PackedLinear,
    output: PackedLinear,
}

impl PackedLayer {
    fn new(layer: &Layer) -> Option<Self> {
        let pack = |linear: &Linear| PackedLinear::new(&[(&linear.weight, &linear.bias)]);
        Some(Self {
            qkv: PackedLinear::new(&[
                (&layer.query.weight, &layer.query.bias),
                (&layer.key.weight, &layer.key.bias),
                (&layer.value.weight, &layer.value.bias),
            ])?,
            attention_output: pack(&layer.attention_output)?,
            intermediate: pack(&layer.intermediate)?,
            output: pack(&layer.output)?,
        })
    }
}

#[derive(Debug)]
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// A cut in a training forward pass, in front of one layer: the layer reads `input`, a leaf
/// that holds `output`'s value without its history, so the backward pass can stop there, hand
/// over the finished gradients of the layers above, and carry on from `output` (see
/// [`TransformerEncoder::forward_cut`]).
#[derive(Debug)]
pub struct GraphCut {
    /// The hidden states as the layers below produced them (with their history).
    pub output: Tensor,
    /// The leaf the next layer reads; its gradient continues the backward pass below.
    pub input: Tensor,
}

/// A BERT / XLM-R encoder; `forward` gives the last hidden states.
#[derive(Debug)]
pub struct TransformerEncoder {
    config: EncoderConfig,
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_embeddings: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

impl TransformerEncoder {
    /// Creates the parameters under `path` with HF names (`embeddings.…`, `encoder.layer.N.…`).
    /// They are zero (LayerNorm: weight one) until a file is loaded into them or they are
    /// initialised: a random draw here would only be overwritten, and for a 250,002-token
    /// vocabulary it costs half a second of every model load.
    pub fn new(path: &nn::Path<'_>, config: &EncoderConfig) -> Self {
        let h = config.hidden_size;
        let emb = path / "embeddings";
        let init = Init::Const(0.0);
        let word_embeddings = emb.sub("word_embeddings").var("weight", &[config.vocab_size, h], init);
        let position_embeddings =
            emb.sub("position_embeddings").var("weight", &[config.max_position_embeddings, h], init);
        let token_type_embeddings = emb.sub("token_type_embeddings").var("weight", &[config.type_vocab_size, h], init);
        let embedding_norm = LayerNorm::new(emb.sub("LayerNorm"), h, config.layer_norm_eps);
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let layer = path / "encoder" / "layer" / i;
                let attention = &layer / "attention";
                Layer {
                    query: Linear::new(&attention / "self" / "query", h, h),
                    key: Linear::new(&attention / "self" / "key", h, h),
                    value: Linear::new(&attention / "self" / "value", h, h),
                    attention_output: Linear::new(&attention / "output" / "dense", h, h),
                    attention_norm: LayerNorm::new(&attention / "output" / "LayerNorm", h, config.layer_norm_eps),
                    intermediate: Linear::new(&layer / "intermediate" / "dense", h, config.intermediate_size),
                    output: Linear::new(&layer / "output" / "dense", config.intermediate_size, h),
                    output_norm: LayerNorm::new(&layer / "output" / "LayerNorm", h, config.layer_norm_eps),
                }
            })
            .collect();
        Self {
            config: config.clone(),
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            embedding_norm,
            layers,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Position ids: 0..L for BERT; for XLM-R, `pad + cumsum(mask)` on tokens and `pad` on pads.
    fn position_ids(&self, input_ids: &Tensor) -> Tensor {
        let (batch, length) = input_ids.size2().unwrap_or((1, 1));
        match self.config.architecture() {
            Architecture::Bert => {
                Tensor::arange(length, (Kind::Int64, input_ids.device())).expand([batch, length], false)
            }
            Architecture::XlmRoberta => {
                let pad = self.config.pad_token_id;
                let mask = input_ids.ne(pad).to_kind(Kind::Int64);
                mask.cumsum(1, Kind::Int64) * &mask + pad
            }
        }
    }

    /// Last hidden states `[B, L, H]` of `input_ids` `[B, L]` with `attention_mask` `[B, L]`
    /// (1 = token, 0 = padding). Dropout applies only when `train` is true.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        self.forward_cut(input_ids, attention_mask, train, None)
    }

    /// [`TransformerEncoder::forward`], with the graph cut in front of every layer when `cuts`
    /// is given: one [`GraphCut`] per layer is appended, in layer order.
    pub fn forward_cut(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
        cuts: Option<&mut Vec<GraphCut>>,
    ) -> Tensor {
        self.pass(input_ids, attention_mask, train, cuts, None)
    }

    /// The weights laid out for Rosetta's fp32 linear kernel ([`crate::kernels::cpu_gemm`]), for
    /// [`TransformerEncoder::forward_inference`] over many batches; `None` where the kernel does
    /// not apply (weights not f32 on the CPU, or a CPU without AVX-512). A copy: later changes
    /// to the weights do not reach it.
    pub fn inference_weights(&self) -> Option<InferenceWeights> {
        self.layers.iter().map(PackedLayer::new).collect::<Option<Vec<_>>>().map(InferenceWeights)
    }

    /// [`TransformerEncoder::forward`] for inference (no dropout) with the linear layers' weights
    /// from `weights` (made by [`TransformerEncoder::inference_weights`] of this encoder, with
    /// its weights as they are now), instead of laying them out again in this pass.
    pub fn forward_inference(&self, input_ids: &Tensor, attention_mask: &Tensor, weights: &InferenceWeights) -> Tensor {
        self.pass(input_ids, attention_mask, false, None, Some(weights))
    }

    /// The forward pass: `weights` (inference only) replaces the per-pass layout of the
    /// linear layers' weights.
    fn pass(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
        mut cuts: Option<&mut Vec<GraphCut>>,
        weights: Option<&InferenceWeights>,
    ) -> Tensor {
        let c = &self.config;
        let (batch, length) = input_ids.size2().unwrap_or((1, 1));
        let positions = self.position_ids(input_ids);
        let token_types = Tensor::zeros([batch, length], (Kind::Int64, input_ids.device()));
        let embeddings = Tensor::embedding(&self.word_embeddings, input_ids, -1, false, false)
            + Tensor::embedding(&self.position_embeddings, &positions, -1, false, false)
            + Tensor::embedding(&self.token_type_embeddings, &token_types, -1, false, false);
        let mut hidden = dropout(&self.embedding_norm.forward(&embeddings), c.hidden_dropout_prob, train);
        let heads = c.num_attention_heads;
        let head_width = c.hidden_size / heads;
        // [B, 1, 1, L] boolean: true where a key may be attended to.
        let keep = attention_mask.ne(0).view([batch, 1, 1, length]);
        let attention_dropout = if train { c.attention_probs_dropout_prob } else { 0.0 };
        // bf16 inference on CPUs with AVX-512 BF16 and no AMX, and fp32 inference on CPUs
        // with AVX-512: Rosetta's attention kernel, with the mask read out once per pass. Never in training, not even in a pass without
        // a graph (GradCache's first pass), so that both passes of a step compute alike.
        let kernel_keep = (!train && crate::kernels::cpu_attention::applies_to(&hidden))
            .then(|| crate::kernels::cpu_attention::keep_bytes(attention_mask))
            .flatten();
        // fp32 inference on CPUs with AVX-512: Rosetta's linear kernel, with the caller's
        // weights, or else the weights laid out layer by layer in this pass.
        let pack = !train && crate::kernels::cpu_gemm::applies_to(&hidden);
        let given = weights.filter(|w| pack && w.0.len() == self.layers.len());
        for (index, layer) in self.layers.iter().enumerate() {
            if let Some(cuts) = cuts.as_deref_mut() {
                let input = hidden.detach().set_requires_grad(true);
                cuts.push(GraphCut { output: std::mem::replace(&mut hidden, input.shallow_clone()), input });
            }
            let own = (pack && given.is_none()).then(|| PackedLayer::new(layer)).flatten();
            let packed = given.map(|w| &w.0[index]).or(own.as_ref());
            // One GEMM for the query, key and value projections: `[B, L, 3H]`, viewed as
            // `[B, L, 3, heads, head]` (4% of an encoding pass on e5-small's shape), and
            // permuted to `[3, B, heads, L, head]` for libtorch's kernel.
            let qkv = packed
                .and_then(|p| p.qkv.forward(&hidden, None))
                .unwrap_or_else(|| {
                    hidden.linear(
                        &Tensor::cat(&[&layer.query.weight, &layer.key.weight, &layer.value.weight], 0),
                        Some(&Tensor::cat(&[&layer.query.bias, &layer.key.bias, &layer.value.bias], 0)),
                    )
                })
                .view([batch, length, 3, heads, head_width]);
            let kernel_context =
                kernel_keep.as_ref().and_then(|keep| crate::kernels::cpu_attention::context(&qkv, keep));
            let context = kernel_context.unwrap_or_else(|| {
                let qkv = qkv.permute([2, 0, 3, 1, 4]);
                let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
                attention(&q, &k, &v, &keep, attention_dropout).transpose(1, 2).reshape([batch, length, c.hidden_size])
            });
            let projection = (&layer.attention_output, packed.map(|p| &p.attention_output));
            hidden = layer.attention_norm.forward(&self.residual(projection, &context, &hidden, train));
            hidden = self.feed_forward(layer, packed, &hidden, train);
        }
        hidden
    }

    /// `residual + dropout(projection(x))`. Inference sums the residual inside the GEMM
    /// (the packed kernel's, or [`Linear::forward_onto`]); training keeps the separate add
    /// (dropout comes between, and autocast does not cover in-place products).
    fn residual(
        &self,
        (projection, packed): (&Linear, Option<&PackedLinear>),
        x: &Tensor,
        residual: &Tensor,
        train: bool,
    ) -> Tensor {
        if train {
            return dropout(&projection.forward(x), self.config.hidden_dropout_prob, true) + residual;
        }
        packed.and_then(|p| p.forward(x, Some(residual))).unwrap_or_else(|| projection.forward_onto(x, residual))
    }

    /// The feed-forward block with its residual and LayerNorm, over `[B, L, H]`. A pass of more
    /// than 1.5 × [`FEED_FORWARD_ROWS`] tokens goes through in equal row chunks of at most that
    /// many: each chunk's `[rows, intermediate]` activation stays in the CPU's cache (measured on
    /// e5-small's shape, 32 × 96 tokens: 57.6 → 47.6 ms per layer, the same values).
    fn feed_forward(&self, layer: &Layer, packed: Option<&PackedLayer>, hidden: &Tensor, train: bool) -> Tensor {
        let block = |x: &Tensor| {
            let mut inner =
                packed.and_then(|p| p.intermediate.forward(x, None)).unwrap_or_else(|| layer.intermediate.forward(x));
            // Without a graph the product is this pass's own: GELU in place, with no second
            // `[rows, intermediate]` buffer to allocate and fault in (the same values).
            let inner = if inner.requires_grad() { inner.gelu("none") } else { inner.gelu_("none") };
            let projection = (&layer.output, packed.map(|p| &p.output));
            layer.output_norm.forward(&self.residual(projection, &inner, x, train))
        };
        let size = hidden.size();
        let rows: i64 = size[..size.len() - 1].iter().product();
        if rows * 2 <= FEED_FORWARD_ROWS * 3 {
            return block(hidden);
        }
        let width = self.config.hidden_size;
        let chunks = (rows + FEED_FORWARD_ROWS - 1) / FEED_FORWARD_ROWS;
        let pieces: Vec<Tensor> = hidden.reshape([rows, width]).chunk(chunks, 0).iter().map(block).collect();
        Tensor::cat(&pieces, 0).view(size.as_slice())
    }
}

/// Scaled dot-product attention of `q`, `k`, `v` `[B, heads, L, head]` over the keys where
/// `keep` `[B, 1, 1, L]` is true, with dropout `p` on the attention probabilities. Without
/// dropout, or on CUDA, libtorch's fused kernel; with dropout on the CPU (where libtorch falls
/// back to the same unfused products and a one-thread mask), the products written out with
/// [`dropout`]'s mask.
fn attention(q: &Tensor, k: &Tensor, v: &Tensor, keep: &Tensor, p: f64) -> Tensor {
    if p <= 0.0 || q.device() != tch::Device::Cpu {
        return Tensor::scaled_dot_product_attention(q, k, v, Some(keep), p, false, None, false);
    }
    let head_width = q.size().last().copied().unwrap_or(1) as f64;
    // Scaled before the product: `[B, heads, L, head]` is smaller than the `[B, heads, L, L]` scores.
    let scores = (q * (1.0 / head_width.sqrt())).matmul(&k.transpose(-2, -1));
    // Every sequence has a real token (the tokenizer's first), so no row is masked whole.
    let scores = scores.masked_fill(&keep.logical_not(), f64::NEG_INFINITY);
    let probabilities = scores.softmax(-1, scores.kind());
    dropout(&probabilities, p, true).matmul(v)
}

/// Most token rows per feed-forward pass; a longer pass is cut into chunks (see the encoder's
/// `feed_forward`).
pub const FEED_FORWARD_ROWS: i64 = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1-layer encoder (hidden 16) with random parameters.
    fn random_encoder(vs: &nn::VarStore) -> TransformerEncoder {
        let mut config = EncoderConfig::small(50, 0, 512);
        (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) =
            (16, 1, 2, 32);
        let encoder = TransformerEncoder::new(&vs.root(), &config);
        tch::manual_seed(7);
        tch::no_grad(|| {
            for (_, mut var) in vs.variables() {
                let _ = var.normal_(0.0, 0.5);
            }
        });
        encoder
    }

    #[test]
    fn a_pass_cut_into_feed_forward_chunks_gives_each_sequence_its_own_pass_values() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let encoder = random_encoder(&vs);
        // 4 × 400 = 1,600 token rows: more than 1.5 × FEED_FORWARD_ROWS, so cut in two chunks;
        // one sequence alone (400 rows) goes through in one piece.
        let (batch, length) = (4, 400);
        let ids = Tensor::randint_low(1, 50, [batch, length], (Kind::Int64, tch::Device::Cpu));
        let mask = Tensor::ones([batch, length], (Kind::Int64, tch::Device::Cpu));
        let _ = mask.get(1).narrow(0, 300, 100).zero_();
        let together = tch::no_grad(|| encoder.forward(&ids, &mask, false));
        for row in 0..batch {
            let alone = tch::no_grad(|| encoder.forward(&ids.narrow(0, row, 1), &mask.narrow(0, row, 1), false));
            let diff = (together.narrow(0, row, 1) - alone).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "sequence {row}: {diff}");
        }
    }

    #[test]
    fn inference_through_the_linear_kernel_matches_libtorchs_linear_layers() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let encoder = random_encoder(&vs);
        let ids = Tensor::randint_low(1, 50, [3, 20], (Kind::Int64, tch::Device::Cpu));
        let mask = Tensor::ones([3, 20], (Kind::Int64, tch::Device::Cpu));
        let _ = mask.get(2).narrow(0, 7, 13).zero_();
        // With the graph recorded the kernel does not apply: libtorch's linear layers.
        let libtorch = encoder.forward(&ids, &mask, false).detach();
        let per_pass = tch::no_grad(|| encoder.forward(&ids, &mask, false));
        let Some(weights) = encoder.inference_weights() else {
            eprintln!("SKIPPED: no AVX-512 on this CPU (inference uses libtorch's linear layers)");
            return;
        };
        let given = tch::no_grad(|| encoder.forward_inference(&ids, &mask, &weights));
        assert!(given.equal(&per_pass), "weights laid out once differ from weights laid out per pass");
        let difference = (&given - &libtorch).abs().max().double_value(&[]);
        assert!(difference < 1e-5, "the kernel's pass differs from libtorch's by {difference}");
        // A copy: weights changed afterwards reach a new layout, not the old one.
        tch::no_grad(|| {
            let _ = encoder.layers[0].intermediate.weight.shallow_clone().g_mul_scalar_(2.0);
        });
        let changed = tch::no_grad(|| encoder.forward(&ids, &mask, false));
        assert!((&changed - &per_pass).abs().max().double_value(&[]) > 1e-3);
        assert!(tch::no_grad(|| encoder.forward_inference(&ids, &mask, &weights)).equal(&given));
    }

    #[test]
    fn the_written_out_attention_of_cpu_training_equals_the_fused_kernel() {
        let (q, k, v) = (
            Tensor::randn([3, 4, 9, 8], (Kind::Double, tch::Device::Cpu)),
            Tensor::randn([3, 4, 9, 8], (Kind::Double, tch::Device::Cpu)),
            Tensor::randn([3, 4, 9, 8], (Kind::Double, tch::Device::Cpu)),
        );
        let lengths = Tensor::from_slice(&[9i64, 5, 1]);
        let keep = Tensor::arange(9, (Kind::Int64, tch::Device::Cpu)).unsqueeze(0).lt_tensor(&lengths.unsqueeze(1));
        let keep = keep.view([3, 1, 1, 9]);
        let fused = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&keep), 0.0, false, None, false);
        // p = 1e-12 drops an element with probability 2^-32: the products alone are compared.
        let written = attention(&q, &k, &v, &keep, 1e-12);
        let difference = (&written - &fused).abs().max().double_value(&[]);
        assert!(difference < 1e-9, "written-out attention differs by {difference}");
        // With real dropout some probabilities are zeroed: the output changes.
        let dropped = attention(&q, &k, &v, &keep, 0.5);
        assert!((&dropped - &fused).abs().max().double_value(&[]) > 1e-3);
    }

    #[test]
    fn a_product_added_onto_its_residual_equals_the_layer_plus_the_residual() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let layer = Linear::new(vs.root(), 24, 40);
        tch::manual_seed(3);
        tch::no_grad(|| {
            let _ = layer.weight.shallow_clone().normal_(0.0, 0.5);
            let _ = layer.bias.shallow_clone().normal_(0.0, 0.5);
        });
        let x = Tensor::randn([3, 5, 24], (Kind::Float, tch::Device::Cpu));
        let residual = Tensor::randn([3, 5, 40], (Kind::Float, tch::Device::Cpu));
        let fused = tch::no_grad(|| layer.forward_onto(&x, &residual));
        assert_eq!(fused.size(), [3, 5, 40]);
        let separate = tch::no_grad(|| layer.forward(&x) + &residual);
        let difference = (&fused - &separate).abs().max().double_value(&[]);
        assert!(difference < 1e-5, "{difference}");
        // Mixed kinds take the separate add (the in-place product needs one kind).
        let mixed = tch::no_grad(|| layer.forward_onto(&x, &residual.to_kind(Kind::Double)));
        assert_eq!(mixed.kind(), Kind::Double);
    }

    #[test]
    fn new_parameters_are_zero_until_loaded_and_layer_norms_are_one() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _ = TransformerEncoder::new(&vs.root(), &EncoderConfig::small(50, 0, 64));
        for (name, var) in vs.variables() {
            let expected = if name.contains("LayerNorm") && name.ends_with(".weight") { 1.0 } else { 0.0 };
            let worst = (var - expected).abs().max().double_value(&[]);
            assert_eq!(worst, 0.0, "{name}");
        }
    }
}
