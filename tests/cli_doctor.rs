//! `rosetta doctor` on the machine the tests run on: it finds libtorch and NCCL, reports the GPUs
//! it sees, runs the one-rank NCCL smoke test on each, and refuses a device that is not there.

mod common;

use common::rosetta;

#[test]
fn doctor_reports_libtorch_nccl_and_every_visible_gpu() {
    let out = rosetta(&["doctor", "--probe-mib", "16"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("libtorch: /"), "{stdout}");
    // The pip torch that the project installs brings NCCL with it.
    assert!(stdout.contains("nccl: /") && stdout.contains("(version 2."), "{stdout}");
    if stdout.contains("cuda: not available") {
        assert!(!stdout.contains("cuda:0: ok"), "{stdout}");
    } else {
        assert!(stdout.contains("cuda:0: ok"), "{stdout}");
    }
}

#[test]
fn doctor_refuses_a_device_that_is_not_there() {
    let out = rosetta(&["doctor", "--device", "cuda:7"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--device cuda:7") && stderr.contains("CUDA device(s)"), "{stderr}");
    let out = rosetta(&["doctor", "--device", "cpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only CUDA devices"));
}

#[test]
fn doctor_names_a_missing_nccl_library() {
    let out = rosetta(&["doctor", "--nccl-lib", "/nonexistent/libnccl.so.2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout.contains("cuda: not available") {
        // Without a GPU NCCL is optional: reported, not fatal.
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains("nccl: not found") && stdout.contains("/nonexistent/libnccl.so.2"), "{stdout}");
    } else {
        assert!(!out.status.success());
    }
}
