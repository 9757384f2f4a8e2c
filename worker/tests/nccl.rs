//! The NCCL binding on a machine without a GPU: the pip wheel's library loads, reports its
//! version and makes unique ids (what rank 0 does before the coordinator shares the id); every
//! failure — missing library, wrong library, no CUDA device — is an error, not a panic.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rosetta_collective::nccl::{NcclCollective, NcclLibrary};
use tch::Device;

/// `libnccl.so.2` of the venv's `nvidia-nccl` wheel (installed with torch).
fn wheel_library() -> PathBuf {
    let out = std::process::Command::new(common::python())
        .args([
            "-c",
            "import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], 'lib', 'libnccl.so.2'))",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[test]
fn the_wheel_library_loads_and_makes_unique_ids() {
    let library = NcclLibrary::load(Some(&wheel_library())).unwrap();
    let version = library.version().unwrap();
    assert!(version >= 22000, "NCCL version code {version}");
    let a = library.unique_id().unwrap();
    let b = library.unique_id().unwrap();
    assert_ne!(a, b);
    assert!(a.0.iter().any(|&x| x != 0));
}

#[test]
fn the_default_search_finds_the_library_beside_a_pip_libtorch() {
    // No $ROSETTA_NCCL_LIB and no LD_LIBRARY_PATH entry: the wheel beside libtorch is found.
    if std::env::var_os("ROSETTA_NCCL_LIB").is_some() {
        return;
    }
    let library = NcclLibrary::load(None).unwrap();
    assert!(library.version().unwrap() >= 22000);
}

#[test]
fn missing_or_wrong_libraries_are_errors() {
    let err = NcclLibrary::load(Some(std::path::Path::new("/nonexistent/libnccl.so.2"))).unwrap_err().to_string();
    assert!(err.contains("could not load the NCCL library") && err.contains("/nonexistent/libnccl.so.2"), "{err}");
    let err = NcclLibrary::load(Some(std::path::Path::new("libm.so.6"))).unwrap_err().to_string();
    assert!(err.contains("symbol ncclGetVersion missing"), "{err}");
}

#[test]
fn a_communicator_needs_a_cuda_device() {
    let library = Arc::new(NcclLibrary::load(Some(&wheel_library())).unwrap());
    let id = library.unique_id().unwrap();
    let err =
        NcclCollective::new(library.clone(), id, 0, 1, Device::Cpu, Duration::from_secs(5)).err().unwrap().to_string();
    assert!(err.contains("needs a CUDA device"), "{err}");
    if !rosetta_collective::device::cuda_available() {
        // NCCL itself must refuse (with its message) rather than crash the process.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let outcome = NcclCollective::new(library, id, 0, 1, Device::Cuda(0), Duration::from_secs(5))
                .err()
                .map(|e| e.to_string());
            let _ = tx.send(outcome);
        });
        let err = rx.recv_timeout(Duration::from_secs(60)).expect("ncclCommInitRank returned").expect("init must fail");
        assert!(err.contains("NCCL error"), "{err}");
    }
}
