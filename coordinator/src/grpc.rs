//! The gRPC face of the coordinator: a thin layer that checks the bearer token, turns
//! `rosetta.v1` messages into the job state machine's requests and its answers (and
//! [`JobError`]s) back into messages and status codes. No job logic lives here.

use std::sync::Arc;

use rosetta_common::random::constant_time_eq;
use rosetta_proto::v1::coordinator_server::{Coordinator, CoordinatorServer};
use rosetta_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::job::{
    CheckpointPart, HeartbeatVerdict, JobError, JobStateMachine, Phase, RankStep, Registration, StepReport,
    WorkerFailure, kind_name,
};
use crate::manifest::ManifestFile;

impl From<JobError> for Status {
    fn from(error: JobError) -> Self {
        let message = error.to_string();
        match error {
            JobError::ProtocolVersion { .. }
            | JobError::WorldComplete
            | JobError::Finished
            | JobError::GenerationOver { .. }
            | JobError::StepNotKept(_) => Status::failed_precondition(message),
            JobError::InvalidRequest { .. } => Status::invalid_argument(message),
            JobError::Failed(_) => Status::aborted(message),
            JobError::UnknownWorker(_) => Status::not_found(message),
            JobError::RendezvousTimeout(_) => Status::deadline_exceeded(message),
            JobError::Internal(_) => Status::internal(message),
        }
    }
}

/// Largest message either way (a plan of a few thousand examples, an evaluation report of a
/// hundred language pairs are far below it).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// The tonic service over a shared [`JobStateMachine`].
#[derive(Debug, Clone)]
pub struct CoordinatorService {
    job: Arc<JobStateMachine>,
}

impl CoordinatorService {
    /// Serves `job`.
    pub fn new(job: Arc<JobStateMachine>) -> Self {
        Self { job }
    }

    /// The gRPC server, refusing requests without `authorization: Bearer <token>`.
    pub fn into_server(
        self,
        token: String,
    ) -> tonic::service::interceptor::InterceptedService<
        CoordinatorServer<Self>,
        impl tonic::service::Interceptor + Clone,
    > {
        let expected = format!("Bearer {token}");
        let server = CoordinatorServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        tonic::service::interceptor::InterceptedService::new(server, move |request: Request<()>| {
            match request.metadata().get("authorization").map(|v| v.as_bytes()) {
                Some(value) if constant_time_eq(value, expected.as_bytes()) => Ok(request),
                Some(_) => Err(Status::unauthenticated("wrong token")),
                None => Err(Status::unauthenticated("missing `authorization: Bearer <token>`")),
            }
        })
    }

    /// Runs blocking job work (planning, store reads, checksums) off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&JobStateMachine) -> Result<T, JobError> + Send + 'static,
    ) -> Result<T, Status> {
        let job = self.job.clone();
        tokio::task::spawn_blocking(move || work(&job))
            .await
            .map_err(|e| Status::internal(format!("coordinator task failed: {e}")))?
            .map_err(Status::from)
    }
}

