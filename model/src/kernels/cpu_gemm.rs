//! fp32 linear layers for inference on CPUs with AVX-512: `x Wᵀ + b (+ residual)` in one pass.
//! On e5-small's encoder shape the linear layers are 85–90% of an fp32 encoding pass, and MKL's
//! SGEMM (the `zen` path libtorch takes on AMD) reaches 94–99 GFLOPS per core there, while the
//! CPU's FMA units allow 117 (a loop of independent FMAs on the Zen 4 machine). Here the weight
//! is laid out once per corpus (or per pass) in panels of 32 output columns (`[panel][k][32]`),
//! `x`'s rows are read in place in blocks that fit in L2, and a 12 × 32 register tile
//! accumulates the whole reduction in FMAs before the bias and the residual are added and the
//! tile is stored. Inference only (no graph); every other case takes libtorch's `linear`.
//! Splitting the reduction into runs of 128 or 384 inputs, so that a panel's run stays in L1
//! over a block's tiles, was measured no faster (2026-12-05, `make bench-gemm`).

use tch::{Device, Kind, Tensor};

use crate::kernels::parallel::{SharedOut, cpu_has_avx512};

/// Output columns per weight panel: two 16-lane vectors.
const PANEL: usize = 32;
/// Rows per register tile (12 × 2 accumulators, 2 weight vectors and a broadcast: 27 of the
/// 32 vector registers).
const TILE: usize = 12;
/// Bytes of `x`'s packed rows kept in the L2 cache per block, beside one weight panel.
const BLOCK_BYTES: usize = 448 * 1024;

/// 16 f32 lanes on a 64-byte boundary, so that no vector load splits a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Lanes([f32; 16]);

/// A weight `[outputs, inputs]` and its bias laid out for the kernel: panels of 32 output
/// columns, each `[inputs][32]` (the columns past `outputs` zero).
pub struct PackedLinear {
    panels: Vec<Lanes>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl std::fmt::Debug for PackedLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedLinear").field("inputs", &self.inputs).field("outputs", &self.outputs).finish()
    }
}

/// Whether the kernel can take linear layers over `x`'s kind and device on this CPU: f32 on
/// the CPU, AVX-512 F, no graph being recorded, and no CPU autocast (which would run
/// libtorch's linear in bf16).
pub fn applies_to(x: &Tensor) -> bool {
    x.device() == Device::Cpu
        && x.kind() == Kind::Float
        && !x.requires_grad()
        && cpu_has_avx512()
        && !crate::autocast::autocast_enabled(crate::autocast::AutocastDevice::of(Device::Cpu))
}

impl PackedLinear {
    /// The f32 CPU weights `parts` (each `[outputs_i, inputs]`, stacked along the outputs, as
    /// the fused QKV projection stacks its three) and their biases, copied (a later change to
    /// them does not reach this copy), or `None` without AVX-512, for another kind or device,
    /// or where the shapes do not match.
    pub fn new(parts: &[(&Tensor, &Tensor)]) -> Option<Self> {
        let (first, _) = parts.first()?;
        let inputs = usize::try_from(*first.size().get(1)?).ok().filter(|&k| k > 0)?;
        let mut bias = Vec::new();
        for (weight, part_bias) in parts {
            let size = weight.size();
            let usable = cpu_has_avx512()
                && weight.device() == Device::Cpu
                && weight.kind() == Kind::Float
                && size.len() == 2
                && size[1] as usize == inputs
                && part_bias.size() == [size[0]]
                && part_bias.kind() == Kind::Float;
            if !usable {
                return None;
            }
            bias.extend(Vec::<f32>::try_from(part_bias.contiguous()).ok()?);
        }
        let outputs = bias.len();
        let mut panels = vec![Lanes([0.0; 16]); outputs.div_ceil(PANEL) * inputs * 2];
        let mut column = 0;
        for (weight, _) in parts {
            let weight = weight.contiguous();
            let rows = weight.size()[0] as usize;
            // SAFETY: a contiguous f32 CPU tensor of `rows × inputs` elements (checked above),
            // alive for this loop.
            let values = unsafe { std::slice::from_raw_parts(weight.data_ptr() as *const f32, rows * inputs) };
            for row in values.chunks_exact(inputs) {
                let (panel, lane) = (column / PANEL, column % PANEL);
                for (k, &w) in row.iter().enumerate() {
                    panels[(panel * inputs + k) * 2 + lane / 16].0[lane % 16] = w;
                }
                column += 1;
            }
        }
        Some(Self { panels, bias, inputs, outputs })
    }

