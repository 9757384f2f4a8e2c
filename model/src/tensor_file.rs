//! Safetensors files written and read one tensor at a time: a checkpoint write streams each
//! tensor's bytes from its own memory into the file, and a restore reads each tensor's bytes
//! straight into the parameter or optimiser state it belongs to, so neither holds a second
//! copy of the weights and optimiser state (the format: an 8-byte little-endian header
//! length, a JSON header of `name → {dtype, shape, data_offsets}`, then the data).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};

/// Largest header accepted (the safetensors reference implementation's bound is 100 MB).
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// One tensor's entry in the header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<i64>,
    data_offsets: [u64; 2],
}

fn dtype_name(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Float => "F32",
        Kind::Double => "F64",
        Kind::Half => "F16",
        Kind::BFloat16 => "BF16",
        Kind::Int64 => "I64",
        Kind::Int => "I32",
        Kind::Int16 => "I16",
        Kind::Int8 => "I8",
        Kind::Uint8 => "U8",
        Kind::Bool => "BOOL",
        _ => return None,
    })
}

fn kind_of(dtype: &str) -> Option<Kind> {
    Some(match dtype {
        "F32" => Kind::Float,
        "F64" => Kind::Double,
        "F16" => Kind::Half,
        "BF16" => Kind::BFloat16,
        "I64" => Kind::Int64,
        "I32" => Kind::Int,
        "I16" => Kind::Int16,
        "I8" => Kind::Int8,
        "U8" => Kind::Uint8,
        "BOOL" => Kind::Bool,
        _ => return None,
    })
}

/// A CPU-contiguous view of `tensor` (the tensor itself when it already is one).
fn cpu_contiguous(tensor: &Tensor) -> Tensor {
    let cpu = tensor.detach().to_device(Device::Cpu);
    if cpu.is_contiguous() { cpu } else { cpu.contiguous() }
}

/// The bytes of a contiguous CPU tensor.
fn bytes_of(tensor: &Tensor) -> &[u8] {
    let len = tensor.numel() * tensor.kind().elt_size_in_bytes();
    if len == 0 {
        return &[];
    }
    // SAFETY: `tensor` is a contiguous CPU tensor of `len` bytes, borrowed for the slice's life.
    unsafe { std::slice::from_raw_parts(tensor.data_ptr() as *const u8, len) }
}

/// Writes `tensors` (in this order) to `path`, streaming each from its own memory; a tensor
/// on another device or not contiguous is copied alone, one at a time.
pub fn write(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let error = |message: String| ModelError::model(path, message);
    let mut header = BTreeMap::new();
    let mut offset = 0u64;
    for (name, tensor) in tensors {
        let dtype = dtype_name(tensor.kind()).ok_or_else(|| {
            error(format!("tensor {name} has kind {:?}, which safetensors cannot hold", tensor.kind()))
        })?;
        let len = (tensor.numel() * tensor.kind().elt_size_in_bytes()) as u64;
        let entry = Entry { dtype: dtype.to_string(), shape: tensor.size(), data_offsets: [offset, offset + len] };
        if header.insert(name.clone(), entry).is_some() {
            return Err(error(format!("tensor {name} is listed twice")));
        }
        offset += len;
    }
    let mut json = serde_json::to_vec(&header).map_err(|e| error(e.to_string()))?;
    // The data starts 8-byte aligned (the format pads the header with spaces).
    while (json.len() + 8) % 8 != 0 {
        json.push(b' ');
    }
    let file = File::create(path).map_err(|e| error(format!("cannot create: {e}")))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let io = |e: std::io::Error| error(format!("write failed: {e}"));
    out.write_all(&(json.len() as u64).to_le_bytes()).map_err(io)?;
    out.write_all(&json).map_err(io)?;
    for (_, tensor) in tensors {
        let source = cpu_contiguous(tensor);
        out.write_all(bytes_of(&source)).map_err(io)?;
    }
    out.into_inner().map_err(|e| error(format!("write failed: {}", e.error())))?.sync_all().map_err(io)?;
    Ok(())
}

/// An open safetensors file whose tensors are read on demand.
#[derive(Debug)]
pub struct TensorFile {
    path: PathBuf,
    file: std::cell::RefCell<File>,
    data_start: u64,
    entries: HashMap<String, Entry>,
}

