//! `rosetta doctor`: what this machine offers for training (libtorch, CUDA devices, NCCL), with a
//! one-rank NCCL smoke test on each GPU: every collective Rosetta uses is run and its result
//! checked, then an all-reduce is timed. Fails when something asked for does not work.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tch::{Device, Kind, Tensor};

use crate::collective::Collective;
use crate::device::{cuda_backend, cuda_device_count, libtorch_dir, parse_device};
use crate::error::{CollectiveError, Result};
use crate::nccl::{NcclCollective, NcclLibrary};

/// `rosetta doctor`.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorCommand {
    /// CUDA device to test (`cuda:N`, repeatable; default: every visible device). Naming one
    /// makes its absence an error.
    #[arg(long = "device")]
    pub devices: Vec<String>,
    /// NCCL library to load (default: `$ROSETTA_NCCL_LIB`, the loader's `libnccl.so.2`, or the
    /// `nvidia-nccl` wheel beside a pip libtorch).
    #[arg(long)]
    pub nccl_lib: Option<PathBuf>,
    /// Size of the timed all-reduce in MiB.
    #[arg(long, default_value_t = 256)]
    pub probe_mib: usize,
    /// Seconds any collective may take before the communicator is aborted.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
}

/// A failed check, described.
fn failed(message: impl Into<String>) -> CollectiveError {
    CollectiveError::invalid("doctor", message)
}

/// `Err` with `message` unless `holds`.
fn ensure(holds: bool, message: impl FnOnce() -> String) -> Result<()> {
    if holds { Ok(()) } else { Err(failed(message())) }
}

/// Prints the report; fails when a requested device or a visible GPU does not pass.
pub fn run_doctor(args: &DoctorCommand) -> Result<()> {
    println!("rosetta {}", env!("CARGO_PKG_VERSION"));
    match libtorch_dir() {
        Some(dir) => println!("libtorch: {}", dir.display()),
        None => println!("libtorch: (directory not found in the process maps)"),
    }
    match cuda_backend() {
        Ok(path) => println!("libtorch cuda backend: {}", path.display()),
        Err(why) => println!("libtorch cuda backend: none ({why})"),
    }
    let visible = cuda_device_count();
    if visible == 0 {
        println!("cuda: not available (training and evaluation run on cpu)");
    } else {
        println!("cuda: {visible} device(s); cudnn {}", if tch::Cuda::cudnn_is_available() { "yes" } else { "no" });
    }
    let devices: Vec<Device> = if args.devices.is_empty() {
        (0..visible).map(Device::Cuda).collect()
    } else {
        args.devices
            .iter()
            .map(|d| parse_device(d).map_err(|e| failed(format!("--device {d}: {e}"))))
            .collect::<Result<_>>()?
    };
    if devices.iter().any(|d| !matches!(d, Device::Cuda(_))) {
        return Err(failed("--device: only CUDA devices are tested (cpu needs no check)"));
    }
    let library = match NcclLibrary::load(args.nccl_lib.as_deref()) {
        Ok(library) => {
            let version = library.version()?;
            println!(
                "nccl: {} (version {}.{}.{})",
                library.path().display(),
                version / 10000,
                version / 100 % 100,
                version % 100
            );
            Some(Arc::new(library))
        }
        Err(e) if devices.is_empty() => {
            println!("nccl: not found ({e}); only needed for CUDA training");
            None
        }
        Err(e) => return Err(failed(format!("NCCL is needed to train on the CUDA devices: {e}"))),
    };
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let mut failed = Vec::new();
    for device in devices {
        let Some(library) = &library else { break };
        match smoke_test(library.clone(), device, args.probe_mib, timeout) {
            Ok(()) => {}
            Err(e) => {
                println!("{device:?}: FAILED: {e}");
                failed.push(format!("{device:?}"));
            }
        }
    }
    if !failed.is_empty() {
        return Err(self::failed(format!("the NCCL smoke test failed on {}", failed.join(", "))));
    }
    Ok(())
}

/// One-rank communicator on `device`: all-reduce (f32, bf16, i64), broadcast and all-gather must
/// return their input; a bf16 matrix product must agree with the CPU; then an all-reduce is timed.
fn smoke_test(library: Arc<NcclLibrary>, device: Device, probe_mib: usize, timeout: Duration) -> Result<()> {
    let Device::Cuda(index) = device else { return Err(failed("not a CUDA device")) };
    let started = Instant::now();
    let id = library.unique_id()?;
    let nccl = NcclCollective::new(library, id, 0, 1, device, timeout)?;
    println!("cuda:{index}: one-rank NCCL communicator in {:.2} s", started.elapsed().as_secs_f64());
    for kind in [Kind::Float, Kind::BFloat16, Kind::Int64] {
        let expected = Tensor::arange(4096, (kind, device));
        let mut tensor = expected.copy();
        nccl.all_reduce_sum(&mut tensor)?;
        ensure(tensor.equal(&expected), || format!("all_reduce of {kind:?} changed a one-rank tensor"))?;
    }
    let expected = Tensor::randn([64, 32], (Kind::Float, device));
    let mut tensor = expected.copy();
    nccl.broadcast(&mut tensor, 0)?;
    ensure(tensor.equal(&expected), || "broadcast changed a one-rank tensor".to_string())?;
    let gathered = nccl.all_gather(&expected)?;
    ensure(gathered.len() == 1 && gathered[0].equal(&expected), || "all_gather did not return the input".to_string())?;
    nccl.barrier()?;
    // Control values (flags, counts) live on the CPU: they travel through the device and back.
    let expected = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
    let mut flag = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
    nccl.all_reduce_sum(&mut flag)?;
    nccl.broadcast(&mut flag, 0)?;
    let gathered = nccl.all_gather(&flag)?;
    ensure(flag.device() == Device::Cpu && flag.equal(&expected) && gathered[0].equal(&expected), || {
        "collectives of a cpu tensor did not return it".to_string()
    })?;
    println!(
        "cuda:{index}: all_reduce (f32, bf16, i64), broadcast, all_gather and barrier returned their input, cpu tensors too"
    );

    let a = Tensor::randn([512, 384], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([384, 512], (Kind::Float, Device::Cpu));
    let on_gpu = a.to_device(device).to_kind(Kind::BFloat16).matmul(&b.to_device(device).to_kind(Kind::BFloat16));
    let difference = (on_gpu.to_kind(Kind::Float).to_device(Device::Cpu) - a.matmul(&b)).abs().max().double_value(&[]);
    ensure(difference < 1.0, || format!("bf16 matmul differs from the cpu's by {difference}"))?;
    println!("cuda:{index}: bf16 matmul agrees with the cpu (largest difference {difference:.3})");

    let elements = (probe_mib.max(1) * (1 << 20) / 4) as i64;
    let mut probe = Tensor::ones([elements], (Kind::Float, device));
    nccl.all_reduce_sum(&mut probe)?;
    let rounds = 10;
    let started = Instant::now();
    for _ in 0..rounds {
        nccl.all_reduce_sum(&mut probe)?;
    }
    let seconds = started.elapsed().as_secs_f64() / f64::from(rounds);
    ensure(probe.get(0).double_value(&[]) == 1.0, || "a one-rank all_reduce changed the probe".to_string())?;
    println!(
        "cuda:{index}: all_reduce of {} MiB f32 in {:.3} ms ({:.1} GB/s; one rank, so a device-local pass)",
        probe_mib.max(1),
        seconds * 1e3,
        (elements * 4) as f64 / seconds / 1e9
    );
    println!("cuda:{index}: ok");
    Ok(())
}