    /// `x Wᵀ + b`, plus `residual` (of the output's shape) where given, for `x` `[.., inputs]`;
    /// `None` where the kernel does not apply (see [`applies_to`]) or the shapes do not match.
    pub fn forward(&self, x: &Tensor, residual: Option<&Tensor>) -> Option<Tensor> {
        let size = x.size();
        if !applies_to(x) || size.last().map(|&k| k as usize) != Some(self.inputs) {
            return None;
        }
        let rows = x.numel() / self.inputs;
        let mut out_size = size.clone();
        *out_size.last_mut()? = self.outputs as i64;
        let x = x.contiguous();
        let residual = match residual {
            Some(r) if r.size() != out_size || r.kind() != Kind::Float || r.device() != Device::Cpu => return None,
            Some(r) => Some(r.contiguous()),
            None => None,
        };
        let out = Tensor::empty(out_size.as_slice(), (Kind::Float, Device::Cpu));
        // SAFETY: `x` and `residual` are contiguous f32 CPU tensors of `rows × inputs` and
        // `rows × outputs` elements, alive for this call; `out` is a fresh contiguous tensor of
        // `rows × outputs` elements nobody else sees until it is returned.
        let input = unsafe { std::slice::from_raw_parts(x.data_ptr() as *const f32, rows * self.inputs) };
        let residual = residual
            .as_ref()
            .map(|r| unsafe { std::slice::from_raw_parts(r.data_ptr() as *const f32, rows * self.outputs) });
        let output = SharedOut(out.data_ptr().cast::<f32>());
        let block_rows = (BLOCK_BYTES / (4 * self.inputs) / TILE).max(1) * TILE;
        let blocks = rows.div_ceil(block_rows);
        let parts = crate::kernels::parallel::intra_op_threads().min(blocks);
        crate::kernels::parallel::for_parts(blocks, parts, |range| {
            for block in range {
                let first = block * block_rows;
                let count = block_rows.min(rows - first);
                // SAFETY: AVX-512 F is present (checked by `applies_to`); each block writes
                // only its own rows of the output, so the threads never write the same element.
                unsafe { self.block(input, residual, output.pointer(), first, count) };
            }
        });
        Some(out)
    }

    /// Rows `first..first + count` of the output: every panel against every tile of 12 rows
    /// (a tile past the last row repeats it, and its extra rows are not stored).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn block(&self, input: &[f32], residual: Option<&[f32]>, output: *mut f32, first: usize, count: usize) {
        let k = self.inputs;
        let tiles = count.div_ceil(TILE);
        for panel in 0..self.outputs.div_ceil(PANEL) {
            let column = panel * PANEL;
            let columns = PANEL.min(self.outputs - column);
            let weights = self.panels[panel * k * 2..].as_ptr().cast::<f32>();
            for tile in 0..tiles {
                let row = first + tile * TILE;
                let rows = TILE.min(count - tile * TILE);
                let x: [*const f32; TILE] = std::array::from_fn(|r| input[(row + r.min(rows - 1)) * k..].as_ptr());
                let target = Target {
                    // SAFETY: the tile's first element, inside `output` (see `forward`).
                    out: unsafe { output.add(row * self.outputs + column) },
                    residual: residual.map(|r| r[row * self.outputs + column..].as_ptr()),
                    stride: self.outputs,
                    rows,
                    columns,
                };
                // SAFETY: each of `x`'s rows holds `k` values, the panel `k × 32`; the target's
                // rows and columns lie inside `output` (and `residual`).
                unsafe { tile_product(x, weights, k, self.bias[column..].as_ptr(), target) };
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn block(&self, _: &[f32], _: Option<&[f32]>, _: *mut f32, _: usize, _: usize) {
        unreachable!("`forward` takes this kernel only on x86-64 with AVX-512")
    }
}

/// Where one register tile goes: `rows × columns` of the output (and of the residual), rows
/// `stride` elements apart.
struct Target {
    out: *mut f32,
    residual: Option<*const f32>,
    stride: usize,
    rows: usize,
    columns: usize,
}

/// One 12 × 32 tile: `Σ_k x[r][k] · w[k][c]` in FMAs, in order of `k`, then `+ bias[c]`
/// (`+ residual[r][c]`), stored for the target's rows and columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_product(x: [*const f32; TILE], w: *const f32, k: usize, bias: *const f32, target: Target) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; TILE];
    // The residual's and the output's lines of this tile are fetched while the products run:
    // the residual comes from the previous operation, far out of cache.
    for r in 0..target.rows {
        for half in 0..2 {
            let at = r * target.stride + half * 16;
            if let Some(residual) = target.residual {
                _mm_prefetch::<_MM_HINT_T0>(residual.wrapping_add(at).cast());
            }
            _mm_prefetch::<_MM_HINT_T0>(target.out.wrapping_add(at).cast::<i8>());
        }
    }
    // SAFETY: each of `x`'s rows holds `k` values and `w` `k × 32` (the caller's contract).
    unsafe {
        for kk in 0..k {
            let w0 = _mm512_load_ps(w.add(kk * PANEL));
            let w1 = _mm512_load_ps(w.add(kk * PANEL + 16));
            for (acc, x) in acc.iter_mut().zip(x) {
                let v = _mm512_set1_ps(*x.add(kk));
                acc[0] = _mm512_fmadd_ps(v, w0, acc[0]);
                acc[1] = _mm512_fmadd_ps(v, w1, acc[1]);
            }
        }
    }
    let mask = |lanes: usize| -> __mmask16 { if lanes >= 16 { 0xffff } else { (1u16 << lanes) - 1 } };
    let masks = [mask(target.columns), mask(target.columns.saturating_sub(16))];
    // SAFETY: the masked loads and stores touch only the target's columns of its rows, which
    // lie inside the bias, the residual and the output (the caller's contract).
    unsafe {
        let bias = [_mm512_maskz_loadu_ps(masks[0], bias), _mm512_maskz_loadu_ps(masks[1], bias.add(16))];
        for (r, acc) in acc.iter().enumerate().take(target.rows) {
            for half in 0..2 {
                let mut value = _mm512_add_ps(acc[half], bias[half]);
                if let Some(residual) = target.residual {
                    let at = residual.add(r * target.stride + half * 16);
                    value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(masks[half], at));
                }
                _mm512_mask_storeu_ps(target.out.add(r * target.stride + half * 16), masks[half], value);
            }
        }
    }
}

#[cfg(test)]
#[path = "cpu_gemm/tests.rs"]
mod tests;