impl TensorFile {
    /// Opens `path` and validates its header: known dtypes, offsets that match the shapes and
    /// lie inside the file.
    pub fn open(path: &Path) -> Result<Self> {
        let error = |message: String| ModelError::model(path, message);
        let mut file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => error("file does not exist".into()),
            _ => error(format!("cannot open: {e}")),
        })?;
        let file_len = file.metadata().map_err(|e| error(e.to_string()))?.len();
        let mut len = [0u8; 8];
        file.read_exact(&mut len)
            .map_err(|_| error("not a safetensors file: shorter than its 8-byte header length".into()))?;
        let header_len = u64::from_le_bytes(len);
        if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
            return Err(error(format!(
                "not a safetensors file: header length {header_len} for a file of {file_len} bytes"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(|e| error(format!("cannot read the header: {e}")))?;
        let mut raw: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| error(format!("header is not valid JSON: {e}")))?;
        raw.remove("__metadata__");
        let data_start = 8 + header_len;
        let data_len = file_len - data_start;
        let mut entries = HashMap::with_capacity(raw.len());
        for (name, value) in raw {
            let entry: Entry =
                serde_json::from_value(value).map_err(|e| error(format!("header entry of tensor {name}: {e}")))?;
            let kind = kind_of(&entry.dtype)
                .ok_or_else(|| error(format!("tensor {name} has an unknown dtype {}", entry.dtype)))?;
            let elements =
                entry.shape.iter().try_fold(1u64, |n, &d| u64::try_from(d).ok().and_then(|d| n.checked_mul(d)));
            let [begin, end] = entry.data_offsets;
            let expected = elements.and_then(|n| n.checked_mul(kind.elt_size_in_bytes() as u64));
            if begin > end || end > data_len || expected != Some(end - begin) {
                return Err(error(format!(
                    "tensor {name}: offsets {begin}..{end} do not hold a {:?} {} tensor inside the file's {data_len} data bytes",
                    entry.shape, entry.dtype
                )));
            }
            entries.insert(name, entry);
        }
        Ok(Self { path: path.to_path_buf(), file: std::cell::RefCell::new(file), data_start, entries })
    }

    /// Names of the tensors in the file.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The shape of tensor `name`, if the file has it.
    pub fn shape(&self, name: &str) -> Option<&[i64]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    fn entry(&self, name: &str) -> Result<(&Entry, Kind)> {
        let entry =
            self.entries.get(name).ok_or_else(|| ModelError::model(&self.path, format!("tensor {name} is missing")))?;
        Ok((entry, kind_of(&entry.dtype).unwrap_or(Kind::Uint8)))
    }

    fn read_bytes(&self, entry: &Entry, into: &mut [u8]) -> Result<()> {
        let mut file = self.file.borrow_mut();
        file.seek(SeekFrom::Start(self.data_start + entry.data_offsets[0]))
            .and_then(|_| file.read_exact(into))
            .map_err(|e| ModelError::model(&self.path, format!("read failed: {e}")))
    }

    /// Reads tensor `name` into a new CPU tensor.
    pub fn read(&self, name: &str) -> Result<Tensor> {
        let (entry, kind) = self.entry(name)?;
        let tensor = Tensor::empty(entry.shape.as_slice(), (kind, Device::Cpu));
        self.fill_contiguous(entry, &tensor)?;
        Ok(tensor)
    }

    fn fill_contiguous(&self, entry: &Entry, tensor: &Tensor) -> Result<()> {
        let len = (entry.data_offsets[1] - entry.data_offsets[0]) as usize;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: a contiguous CPU tensor of exactly `len` bytes (shape and kind from the
        // validated entry), written only here.
        let bytes = unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr() as *mut u8, len) };
        self.read_bytes(entry, bytes)
    }

    /// Copies tensor `name` into `target`, which must have its shape: straight into its memory
    /// when it is a contiguous CPU tensor of the file's kind, else through one temporary.
    pub fn read_into(&self, name: &str, target: &mut Tensor) -> Result<()> {
        let (entry, kind) = self.entry(name)?;
        if entry.shape != target.size() {
            return Err(ModelError::model(
                &self.path,
                format!("tensor {name} has shape {:?}, expected {:?}", entry.shape, target.size()),
            ));
        }
        if target.device() == Device::Cpu && target.kind() == kind && target.is_contiguous() {
            return tch::no_grad(|| self.fill_contiguous(entry, target));
        }
        let source = self.read(name)?;
        tch::no_grad(|| target.copy_(&source.to_kind(target.kind()).to_device(target.device())));
        Ok(())
    }
}

