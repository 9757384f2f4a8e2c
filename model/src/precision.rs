//! The number format on a libtorch device: whether an encoder runs in bf16 there and the
//! autocast device it then uses (the format itself, [`Precision`], is configuration).

pub use rosetta_worker_config::precision::Precision;

use crate::autocast::AutocastDevice;
use crate::device_spec;

/// [`Precision`] on a libtorch device.
pub trait PrecisionOnDevice {
    /// Whether the encoder runs in bf16 on `device`.
    fn bf16_on_device(self, device: tch::Device) -> bool;
    /// The autocast device for training on `device` in this precision (`None`: fp32).
    fn autocast_on(self, device: tch::Device) -> Option<AutocastDevice>;
}

impl PrecisionOnDevice for Precision {
    fn bf16_on_device(self, device: tch::Device) -> bool {
        self.bf16_on(device_spec(device))
    }

    fn autocast_on(self, device: tch::Device) -> Option<AutocastDevice> {
        self.bf16_on_device(device).then(|| AutocastDevice::of(device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn autocast_follows_the_precision_on_each_device() {
        assert_eq!(Precision::Auto.autocast_on(Device::Cpu), None);
        assert_eq!(Precision::Auto.autocast_on(Device::Cuda(0)), Some(AutocastDevice::Cuda));
        assert_eq!(Precision::Bf16.autocast_on(Device::Cpu), Some(AutocastDevice::Cpu));
        assert_eq!(Precision::Fp32.autocast_on(Device::Cuda(1)), None);
    }
}
