//! NCCL for CUDA tensors through a small `libloading` binding of the calls Rosetta needs.
//! Every failure is an error, never a panic: a missing library or symbol, a failed call (with
//! NCCL's own message), or a collective that does not finish in time (the communicator is then
//! aborted). The 128-byte unique id that bootstraps a communicator is exchanged by the
//! coordinator: rank 0 creates it, the others receive it.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use tch::{Device, Kind, Tensor};

use crate::collective::Collective;
use crate::error::{CollectiveError, Result};

/// Size of `ncclUniqueId`.
pub const UNIQUE_ID_BYTES: usize = 128;

/// The bootstrap id of one communicator.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct UniqueId(pub [u8; UNIQUE_ID_BYTES]);

impl std::fmt::Debug for UniqueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UniqueId({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

type NcclResult = c_int;
type Comm = *mut c_void;
type GetVersion = unsafe extern "C" fn(*mut c_int) -> NcclResult;
type GetUniqueId = unsafe extern "C" fn(*mut UniqueId) -> NcclResult;
type CommInitRank = unsafe extern "C" fn(*mut Comm, c_int, UniqueId, c_int) -> NcclResult;
type CommAbort = unsafe extern "C" fn(Comm) -> NcclResult;
type CommDestroy = unsafe extern "C" fn(Comm) -> NcclResult;
type GetErrorString = unsafe extern "C" fn(NcclResult) -> *const c_char;
type AllReduce = unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, c_int, Comm, *mut c_void) -> NcclResult;
type AllGather = unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, Comm, *mut c_void) -> NcclResult;
type Broadcast = unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, c_int, Comm, *mut c_void) -> NcclResult;

const NCCL_INT64: c_int = 4;
const NCCL_FLOAT32: c_int = 7;
const NCCL_FLOAT64: c_int = 8;
const NCCL_BFLOAT16: c_int = 9;
const NCCL_SUM: c_int = 0;

/// The loaded NCCL library and the entry points Rosetta uses.
pub struct NcclLibrary {
    path: PathBuf,
    get_version: GetVersion,
    get_unique_id: GetUniqueId,
    comm_init_rank: CommInitRank,
    comm_abort: CommAbort,
    comm_destroy: CommDestroy,
    get_error_string: GetErrorString,
    all_reduce: AllReduce,
    all_gather: AllGather,
    broadcast: Broadcast,
    // Never unloaded: NCCL starts background threads (e.g. the bootstrap root of
    // `ncclGetUniqueId`) that would run unmapped code after a `dlclose`.
    _library: std::mem::ManuallyDrop<libloading::Library>,
}

impl std::fmt::Debug for NcclLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclLibrary").field("path", &self.path).finish()
    }
}

fn nccl_error(operation: &str, message: impl Into<String>) -> CollectiveError {
    CollectiveError::invalid(format!("nccl {operation}"), message)
}

/// The file the loader actually mapped for `candidate` (a bare soname resolves to a full path).
fn loaded_path(candidate: &Path) -> PathBuf {
    if candidate.is_absolute() {
        return candidate.to_path_buf();
    }
    candidate
        .file_name()
        .and_then(|name| crate::device::mapped_library(&name.to_string_lossy()))
        .unwrap_or_else(|| candidate.to_path_buf())
}