/// Where named tensors are restored from: an open file or tensors already in memory.
pub trait TensorSource {
    /// Copies tensor `name` into `target` (same shape), naming it when missing or mis-shaped.
    fn fill(&self, name: &str, target: &mut Tensor) -> Result<()>;
}

impl TensorSource for TensorFile {
    fn fill(&self, name: &str, target: &mut Tensor) -> Result<()> {
        self.read_into(name, target)
    }
}

impl TensorSource for HashMap<String, Tensor> {
    fn fill(&self, name: &str, target: &mut Tensor) -> Result<()> {
        let source =
            self.get(name).ok_or_else(|| ModelError::invalid("checkpoint", format!("tensor {name} is missing")))?;
        if source.size() != target.size() {
            return Err(ModelError::invalid(
                "checkpoint",
                format!("tensor {name} has shape {:?}, expected {:?}", source.size(), target.size()),
            ));
        }
        tch::no_grad(|| target.copy_(&source.to_kind(target.kind()).to_device(target.device())));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(String, Tensor)> {
        vec![
            ("b.weight".into(), Tensor::randn([3, 5], (Kind::Float, Device::Cpu))),
            ("a.step".into(), Tensor::from_slice(&[7i64])),
            ("c.view".into(), Tensor::randn([4, 6], (Kind::Double, Device::Cpu)).tr()),
            ("d.empty".into(), Tensor::zeros([0, 3], (Kind::Float, Device::Cpu))),
        ]
    }

    #[test]
    fn written_files_read_back_here_and_in_tch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let tensors = sample();
        write(&path, &tensors).unwrap();
        let file = TensorFile::open(&path).unwrap();
        // The safetensors crate (through tch) reads the same file.
        let theirs: HashMap<String, Tensor> = Tensor::read_safetensors(&path).unwrap().into_iter().collect();
        for (name, tensor) in &tensors {
            assert!(file.read(name).unwrap().equal(tensor), "{name}");
            assert!(theirs[name].equal(tensor), "{name} as tch reads it");
            let mut target = tensor.zeros_like();
            file.read_into(name, &mut target).unwrap();
            assert!(target.equal(tensor));
        }
        let mut wrong = Tensor::zeros([5, 3], (Kind::Float, Device::Cpu));
        let err = file.read_into("b.weight", &mut wrong).unwrap_err().to_string();
        assert!(err.contains("b.weight") && err.contains("[3, 5]"), "{err}");
        assert!(file.read("nope").unwrap_err().to_string().contains("tensor nope is missing"));
    }

    #[test]
    fn files_tch_writes_read_here() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let tensors: Vec<(String, Tensor)> = sample().into_iter().map(|(n, t)| (n, t.contiguous())).collect();
        Tensor::write_safetensors(&tensors, &path).unwrap();
        let file = TensorFile::open(&path).unwrap();
        for (name, tensor) in &tensors {
            assert!(file.read(name).unwrap().equal(tensor), "{name}");
        }
    }

    #[test]
    fn damaged_files_are_refused_naming_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        write(&path, &sample()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // Cut in the data: the last tensors' offsets run past the end.
        std::fs::write(&path, &bytes[..bytes.len() - 40]).unwrap();
        let err = TensorFile::open(&path).unwrap_err().to_string();
        assert!(err.contains("t.safetensors") && err.contains("inside the file"), "{err}");
        std::fs::write(&path, b"abc").unwrap();
        assert!(TensorFile::open(&path).unwrap_err().to_string().contains("not a safetensors file"));
        let mut garbage = 16u64.to_le_bytes().to_vec();
        garbage.extend_from_slice(b"{not json at all");
        std::fs::write(&path, &garbage).unwrap();
        assert!(TensorFile::open(&path).unwrap_err().to_string().contains("not valid JSON"));
    }
}
