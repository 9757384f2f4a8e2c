//! The workspace's layers, checked from its manifests (`cargo metadata`): no crate imports a
//! crate of its own layer or above, and libtorch (`tch`, `torch-sys`) is linked only by the
//! crates that compute with tensors, so that the configuration, the control plane, the
//! launchers and the experiment build and test without it.

use std::collections::BTreeMap;

/// Each workspace crate's layer, lowest first (a crate may use crates of lower layers only).
const LAYERS: [(&str, u32); 12] = [
    ("rosetta-common", 0),
    ("rosetta-proto", 0),
    ("rosetta-datasets", 1),
    ("rosetta-worker-config", 1),
    ("rosetta-eval", 2),
    ("rosetta-model", 2),
    ("rosetta-collective", 2),
    ("rosetta-coordinator", 3),
    ("rosetta-worker", 3),
    ("rosetta-deploy", 4),
    ("rosetta-experiment", 5),
    ("rosetta", 6),
];

/// The crates that may link libtorch.
const TENSOR_CRATES: [&str; 4] = ["rosetta-model", "rosetta-collective", "rosetta-worker", "rosetta"];

#[test]
fn no_crate_imports_upward_and_only_tensor_crates_link_libtorch() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers: BTreeMap<&str, u32> = LAYERS.into_iter().collect();
    let mut problems = Vec::new();
    let packages = metadata["packages"].as_array().unwrap();
    assert_eq!(packages.len(), LAYERS.len(), "a crate was added or removed: give it a layer here");
    for package in packages {
        let name = package["name"].as_str().unwrap();
        let layer = *layers.get(name).unwrap_or_else(|| panic!("{name} has no layer"));
        for dependency in package["dependencies"].as_array().unwrap() {
            if dependency["kind"].as_str() == Some("dev") {
                continue;
            }
            let used = dependency["name"].as_str().unwrap();
            if let Some(&used_layer) = layers.get(used)
                && used_layer >= layer
            {
                problems.push(format!("{name} (layer {layer}) uses {used} (layer {used_layer})"));
            }
            if ["tch", "torch-sys"].contains(&used) && !TENSOR_CRATES.contains(&name) {
                problems.push(format!("{name} links libtorch ({used})"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
