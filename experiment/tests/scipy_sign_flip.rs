//! The exact sign-flip test of the experiment report against scipy's permutation test
//! (`scipy.stats.permutation_test`, paired samples, every sign pattern enumerated).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rosetta_experiment::stats::{EXACT_GROUPS, Resampler, sign_flip_test};

fn python() -> PathBuf {
    rosetta_common::python::project_python(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// Difference lists with few groups (exact on both sides): random, with ties, all one sign,
/// and with zeros (scipy needs two groups or more).
fn cases() -> Vec<Vec<f64>> {
    let mut rng = Resampler::new(17);
    let mut cases = Vec::new();
    for n in [2, 3, 5, 8, 11, EXACT_GROUPS] {
        for _ in 0..3 {
            cases.push((0..n).map(|_| (rng.below(2001) as f64 - 1000.0) / 10_000.0).collect());
        }
    }
    cases.push(vec![0.01, 0.02, 0.03, 0.04, 0.05, 0.06]);
    cases.push(vec![0.05; 9]);
    cases.push(vec![0.0, 0.0, 0.02, -0.02, 0.01]);
    cases.push(vec![0.003, -0.001, 0.004, 0.002, -0.002, 0.001, 0.005, 0.002, 0.0, 0.003]);
    cases
}

#[test]
fn exact_p_values_match_scipy() {
    let cases = cases();
    let mut child = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sign_flip_check.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the project's python (make test sets it up)");
    child.stdin.take().unwrap().write_all(serde_json::to_string(&cases).unwrap().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "scipy check failed: {}", String::from_utf8_lossy(&output.stderr));
    let expected: Vec<f64> = String::from_utf8(output.stdout).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(expected.len(), cases.len());
    for (differences, scipy) in cases.iter().zip(expected) {
        let (ours, exact) = sign_flip_test(differences, 0, &mut Resampler::new(0));
        assert!(exact, "{} groups should be exact", differences.len());
        assert!((ours - scipy).abs() < 1e-9, "differences {differences:?}: ours {ours}, scipy {scipy}");
    }
}
