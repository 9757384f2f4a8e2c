//! The number format an encoder computes in: `rosetta eval --precision` and `training.precision`.

use serde::{Deserialize, Serialize};

use crate::autocast::AutocastDevice;

/// Number format of the encoder's activations (and, in evaluation, of its weights).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bf16 on CUDA, fp32 on CPU (so that CPU results do not depend on the CPU's bf16 units).
    #[default]
    Auto,
    /// 32-bit floats.
    Fp32,
    /// bfloat16 (on CPUs with AMX, `amx_bf16` in `/proc/cpuinfo`, about twice as fast as fp32).
    Bf16,
}

impl Precision {
    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
        }
    }

    /// Whether the encoder runs in bf16 on `device`.
    pub fn bf16_on(self, device: tch::Device) -> bool {
        match self {
            Self::Auto => matches!(device, tch::Device::Cuda(_)),
            Self::Fp32 => false,
            Self::Bf16 => true,
        }
    }

    /// The autocast device for training on `device` in this precision (`None`: fp32).
    pub fn autocast_on(self, device: tch::Device) -> Option<AutocastDevice> {
        self.bf16_on(device).then(|| AutocastDevice::of(device))
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "auto" => Ok(Self::Auto),
            "fp32" => Ok(Self::Fp32),
            "bf16" => Ok(Self::Bf16),
            other => Err(format!("{other:?}: expected auto, fp32 or bf16")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn auto_is_bf16_on_cuda_only_and_names_round_trip() {
        assert_eq!(Precision::Auto.autocast_on(Device::Cpu), None);
        assert_eq!(Precision::Auto.autocast_on(Device::Cuda(0)), Some(AutocastDevice::Cuda));
        assert_eq!(Precision::Bf16.autocast_on(Device::Cpu), Some(AutocastDevice::Cpu));
        assert_eq!(Precision::Fp32.autocast_on(Device::Cuda(1)), None);
        for precision in [Precision::Auto, Precision::Fp32, Precision::Bf16] {
            assert_eq!(precision.name().parse::<Precision>(), Ok(precision));
            let yaml = serde_json::to_string(&precision).unwrap();
            assert_eq!(yaml, format!("\"{}\"", precision.name()));
        }
        assert!("fp16".parse::<Precision>().unwrap_err().contains("expected auto, fp32 or bf16"));
    }
}