impl NcclLibrary {
    /// Loads `path`, or when `None` the first of `$ROSETTA_NCCL_LIB`, `libnccl.so.2` and
    /// `libnccl.so` that the dynamic loader finds, and the `nvidia-nccl` wheel's library beside
    /// a pip libtorch. The error lists every place tried.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let candidates: Vec<PathBuf> = match path {
            Some(p) => vec![p.to_path_buf()],
            None => std::env::var_os("ROSETTA_NCCL_LIB")
                .map(PathBuf::from)
                .into_iter()
                .chain(["libnccl.so.2", "libnccl.so"].map(PathBuf::from))
                .chain(crate::device::libtorch_dir().map(|dir| dir.join("../../nvidia/nccl/lib/libnccl.so.2")))
                .collect(),
        };
        let mut tried = Vec::new();
        for candidate in &candidates {
            // SAFETY: loading NCCL runs its (trusted, vendor) initialisers only.
            match unsafe { libloading::Library::new(candidate) } {
                Ok(library) => return Self::bind(loaded_path(candidate), library),
                Err(e) => tried.push(format!("{}: {e}", candidate.display())),
            }
        }
        Err(nccl_error("load", format!("could not load the NCCL library; tried {}", tried.join("; "))))
    }

    fn bind(path: PathBuf, library: libloading::Library) -> Result<Self> {
        fn symbol<T: Copy>(library: &libloading::Library, path: &Path, name: &[u8]) -> Result<T> {
            // SAFETY: each symbol is looked up with the C signature NCCL 2.x documents for it.
            unsafe { library.get::<T>(name) }.map(|s| *s).map_err(|e| {
                let name = String::from_utf8_lossy(name.strip_suffix(b"\0").unwrap_or(name)).into_owned();
                nccl_error("load", format!("{}: symbol {name} missing: {e}", path.display()))
            })
        }
        Ok(Self {
            get_version: symbol(&library, &path, b"ncclGetVersion\0")?,
            get_unique_id: symbol(&library, &path, b"ncclGetUniqueId\0")?,
            comm_init_rank: symbol(&library, &path, b"ncclCommInitRank\0")?,
            comm_abort: symbol(&library, &path, b"ncclCommAbort\0")?,
            comm_destroy: symbol(&library, &path, b"ncclCommDestroy\0")?,
            get_error_string: symbol(&library, &path, b"ncclGetErrorString\0")?,
            all_reduce: symbol(&library, &path, b"ncclAllReduce\0")?,
            all_gather: symbol(&library, &path, b"ncclAllGather\0")?,
            broadcast: symbol(&library, &path, b"ncclBroadcast\0")?,
            path,
            _library: std::mem::ManuallyDrop::new(library),
        })
    }

    /// Where the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check(&self, operation: &str, code: NcclResult) -> Result<()> {
        if code == 0 {
            return Ok(());
        }
        // SAFETY: ncclGetErrorString returns a static, NUL-terminated string for any code.
        let text = unsafe { CStr::from_ptr((self.get_error_string)(code)) }.to_string_lossy().into_owned();
        Err(nccl_error(operation, format!("NCCL error {code}: {text}")))
    }

    /// NCCL's version code (e.g. 22809 for 2.28.9).
    pub fn version(&self) -> Result<i32> {
        let mut version: c_int = 0;
        // SAFETY: writes one int.
        self.check("version", unsafe { (self.get_version)(&mut version) })?;
        Ok(version)
    }

    /// A fresh communicator id (rank 0 creates it; needs no GPU).
    pub fn unique_id(&self) -> Result<UniqueId> {
        let mut id = UniqueId([0; UNIQUE_ID_BYTES]);
        // SAFETY: writes the 128-byte struct.
        self.check("unique id", unsafe { (self.get_unique_id)(&mut id) })?;
        Ok(id)
    }
}

/// A rank's NCCL communicator: a [`Collective`] for CUDA tensors.
pub struct NcclCollective {
    library: Arc<NcclLibrary>,
    comm: Comm,
    rank: usize,
    world: usize,
    device: Device,
    timeout: Duration,
    /// Set once `ncclCommAbort` ran: the handle is gone and must not be used or destroyed.
    aborted: std::sync::atomic::AtomicBool,
}

/// A communicator handle moved out of the thread that created it.
struct SentComm(Comm);

// SAFETY: the handle is only moved, never used, by the thread that sends it.
unsafe impl Send for SentComm {}

// SAFETY: an NCCL communicator may be used from any thread as long as calls are not concurrent;
// `Collective` methods are called by one training thread at a time.
unsafe impl Send for NcclCollective {}

