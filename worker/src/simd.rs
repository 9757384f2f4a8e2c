//! Which vector width the CPU loops (AdamW, the gradient norm) are run in: x86-64's baseline
//! is SSE2 (4 f32 lanes), so those loops also come compiled for AVX2 and AVX-512 and pick the
//! widest the CPU has at run time. The width never changes a result: each element's operations
//! and their order are the same (Rust never fuses a multiply and an add on its own).

/// A vector width the CPU supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// x86-64's baseline (SSE2), or any other architecture.
    Baseline,
    /// AVX2 (8 f32 lanes).
    Avx2,
    /// AVX-512 F and DQ (16 f32 lanes; DQ's `vpmullq` multiplies 64-bit lanes), as every
    /// AVX-512 server CPU since Skylake has.
    Avx512,
}

/// The widest level this CPU has (std caches the feature detection).
pub(crate) fn level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Level::Avx2;
        }
    }
    Level::Baseline
}
