//! bf16 autocast through libtorch's current API.
//!
//! tch 0.24's `tch::autocast` goes through `at::autocast::is_enabled`/`set_enabled`, which
//! libtorch 2.11 deprecates with a warning on every call (a thousand lines of stderr in a
//! 200-step run), and leaves the CUDA autocast type at its default, float16, which would need
//! loss scaling. Rosetta calls the exported, non-deprecated functions instead and asks for
//! bfloat16. They are C++ functions taking and returning one-byte enums and cannot throw, so the
//! C calling convention carries them; the names are those of the pinned libtorch.

/// `c10::DeviceType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum AutocastDevice {
    /// `c10::DeviceType::CPU`.
    Cpu = 0,
    /// `c10::DeviceType::CUDA`.
    Cuda = 1,
}

impl AutocastDevice {
    /// The autocast device of a tensor device.
    pub fn of(device: tch::Device) -> Self {
        match device {
            tch::Device::Cuda(_) => Self::Cuda,
            _ => Self::Cpu,
        }
    }
}

/// `c10::ScalarType::BFloat16`.
const BFLOAT16: i8 = 15;

#[link(name = "torch_cpu")]
unsafe extern "C" {
    #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
    fn is_autocast_enabled(device: AutocastDevice) -> bool;
    #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
    fn set_autocast_enabled(device: AutocastDevice, enabled: bool);
    #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
    fn get_autocast_dtype(device: AutocastDevice) -> i8;
    #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
    fn set_autocast_dtype(device: AutocastDevice, dtype: i8);
    #[link_name = "_ZN2at8autocast17increment_nestingEv"]
    fn increment_nesting() -> i32;
    #[link_name = "_ZN2at8autocast17decrement_nestingEv"]
    fn decrement_nesting() -> i32;
    #[link_name = "_ZN2at8autocast11clear_cacheEv"]
    fn clear_cache();
}

/// Whether autocast is on for `device` on this thread.
pub fn autocast_enabled(device: AutocastDevice) -> bool {
    // SAFETY: reads a thread-local flag.
    unsafe { is_autocast_enabled(device) }
}

/// Restores the thread's autocast state when `f` returns or unwinds.
struct Restore {
    device: AutocastDevice,
    enabled: bool,
    dtype: i8,
}

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: thread-local autocast state, restored to what it was before.
        unsafe {
            if decrement_nesting() == 0 {
                clear_cache();
            }
            set_autocast_enabled(self.device, self.enabled);
            set_autocast_dtype(self.device, self.dtype);
        }
    }
}

/// Runs `f` with bf16 autocast on `device`'s operations (matrix products in bf16, reductions and
/// normalisations in f32), then restores the previous state.
pub fn with_bf16_autocast<T>(device: AutocastDevice, f: impl FnOnce() -> T) -> T {
    // SAFETY: thread-local autocast state; `Restore` puts it back.
    let _restore = unsafe {
        let restore = Restore { device, enabled: is_autocast_enabled(device), dtype: get_autocast_dtype(device) };
        set_autocast_dtype(device, BFLOAT16);
        set_autocast_enabled(device, true);
        increment_nesting();
        restore
    };
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn bf16_autocast_casts_matrix_products_and_restores_the_state() {
        let a = Tensor::randn([8, 4], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
        assert!(!autocast_enabled(AutocastDevice::Cpu));
        let product = with_bf16_autocast(AutocastDevice::Cpu, || {
            assert!(autocast_enabled(AutocastDevice::Cpu));
            a.matmul(&b)
        });
        assert_eq!(product.kind(), Kind::BFloat16);
        let expected = a.matmul(&b);
        assert_eq!(expected.kind(), Kind::Float);
        assert!(!autocast_enabled(AutocastDevice::Cpu));
        let difference = (product.to_kind(Kind::Float) - expected).abs().max().double_value(&[]);
        assert!(difference < 0.1, "{difference}");
    }

    #[test]
    fn cuda_autocast_state_is_set_and_restored_without_a_gpu() {
        // SAFETY: reads the thread-local default.
        let default_dtype = unsafe { get_autocast_dtype(AutocastDevice::Cuda) };
        with_bf16_autocast(AutocastDevice::Cuda, || {
            assert!(autocast_enabled(AutocastDevice::Cuda));
            // SAFETY: as above.
            assert_eq!(unsafe { get_autocast_dtype(AutocastDevice::Cuda) }, BFLOAT16);
        });
        assert!(!autocast_enabled(AutocastDevice::Cuda));
        // SAFETY: as above.
        assert_eq!(unsafe { get_autocast_dtype(AutocastDevice::Cuda) }, default_dtype);
    }
}