impl NcclCollective {
    /// Joins communicator `id` as `rank` of `world` on CUDA device `device`.
    pub fn new(
        library: Arc<NcclLibrary>,
        id: UniqueId,
        rank: usize,
        world: usize,
        device: Device,
        timeout: Duration,
    ) -> Result<Self> {
        if !matches!(device, Device::Cuda(_)) {
            return Err(nccl_error("init", format!("NCCL needs a CUDA device, got {device:?}")));
        }
        if rank >= world {
            return Err(nccl_error("init", format!("rank {rank} is not below the world size {world}")));
        }
        // ncclCommInitRank blocks until every rank joined: it runs on a thread of its own and is
        // waited for at most `timeout`. A rank that gives up returns an error (its process then
        // exits, which ends the stuck call with it).
        let (sender, receiver) = mpsc::channel();
        let init = library.clone();
        std::thread::spawn(move || {
            let mut comm: Comm = std::ptr::null_mut();
            // SAFETY: `comm` receives the new communicator; `id` is passed by value as NCCL expects.
            let code = unsafe { (init.comm_init_rank)(&mut comm, world as c_int, id, rank as c_int) };
            let _ = sender.send((SentComm(comm), code));
        });
        let comm = match receiver.recv_timeout(timeout) {
            Ok((SentComm(comm), code)) => {
                library.check("init", code)?;
                comm
            }
            Err(_) => {
                return Err(nccl_error(
                    "init",
                    format!(
                        "ncclCommInitRank did not complete within {timeout:?}: a rank is missing or the network between them is blocked"
                    ),
                ));
            }
        };
        Ok(Self { library, comm, rank, world, device, timeout, aborted: std::sync::atomic::AtomicBool::new(false) })
    }

    /// An error once the communicator was aborted (its handle is gone).
    fn usable(&self, operation: &'static str) -> Result<()> {
        if self.aborted.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(CollectiveError::Collective {
                operation,
                rank: self.rank,
                message: "the communicator was aborted after an earlier timeout".into(),
            });
        }
        Ok(())
    }

    /// Waits for the device's queued work; aborts the communicator if that takes longer than the timeout.
    fn wait(&self, operation: &'static str) -> Result<()> {
        let Device::Cuda(index) = self.device else { return Ok(()) };
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            tch::Cuda::synchronize(index as i64);
            let _ = sender.send(());
        });
        match receiver.recv_timeout(self.timeout) {
            Ok(()) => Ok(()),
            Err(_) => {
                // SAFETY: aborting a communicator that is in use is NCCL's documented way out;
                // the flag keeps every later call (and Drop) away from the freed handle.
                if !self.aborted.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    unsafe { (self.library.comm_abort)(self.comm) };
                }
                Err(CollectiveError::Collective {
                    operation,
                    rank: self.rank,
                    message: format!("did not complete within {:?}; communicator aborted", self.timeout),
                })
            }
        }
    }

    /// Runs an in-place NCCL call on `tensor` and waits for it. A tensor that is not contiguous
    /// on this device (small control values such as flags live on the CPU) goes through a
    /// contiguous copy there and takes the result back.
    fn in_place(
        &self,
        tensor: &mut Tensor,
        operation: &'static str,
        call: impl FnOnce(*mut c_void, usize, c_int) -> NcclResult,
    ) -> Result<()> {
        self.usable(operation)?;
        let direct = tensor.device() == self.device && tensor.is_contiguous();
        let staged = if direct { tensor.shallow_clone() } else { tensor.to_device(self.device).contiguous() };
        let dtype = self.dtype(&staged, operation)?;
        self.library.check(operation, call(staged.data_ptr(), staged.numel(), dtype))?;
        self.wait(operation)?;
        if !direct {
            tensor.copy_(&staged);
        }
        Ok(())
    }

    fn dtype(&self, tensor: &Tensor, operation: &'static str) -> Result<c_int> {
        if tensor.device() != self.device || !tensor.is_contiguous() {
            return Err(CollectiveError::Collective {
                operation,
                rank: self.rank,
                message: format!("tensor on {:?} must be contiguous on {:?}", tensor.device(), self.device),
            });
        }
        match tensor.kind() {
            Kind::Float => Ok(NCCL_FLOAT32),
            Kind::Double => Ok(NCCL_FLOAT64),
            Kind::Int64 => Ok(NCCL_INT64),
            Kind::BFloat16 => Ok(NCCL_BFLOAT16),
            other => Err(CollectiveError::Collective {
                operation,
                rank: self.rank,
                message: format!("kind {other:?} unsupported"),
            }),
        }
    }
}

