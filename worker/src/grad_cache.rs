//! GradCache-style chunked encoding (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch
//! Size under Memory Limited Setup"): the contrastive loss needs every embedding of the global
//! batch, but not every activation at once. Pass 1 encodes the batch in chunks of rows without
//! a graph; the loss over those embeddings (as leaves) is differentiated down to the embeddings
//! only; pass 2 encodes each chunk again with a graph and back-propagates the cached embedding
//! gradient through it. Only one chunk's activations are alive at a time, and the parameter
//! gradients are those of the unchunked step (to float rounding; dropout is replayed by seeding
//! each chunk's forward the same way in both passes).

use tch::{Kind, Tensor};

use crate::error::Result;
use rosetta_model::autocast::{AutocastDevice, with_bf16_autocast};
use rosetta_model::sentence::{SentenceEncoder, TokenBatch};

/// One chunk of rows of one batch, its padding trimmed to its own longest text.
struct Piece {
    batch: usize,
    start: i64,
    rows: TokenBatch,
}

fn pieces(batches: &[&TokenBatch], chunk_rows: usize) -> Vec<Piece> {
    let chunk = chunk_rows.max(1) as i64;
    let mut out = Vec::new();
    for (index, batch) in batches.iter().enumerate() {
        let total = batch.input_ids.size()[0];
        let mut start = 0;
        while start < total {
            let len = chunk.min(total - start);
            let mask = batch.attention_mask.narrow(0, start, len);
            let longest = mask.sum_dim_intlist(1, false, Kind::Int64).max().int64_value(&[]).max(1);
            let width = longest.min(mask.size()[1]);
            let rows = TokenBatch {
                input_ids: batch.input_ids.narrow(0, start, len).narrow(1, 0, width),
                attention_mask: mask.narrow(1, 0, width),
            };
            out.push(Piece { batch: index, start, rows });
            start += len;
        }
    }
    out
}

/// Encodes `batches` in chunks of `chunk_rows` rows, computes `loss_of` (given one `[rows,
/// width]` f32 embedding tensor per batch, in order; rows of an empty batch: 0) and leaves the
/// gradient of that loss in the model's parameters. Returns the loss.
pub fn cached_backward(
    model: &SentenceEncoder,
    batches: &[&TokenBatch],
    chunk_rows: usize,
    train: bool,
    autocast: Option<AutocastDevice>,
    loss_of: impl FnOnce(&[Tensor]) -> Result<Tensor>,
) -> Result<f64> {
    let device = model.var_store().device();
    let encode = |piece: &Piece| -> Tensor {
        match autocast {
            Some(on) => with_bf16_autocast(on, || model.embed(&piece.rows, train)).to_kind(Kind::Float),
            None => model.embed(&piece.rows, train),
        }
    };
    let pieces = pieces(batches, chunk_rows);
    // Each chunk's dropout is seeded from one draw of the step's generator, the same in both passes.
    let base = Tensor::randint(1 << 40, [1], (Kind::Int64, tch::Device::Cpu)).int64_value(&[0]);
    let mut encoded: Vec<Vec<Tensor>> = batches.iter().map(|_| Vec::new()).collect();
    tch::no_grad(|| {
        for (index, piece) in pieces.iter().enumerate() {
            tch::manual_seed(base + index as i64);
            encoded[piece.batch].push(encode(piece));
        }
    });
    let kind = if autocast.is_some() { Kind::Float } else { model.var_store().kind() };
    let width = model.embedding_width();
    let leaves: Vec<Tensor> = encoded
        .iter()
        .map(|parts| match parts.is_empty() {
            true => Tensor::zeros([0, width], (kind, device)),
            false => Tensor::cat(parts, 0).detach().set_requires_grad(true),
        })
        .collect();
    drop(encoded);
    let loss = loss_of(&leaves)?;
    loss.backward();
    let value = loss.double_value(&[]);
    for (index, piece) in pieces.iter().enumerate() {
        let grad = leaves[piece.batch].grad();
        if !grad.defined() {
            continue;
        }
        tch::manual_seed(base + index as i64);
        let embedded = encode(piece);
        let rows = embedded.size()[0];
        let upstream = grad.narrow(0, piece.start, rows);
        // d/d(embedded) of sum(embedded * g) is g: the backward continues from the cache.
        (&embedded * &upstream).sum(embedded.kind()).backward();
    }
    Ok(value)
}
