//! Which vector width the CPU loops (AdamW, the gradient norm, dropout masks) run in: x86-64's
//! baseline is SSE2 (4 f32 lanes), so [`widest!`] also compiles a loop for AVX2 and AVX-512 and
//! runs the widest the CPU has. The width never changes a result: each element's operations and
//! their order are the same (Rust never fuses a multiply and an add on its own).

/// A vector width the CPU supports, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

/// Evaluates `$body` compiled for the widest level this CPU has. The body becomes an
/// `#[inline(always)]` closure: a plain one is called from every level's branch of
/// [`dispatch`], so LLVM may compile it once, outside them, at x86-64's baseline (AdamW's
/// update ran in SSE2 that way until 2026-12-04). The functions the body calls need
/// `#[inline(always)]` too.
macro_rules! widest {
    ($body:expr) => {
        $crate::kernels::simd::dispatch(
            $crate::kernels::simd::level(),
            #[inline(always)]
            || $body,
        )
    };
}

/// Evaluates `$body` compiled for `$level`, or for the widest level this CPU has if that is
/// narrower (tests compare the levels with it); inlined as in [`widest!`].
#[cfg(test)]
macro_rules! at {
    ($level:expr, $body:expr) => {
        $crate::kernels::simd::dispatch(
            $level,
            #[inline(always)]
            || $body,
        )
    };
}

#[cfg(test)]
pub(crate) use at;
pub(crate) use widest;

/// Runs `work` compiled for `wanted`, or for the widest level this CPU has if that is narrower.
/// Call it through [`widest!`] (or `at!` in tests), which makes `work` inline.
pub(crate) fn dispatch<R>(wanted: Level, work: impl FnOnce() -> R) -> R {
    match wanted.min(level()) {
        // SAFETY: the CPU has the level's features (checked by `level`).
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { avx512(work) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { avx2(work) },
        _ => work(),
    }
}

/// `work` compiled for AVX-512 F and DQ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn avx512<R>(work: impl FnOnce() -> R) -> R {
    work()
}

/// `work` compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<R>(work: impl FnOnce() -> R) -> R {
    work()
}