impl Drop for NcclCollective {
    fn drop(&mut self) {
        // After ncclCommAbort the handle is freed: destroying it again would be a double free.
        if self.aborted.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        // SAFETY: the communicator was created by ncclCommInitRank and is destroyed once.
        unsafe { (self.library.comm_destroy)(self.comm) };
    }
}

impl Collective for NcclCollective {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn all_gather(&self, tensor: &Tensor) -> Result<Vec<Tensor>> {
        self.usable("all_gather")?;
        if tensor.device() != self.device {
            let gathered = self.all_gather(&tensor.to_device(self.device))?;
            return Ok(gathered.into_iter().map(|t| t.to_device(tensor.device())).collect());
        }
        // NCCL gathers equal sizes: exchange first dimensions, pad to the largest, then trim.
        let mut rows = Tensor::zeros([self.world as i64], (Kind::Int64, self.device));
        let _ = rows.get(self.rank as i64).fill_(tensor.size().first().copied().unwrap_or(1));
        self.all_reduce_sum(&mut rows)?;
        let rows: Vec<i64> = Vec::<i64>::try_from(&rows.to_device(Device::Cpu))?;
        let longest = rows.iter().copied().max().unwrap_or(0);
        let mut shape = tensor.size();
        let local_rows = shape.first().copied().unwrap_or(1);
        if shape.is_empty() {
            shape.push(1);
        }
        shape[0] = longest;
        let padded = Tensor::zeros(shape.as_slice(), (tensor.kind(), self.device));
        if local_rows > 0 {
            padded
                .narrow(0, 0, local_rows)
                .copy_(&tensor.detach().reshape([local_rows, -1]).view_as(&padded.narrow(0, 0, local_rows)));
        }
        let mut gathered_shape = shape.clone();
        gathered_shape[0] = longest * self.world as i64;
        let gathered = Tensor::zeros(gathered_shape.as_slice(), (tensor.kind(), self.device));
        let dtype = self.dtype(&padded, "all_gather")?;
        // SAFETY: both buffers are contiguous CUDA tensors of the stated sizes; stream 0.
        let code = unsafe {
            (self.library.all_gather)(
                padded.data_ptr(),
                gathered.data_ptr(),
                padded.numel(),
                dtype,
                self.comm,
                std::ptr::null_mut(),
            )
        };
        self.library.check("all_gather", code)?;
        self.wait("all_gather")?;
        Ok(rows.iter().enumerate().map(|(r, &n)| gathered.narrow(0, r as i64 * longest, n)).collect())
    }
    fn all_reduce_sum(&self, tensor: &mut Tensor) -> Result<()> {
        let (library, comm) = (&self.library, self.comm);
        self.in_place(tensor, "all_reduce", |pointer, count, dtype| {
            // SAFETY: in-place all-reduce on a contiguous CUDA tensor of `count` elements; stream 0.
            unsafe { (library.all_reduce)(pointer, pointer, count, dtype, NCCL_SUM, comm, std::ptr::null_mut()) }
        })
    }
    fn broadcast(&self, tensor: &mut Tensor, root: usize) -> Result<()> {
        let (library, comm) = (&self.library, self.comm);
        self.in_place(tensor, "broadcast", |pointer, count, dtype| {
            // SAFETY: in-place broadcast on a contiguous CUDA tensor of `count` elements; stream 0.
            unsafe { (library.broadcast)(pointer, pointer, count, dtype, root as c_int, comm, std::ptr::null_mut()) }
        })
    }
    fn barrier(&self) -> Result<()> {
        let mut token = Tensor::zeros([1], (Kind::Float, self.device));
        self.all_reduce_sum(&mut token)
    }
}
