//! The number format an encoder computes in: `rosetta eval --precision` and `training.precision`.

use serde::{Deserialize, Serialize};

use crate::device::DeviceSpec;

/// Number format of the encoder's activations (and, in evaluation, of its weights).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bf16 on CUDA, fp32 on CPU (so that CPU results do not depend on the CPU's bf16 units).
    #[default]
    Auto,
    /// 32-bit floats.
    Fp32,
    /// bfloat16 (on CPUs with AMX, `amx_bf16` in `/proc/cpuinfo`, about twice as fast as fp32;
    /// with `avx512_bf16` alone, as on AMD Zen 4, evaluation encodes about 1.7 times as fast).
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
    pub fn bf16_on(self, device: DeviceSpec) -> bool {
        match self {
            Self::Auto => device.is_cuda(),
            Self::Fp32 => false,
            Self::Bf16 => true,
        }
    }
}

impl Precision {
    /// Why this precision is likely slower than fp32 on `device`, if it is: bf16 on a CPU
    /// without bf16 matrix units, where libtorch's bf16 products run emulated (measured on such
    /// a machine: slower than fp32).
    pub fn slow_on(self, device: DeviceSpec) -> Option<String> {
        (device == DeviceSpec::Cpu && self.bf16_on(device) && cpu_has_bf16_units() == Some(false)).then(|| {
            "bf16 on a CPU without bf16 matrix units (neither amx_bf16 nor avx512_bf16 in /proc/cpuinfo): \
             expect it to be slower than fp32"
                .to_string()
        })
    }
}

/// Whether this machine's CPU has bf16 matrix units (`amx_bf16` or `avx512_bf16` among the
/// flags of `/proc/cpuinfo`); `None` where that file cannot be read.
pub fn cpu_has_bf16_units() -> Option<bool> {
    std::fs::read_to_string("/proc/cpuinfo").ok().map(|text| bf16_units_in(&text))
}

/// Whether a `/proc/cpuinfo` text lists a bf16 matrix unit among its flags.
fn bf16_units_in(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .any(|line| line.split_whitespace().any(|flag| flag == "amx_bf16" || flag == "avx512_bf16"))
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
    use DeviceSpec as Device;

    #[test]
    fn auto_is_bf16_on_cuda_only_and_names_round_trip() {
        assert!(!Precision::Auto.bf16_on(Device::Cpu));
        assert!(Precision::Auto.bf16_on(Device::Cuda(0)));
        assert!(Precision::Bf16.bf16_on(Device::Cpu));
        assert!(!Precision::Fp32.bf16_on(Device::Cuda(1)));
        for precision in [Precision::Auto, Precision::Fp32, Precision::Bf16] {
            assert_eq!(precision.name().parse::<Precision>(), Ok(precision));
            let yaml = serde_json::to_string(&precision).unwrap();
            assert_eq!(yaml, format!("\"{}\"", precision.name()));
        }
        assert!("fp16".parse::<Precision>().unwrap_err().contains("expected auto, fp32 or bf16"));
    }

    #[test]
    fn bf16_units_are_read_from_the_cpu_flags() {
        let flags = |list: &str| format!("processor\t: 0\nmodel name\t: x\nflags\t\t: fpu avx2 {list}\n\n");
        assert!(bf16_units_in(&flags("avx512f amx_bf16 amx_tile")));
        assert!(bf16_units_in(&flags("avx512_bf16")));
        assert!(!bf16_units_in(&flags("avx512f amx_tile")), "amx_tile alone is not a bf16 unit");
        assert!(!bf16_units_in("model name\t: amx_bf16\n"), "only the flags line counts");
        // Only bf16 on the CPU can warn; fp32 and CUDA never do.
        assert_eq!(Precision::Fp32.slow_on(Device::Cpu), None);
        assert_eq!(Precision::Auto.slow_on(Device::Cpu), None);
        assert_eq!(Precision::Bf16.slow_on(Device::Cuda(0)), None);
        let warned = Precision::Bf16.slow_on(Device::Cpu).is_some();
        assert_eq!(warned, cpu_has_bf16_units() == Some(false));
    }
}
