//! [`WorkerSpec`]: what the coordinator hands every worker at registration (built by the
//! launcher from the run config; the coordinator passes it on without reading it).

use serde::{Deserialize, Serialize};

use crate::model::ModelSettings;
use crate::training::TrainingSettings;

/// What every worker of a job trains with: the launcher builds it from the run config, the
/// coordinator hands it to each worker at registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSpec {
    /// The encoder.
    pub model: ModelSettings,
    /// Loss, optimiser, device, hard negatives.
    pub training: TrainingSettings,
    /// Optimiser steps of the whole job (the learning-rate schedule decays to 0 there).
    pub total_steps: u64,
    /// The schedule's seed: dropout of step s on rank r is seeded by (seed, s, r).
    pub seed: u64,
    /// How long a collective (or the ring's set-up) may wait for a peer.
    pub collective_timeout: std::time::Duration,
}

impl WorkerSpec {
    /// The spec as sent to workers.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| unreachable!("a worker spec always serialises"))
    }

    /// A spec received from the coordinator; the error says what did not parse.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text)
            .map_err(|e| format!("worker spec from the coordinator: {e} (is the coordinator another version?)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelSection, ModelSource};
    use crate::training::TrainingSection;

    #[test]
    fn a_worker_spec_round_trips_through_json() {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = dir.path().join("tokenizer.json");
        std::fs::write(&tokenizer, "{}").unwrap();
        let model: ModelSection =
            serde_json::from_str(r#"{"preset": "small", "tokenizer": "tokenizer.json", "layers": 2}"#).unwrap();
        let spec = WorkerSpec {
            model: model.build(dir.path()).unwrap(),
            training: TrainingSection::default().build().unwrap(),
            total_steps: 10,
            seed: 3,
            collective_timeout: std::time::Duration::from_secs(60),
        };
        assert!(
            matches!(&spec.model.source, ModelSource::Preset { tokenizer: t, shape, .. } if *t == tokenizer && shape.layers == Some(2))
        );
        assert_eq!(WorkerSpec::from_json(&spec.to_json()).unwrap(), spec);
        assert!(WorkerSpec::from_json("{\"model\": 1}").unwrap_err().contains("another version"));
    }
}
