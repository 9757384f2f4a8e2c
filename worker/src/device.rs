//! Device selection: `cpu` or `cuda:N`, with a clear error when CUDA is not there.

use tch::Device;

use crate::error::{Result, WorkerError};

/// Parses `cpu`, `cuda` (= `cuda:0`) or `cuda:N`, checking that the CUDA device exists.
pub fn parse_device(text: &str) -> Result<Device> {
    let invalid = |message: String| WorkerError::invalid("device", message);
    match text {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let index = match text.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| invalid(format!("{text:?}: expected cpu, cuda or cuda:N")))?,
                None => return Err(invalid(format!("{text:?}: expected cpu, cuda or cuda:N"))),
            };
            let available = if tch::Cuda::is_available() { tch::Cuda::device_count() as usize } else { 0 };
            if index >= available {
                return Err(invalid(format!(
                    "{text}: this machine has {available} CUDA device(s) visible to libtorch"
                )));
            }
            Ok(Device::Cuda(index))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_refuses_garbage_or_missing_gpus() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert!(parse_device("gpu").unwrap_err().to_string().contains("expected cpu, cuda or cuda:N"));
        assert!(parse_device("cuda:x").is_err());
        if !tch::Cuda::is_available() {
            let err = parse_device("cuda:0").unwrap_err().to_string();
            assert!(err.contains("0 CUDA device(s)"), "{err}");
        }
    }
}
