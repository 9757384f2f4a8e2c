//! Device selection: `cpu` or `cuda:N`, with a clear error when CUDA is not there, and
//! libtorch's CUDA backend loaded on demand.
//!
//! tch names `libtorch_cuda.so` on the link line, but the linker drops it (nothing of it is
//! called by name), so a binary built against a CUDA libtorch would see no GPU. Rosetta loads
//! the library itself, from beside the `libtorch_cpu.so` the process runs on, the first time a
//! CUDA device is asked for; on a CPU-only libtorch there is nothing to load.

use std::path::PathBuf;
use std::sync::OnceLock;

use rosetta_worker_config::DeviceSpec;
use tch::Device;

use crate::error::{CollectiveError, Result};

/// Parses `cpu`, `cuda` (= `cuda:0`) or `cuda:N` and opens it ([`open`]).
pub fn parse_device(text: &str) -> Result<Device> {
    open(text.parse::<DeviceSpec>().map_err(|message| CollectiveError::invalid("device", message))?)
}

/// Opens a configured device, checking (on this machine) that a CUDA device exists.
pub fn open(spec: DeviceSpec) -> Result<Device> {
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(index) => {
            let available = cuda_device_count();
            if index >= available {
                return Err(CollectiveError::invalid(
                    "device",
                    format!("{spec}: this machine has {available} CUDA device(s) visible to libtorch"),
                ));
            }
            Ok(Device::Cuda(index))
        }
    }
}

/// Where the shared library with file name `file_name` that this process has mapped lives
/// (read from `/proc/self/maps`).
pub fn mapped_library(file_name: &str) -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| std::path::Path::new(path).file_name().is_some_and(|name| name == file_name))
        .map(PathBuf::from)
}

/// Directory of the libtorch shared libraries this process runs on.
pub fn libtorch_dir() -> Option<PathBuf> {
    mapped_library("libtorch_cpu.so").and_then(|path| path.parent().map(PathBuf::from))
}

/// How libtorch's CUDA backend was loaded: the library's path, or why it was not.
pub fn cuda_backend() -> &'static std::result::Result<PathBuf, String> {
    static BACKEND: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BACKEND.get_or_init(|| {
        let candidate = libtorch_dir()
            .map(|dir| dir.join("libtorch_cuda.so"))
            .filter(|path| path.exists())
            .unwrap_or_else(|| PathBuf::from("libtorch_cuda.so"));
        let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
        // SAFETY: libtorch's own CUDA library; its initialisers register the CUDA backend.
        match unsafe { libloading::os::unix::Library::open(Some(&candidate), flags) } {
            Ok(library) => {
                // Kept for the life of the process: libtorch holds pointers into it.
                std::mem::forget(library);
                tracing::debug!(path = %candidate.display(), "loaded libtorch's cuda backend");
                Ok(candidate)
            }
            Err(e) => Err(format!("{}: {e}", candidate.display())),
        }
    })
}

/// Whether libtorch sees a CUDA device, after loading its CUDA backend if there is one.
/// Call this (not `tch::Cuda::is_available`) first: libtorch caches its first answer.
pub fn cuda_available() -> bool {
    cuda_backend().is_ok() && tch::Cuda::is_available()
}

/// CUDA devices libtorch sees (0 without a GPU or a CUDA libtorch).
pub fn cuda_device_count() -> usize {
    if cuda_available() { tch::Cuda::device_count().max(0) as usize } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_refuses_garbage_or_missing_gpus() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert!(parse_device("gpu").unwrap_err().to_string().contains("expected cpu, cuda or cuda:N"));
        assert!(parse_device("cuda:x").is_err());
        if !cuda_available() {
            let err = parse_device("cuda:0").unwrap_err().to_string();
            assert!(err.contains("0 CUDA device(s)"), "{err}");
        }
    }
}

#[cfg(test)]
mod backend_tests {
    use super::*;

    #[test]
    fn libtorch_is_found_in_the_process_maps() {
        let _ = tch::Tensor::zeros([1], (tch::Kind::Float, Device::Cpu));
        let dir = libtorch_dir().expect("libtorch_cpu.so is mapped");
        assert!(dir.join("libtorch_cpu.so").exists(), "{}", dir.display());
    }

    #[test]
    fn the_cuda_backend_loads_when_libtorch_has_one() {
        let dir = libtorch_dir().expect("libtorch_cpu.so is mapped");
        match cuda_backend() {
            Ok(path) => assert_eq!(path, &dir.join("libtorch_cuda.so")),
            Err(why) => assert!(!dir.join("libtorch_cuda.so").exists(), "{why}"),
        }
        // Without a GPU the answer is a clean "none", never a crash.
        assert_eq!(cuda_device_count() > 0, cuda_available());
    }
}