fn path_text(path: &std::path::Path) -> String {
    path.display().to_string()
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<RegisterResponse>, Status> {
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let request = request.into_inner();
        let ring_address = request.ring_address.parse().map_err(|_| {
            Status::from(JobError::InvalidRequest {
                field: "ring_address",
                message: format!("{:?} is not host:port", request.ring_address),
            })
        })?;
        tracing::debug!(%peer, host = %request.host, "registration");
        let registered = self.job.register(Registration {
            protocol_version: request.protocol_version,
            host: request.host,
            device: request.device,
            ring_address,
        })?;
        Ok(Response::new(RegisterResponse {
            worker_id: registered.worker_id,
            job_id: registered.job_id,
            run_dir: path_text(&registered.run_dir),
            worker_spec_json: registered.worker_spec_json,
            generation: registered.generation,
            store_dir: path_text(&registered.store_dir),
            store_id: registered.store_id,
            rendezvous_timeout_ms: registered.rendezvous_timeout.as_millis() as u64,
        }))
    }

    async fn rendezvous(&self, request: Request<RendezvousRequest>) -> Result<Response<RendezvousResponse>, Status> {
        let world = self.job.rendezvous(&request.into_inner().worker_id).await?;
        Ok(Response::new(RendezvousResponse {
            rank: world.rank as u32,
            world_size: world.world_size as u32,
            generation: world.generation,
            ring_peers: world.ring_peers.iter().map(ToString::to_string).collect(),
            nccl_unique_id: Vec::new(),
            start_step: world.start_step,
            checkpoint_path: world.checkpoint.as_deref().map(path_text).unwrap_or_default(),
            ring_secret: world.ring_secret.to_vec(),
        }))
    }

    async fn get_plan(&self, request: Request<GetPlanRequest>) -> Result<Response<GetPlanResponse>, Status> {
        let request = request.into_inner();
        let step = request.step;
        let planned = self.blocking(move |job| job.plan_for(&request.worker_id, request.generation, step)).await?;
        let plan = match planned {
            RankStep::Finished => {
                return Ok(Response::new(GetPlanResponse { step, finished: true, ..GetPlanResponse::default() }));
            }
            RankStep::Train(plan) => plan,
        };
        Ok(Response::new(GetPlanResponse {
            step: plan.step,
            kind: kind_name(plan.kind).to_string(),
            dataset: plan.dataset,
            languages: plan.languages,
            examples: plan
                .examples
                .into_iter()
                .map(|e| Example {
                    pair_id: e.pair_id,
                    query_lang: e.query_lang,
                    passage_lang: e.passage_lang,
                    query_row: e.query_row,
                    passage_row: e.passage_row,
                })
                .collect(),
            finished: false,
            checkpoint_after: plan.checkpoint_after,
            global_batch_size: plan.global_batch_size as u64,
        }))
    }

    async fn report_step(&self, request: Request<ReportStepRequest>) -> Result<Response<ReportStepResponse>, Status> {
        let r = request.into_inner();
        self.job.report_step(StepReport {
            worker_id: r.worker_id,
            generation: r.generation,
            step: r.step,
            loss: r.loss,
            examples: r.examples,
            tokens: r.tokens,
            padding_tokens: r.padding_tokens,
            step_seconds: r.step_seconds,
            collective_seconds: r.collective_seconds,
            all_reduce_bytes: r.all_reduce_bytes,
            model_flops: r.model_flops,
            peak_flops: r.peak_flops,
            learning_rate: r.learning_rate,
            grad_norm: r.grad_norm,
        })?;
        Ok(Response::new(ReportStepResponse {}))
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        let request = request.into_inner();
        let permanent = request.permanent;
        let error = Some(request.error).filter(|e| !e.is_empty()).map(|message| WorkerFailure { message, permanent });
        let response = match self.job.heartbeat(&request.worker_id, error) {
            HeartbeatVerdict::Continue => HeartbeatResponse { abort: false, reason: String::new() },
            HeartbeatVerdict::Abort(reason) => HeartbeatResponse { abort: true, reason },
        };
        Ok(Response::new(response))
    }

    async fn commit_checkpoint(
        &self,
        request: Request<CommitCheckpointRequest>,
    ) -> Result<Response<CommitCheckpointResponse>, Status> {
        let request = request.into_inner();
        let part = CheckpointPart {
            worker_id: request.worker_id,
            generation: request.generation,
            step: request.step,
            files: request.files.into_iter().map(|f| ManifestFile { path: f.path, sha256: f.sha256 }).collect(),
        };
        let committed = self.blocking(move |job| job.commit_checkpoint(part)).await?;
        Ok(Response::new(CommitCheckpointResponse { committed }))
    }

    async fn job_status(&self, _request: Request<JobStatusRequest>) -> Result<Response<JobStatusResponse>, Status> {
        let progress = self.job.progress();
        let (state, message) = match &progress.phase {
            Phase::Waiting => ("waiting", String::new()),
            Phase::Running => ("running", String::new()),
            Phase::Finished => ("finished", String::new()),
            Phase::Failed(reason) => ("failed", reason.clone()),
        };
        Ok(Response::new(JobStatusResponse {
            state: state.to_string(),
            step: progress.steps_done,
            total_steps: progress.total_steps,
            loss: progress.loss,
            examples_per_second: progress.examples_per_second,
            last_checkpoint_step: progress.last_checkpoint.unwrap_or(0),
            has_checkpoint: progress.last_checkpoint.is_some(),
            workers: progress.workers as u32,
            message,
        }))
    }

    async fn report_evaluation(
        &self,
        request: Request<ReportEvaluationRequest>,
    ) -> Result<Response<ReportEvaluationResponse>, Status> {
        let text = request.into_inner().report_json;
        let report: rosetta_eval::report::EvalReport = serde_json::from_str(&text)
            .map_err(|e| Status::invalid_argument(format!("report_json is not a rosetta-eval report: {e}")))?;
        crate::metrics::admit_eval_report(&report)
            .map_err(|e| Status::invalid_argument(format!("report_json: {e}")))?;
        tracing::info!(benchmark = %report.benchmark, step = ?report.step, "evaluation reported");
        crate::metrics::export_eval_report(&report);
        Ok(Response::new(ReportEvaluationResponse { benchmark: report.benchmark }))
    }
}
