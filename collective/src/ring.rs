//! The TCP ring collective for CPU tensors: all-reduce as reduce-scatter + all-gather around a
//! ring of TCP connections (each rank sends to `rank + 1` and receives from `rank − 1`),
//! processed in buckets; all-gather and broadcast pass whole tensors around the ring. Every
//! socket operation has a bounded timeout and errors name the peer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tch::{Kind, Tensor};

use crate::collective::Collective;
use crate::error::{CollectiveError, Result};

const MAGIC: u32 = 0x524F_5354; // "ROST"
const PROTOCOL: u32 = 3;
/// Default all-reduce bucket: 8 MiB.
pub const DEFAULT_BUCKET_BYTES: usize = 8 << 20;

struct Links {
    next: TcpStream,
    prev: TcpStream,
}

/// One rank's end of a TCP ring.
pub struct TcpRing {
    rank: usize,
    world: usize,
    peers: Vec<SocketAddr>,
    links: Option<Mutex<Links>>,
    timeout: Duration,
    bucket_bytes: usize,
}

impl std::fmt::Debug for TcpRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpRing").field("rank", &self.rank).field("world", &self.world).finish()
    }
}

fn accept_with_deadline(listener: &TcpListener, deadline: Instant) -> std::io::Result<TcpStream> {
    listener.set_nonblocking(true)?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no connection"));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e),
        }
    }
}

fn connect_with_deadline(address: SocketAddr, deadline: Instant) -> std::io::Result<TcpStream> {
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match TcpStream::connect_timeout(&address, remaining.max(Duration::from_millis(10))) {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Longest ring secret.
pub const MAX_SECRET_BYTES: usize = 64;
/// Bytes of each side's random challenge.
const NONCE_BYTES: usize = 32;
/// Bytes of a proof (HMAC-SHA256).
const PROOF_BYTES: usize = 32;
/// The connecting rank's header: magic, protocol, world, rank.
const HEADER_BYTES: usize = 16;

/// HMAC-SHA256 of `parts` under the ring secret: a proof that the sender holds the secret,
/// bound to both sides' challenges, which never shows the secret itself on the wire (the
/// secret reaches the ranks only over the coordinator's channel, TLS off the local machine).
fn proof(secret: &[u8], label: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    // A key shorter than SHA-256's 64-byte block is padded with zeros (RFC 2104), which is
    // what `new` takes; `connect` refuses secrets longer than MAX_SECRET_BYTES (= the block).
    let mut key = [0u8; MAX_SECRET_BYTES];
    let used = secret.len().min(MAX_SECRET_BYTES);
    key[..used].copy_from_slice(&secret[..used]);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&key.into());
    mac.update(label);
    for part in parts {
        mac.update(part);
    }
    mac
}

fn header(world: usize, rank: usize) -> [u8; HEADER_BYTES] {
    let mut bytes = [0u8; HEADER_BYTES];
    for (i, field) in [MAGIC, PROTOCOL, world as u32, rank as u32].iter().enumerate() {
        bytes[4 * i..4 * i + 4].copy_from_slice(&field.to_le_bytes());
    }
    bytes
}

fn nonce() -> std::io::Result<[u8; NONCE_BYTES]> {
    rosetta_common::random::random_bytes::<NONCE_BYTES>().map_err(|e| e.source)
}

/// The connecting side of the handshake on `stream`: answers the acceptor's challenge with
/// this rank's header, its own challenge and its proof, then checks the acceptor's proof.
fn greet(stream: &mut TcpStream, world: usize, rank: usize, secret: &[u8]) -> std::io::Result<()> {
    let refused = |message: &str| std::io::Error::new(std::io::ErrorKind::PermissionDenied, message.to_string());
    let mut challenge = [0u8; NONCE_BYTES];
    stream.read_exact(&mut challenge)?;
    let (header, own) = (header(world, rank), nonce()?);
    let mut message = Vec::with_capacity(HEADER_BYTES + NONCE_BYTES + PROOF_BYTES);
    message.extend_from_slice(&header);
    message.extend_from_slice(&own);
    message.extend_from_slice(
        &proof(secret, b"rosetta ring connect", &[&challenge, &header, &own]).finalize().into_bytes(),
    );
    stream.write_all(&message)?;
    let mut answer = [0u8; PROOF_BYTES];
    stream
        .read_exact(&mut answer)
        .map_err(|_| refused("the peer closed the handshake (another job or generation?)"))?;
    proof(secret, b"rosetta ring accept", &[&own, &challenge])
        .verify_slice(&answer)
        .map_err(|_| refused("the peer does not hold this generation's ring secret"))
}

/// The accepting side of the handshake on `stream`: challenges the peer, checks its header and
/// proof, and proves in turn that this rank holds the secret; the reason when it is refused.
fn check_hello(stream: &TcpStream, world: usize, prev_rank: usize, secret: &[u8]) -> std::result::Result<(), String> {
    let challenge = nonce().map_err(|e| format!("no random challenge: {e}"))?;
    (&*stream).write_all(&challenge).map_err(|e| format!("sending the challenge: {e}"))?;
    let mut message = [0u8; HEADER_BYTES + NONCE_BYTES + PROOF_BYTES];
    (&*stream).read_exact(&mut message).map_err(|e| format!("no handshake: {e}"))?;
    let (header, rest) = message.split_at(HEADER_BYTES);
    let (peer_nonce, presented) = rest.split_at(NONCE_BYTES);
    let field = |i: usize| u32::from_le_bytes([header[4 * i], header[4 * i + 1], header[4 * i + 2], header[4 * i + 3]]);
    if field(0) != MAGIC || field(1) != PROTOCOL {
        return Err(format!("not a Rosetta ring of protocol {PROTOCOL}"));
    }
    if field(2) as usize != world || field(3) as usize != prev_rank {
        return Err(format!("expected rank {prev_rank} of {world}, got rank {} of {}", field(3), field(2)));
    }
    proof(secret, b"rosetta ring connect", &[&challenge, header, peer_nonce])
        .verify_slice(presented)
        .map_err(|_| "wrong secret (not of this job's generation)".to_string())?;
    let answer = proof(secret, b"rosetta ring accept", &[peer_nonce, &challenge]).finalize().into_bytes();
    (&*stream).write_all(&answer).map_err(|e| format!("answering the handshake: {e}"))
}

impl TcpRing {
    /// Joins the ring: `listener` is this rank's bound socket (its address is `peers[rank]`);
    /// connects to `peers[rank + 1]` and accepts `peers[rank − 1]`, whose handshake must carry
    /// magic, protocol, world size, its rank and a proof that it holds the generation's
    /// `secret` (an HMAC over both sides' random challenges; the secret itself is never sent,
    /// and each side proves it to the other). A connection whose
    /// handshake fails is logged and dropped, and the ring keeps waiting for the right peer, at
    /// most `timeout` in all.
    pub fn connect(
        rank: usize,
        listener: TcpListener,
        peers: Vec<SocketAddr>,
        timeout: Duration,
        secret: &[u8],
    ) -> Result<Self> {
        let world = peers.len();
        if rank >= world {
            return Err(CollectiveError::invalid("rank", format!("{rank} is not below the world size {world}")));
        }
        if secret.len() > MAX_SECRET_BYTES {
            return Err(CollectiveError::invalid("ring secret", format!("at most {MAX_SECRET_BYTES} bytes")));
        }
        let mut ring = Self { rank, world, peers, links: None, timeout, bucket_bytes: DEFAULT_BUCKET_BYTES };
        if world == 1 {
            return Ok(ring);
        }
        let deadline = Instant::now() + timeout;
        let next_rank = (rank + 1) % world;
        let prev_rank = (rank + world - 1) % world;
        let next_address = ring.peers[next_rank];
        let own_secret = secret.to_vec();
        // Connect in a thread while accepting here: every rank does both at once.
        let connector = std::thread::spawn(move || -> std::io::Result<TcpStream> {
            let mut stream = connect_with_deadline(next_address, deadline)?;
            stream.set_nodelay(true)?;
            let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(50));
            stream.set_read_timeout(Some(remaining))?;
            greet(&mut stream, world, rank, &own_secret)?;
            Ok(stream)
        });
        let mut refused: Vec<String> = Vec::new();
        let accepted = loop {
            let stream = match accept_with_deadline(&listener, deadline) {
                Ok(stream) => stream,
                Err(e) => {
                    let refusals = if refused.is_empty() {
                        String::new()
                    } else {
                        format!("; refused {} connection(s): {}", refused.len(), refused.join("; "))
                    };
                    // What became of this rank's own connection, when it has ended too.
                    let outgoing = match connector.is_finished().then(|| connector.join()) {
                        Some(Ok(Err(error))) => format!("; connecting to rank {next_rank} at {next_address}: {error}"),
                        _ => String::new(),
                    };
                    return Err(ring.error(
                        "connect",
                        format!("waiting for rank {prev_rank} to connect: {e}{refusals}{outgoing}"),
                    ));
                }
            };
            let peer = stream.peer_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
            // A silent stranger may hold the accept loop for at most a couple of seconds.
            let patience = deadline
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(50), Duration::from_secs(2));
            stream.set_read_timeout(Some(patience)).map_err(|e| ring.error("connect", e.to_string()))?;
            match check_hello(&stream, world, prev_rank, secret) {
                Ok(()) => break stream,
                Err(reason) => {
                    tracing::warn!(rank, %peer, %reason, "ring connection refused at the handshake");
                    refused.push(format!("{peer}: {reason}"));
                }
            }
        };
        accepted.set_nodelay(true).map_err(|e| ring.error("connect", e.to_string()))?;
        let next = connector
            .join()
            .map_err(|_| ring.error("connect", "connector thread panicked".into()))?
            .map_err(|e| ring.error("connect", format!("connecting to rank {next_rank} at {next_address}: {e}")))?;
        for stream in [&next, &accepted] {
            stream.set_read_timeout(Some(timeout)).map_err(|e| ring.error("connect", e.to_string()))?;
            stream.set_write_timeout(Some(timeout)).map_err(|e| ring.error("connect", e.to_string()))?;
        }
        ring.links = Some(Mutex::new(Links { next, prev: accepted }));
        Ok(ring)
    }

    /// Sets the all-reduce bucket size in bytes.
    pub fn with_bucket_bytes(mut self, bytes: usize) -> Self {
        self.bucket_bytes = bytes.max(1024);
        self
    }

    fn error(&self, operation: &'static str, message: String) -> CollectiveError {
        CollectiveError::Collective { operation, rank: self.rank, message }
    }

    /// Sends `out` to the next rank while receiving `incoming.len()` bytes from the previous one.
    fn exchange(&self, links: &mut Links, operation: &'static str, out: &[u8], incoming: &mut [u8]) -> Result<()> {
        let next_rank = (self.rank + 1) % self.world;
        let prev_rank = (self.rank + self.world - 1) % self.world;
        let Links { next, prev } = links;
        let (sent, received) = std::thread::scope(|scope| {
            let sender = scope.spawn(|| next.write_all(out));
            let received = prev.read_exact(incoming);
            (sender.join(), received)
        });
        let timeout = self.timeout;
        let describe = |e: std::io::Error, peer: usize, direction: &str| {
            let what = if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
                format!("timed out after {timeout:?}")
            } else {
                e.to_string()
            };
            self.error(operation, format!("{direction} rank {peer} ({}): {what}", self.peers[peer]))
        };
        sent.map_err(|_| self.error(operation, "sender thread panicked".into()))?
            .map_err(|e| describe(e, next_rank, "sending to"))?;
        received.map_err(|e| describe(e, prev_rank, "receiving from"))
    }

    fn links(&self) -> Result<std::sync::MutexGuard<'_, Links>> {
        self.links
            .as_ref()
            .ok_or_else(|| self.error("ring", "no links (world of one)".into()))?
            .lock()
            .map_err(|_| self.error("ring", "a previous operation panicked".into()))
    }

    /// Ring all-reduce (sum) of `data` in place, bucket by bucket, without copying the
    /// outgoing chunks: a chunk is sent straight from `data` while another is received.
    fn all_reduce_values<T: bytemuck::Pod + std::ops::AddAssign>(&self, data: &mut [T]) -> Result<()> {
        let mut links = self.links()?;
        let world = self.world;
        let per_bucket = (self.bucket_bytes / std::mem::size_of::<T>()).max(world);
        let mut scratch: Vec<T> = Vec::new();
        for bucket in data.chunks_mut(per_bucket) {
            let len = bucket.len();
            let bounds = |c: usize| (len * c / world, len * (c + 1) / world);
            // Reduce-scatter: after world−1 steps rank r holds the sum of chunk r+1.
            for step in 0..world - 1 {
                let (ss, se) = bounds((self.rank + world - step) % world);
                let (rs, re) = bounds((self.rank + world - step - 1) % world);
                scratch.resize(re - rs, bytemuck::Zeroable::zeroed());
                self.exchange(
                    &mut links,
                    "all_reduce",
                    bytemuck::cast_slice(&bucket[ss..se]),
                    bytemuck::cast_slice_mut(&mut scratch),
                )?;
                for (target, value) in bucket[rs..re].iter_mut().zip(&scratch) {
                    *target += *value;
                }
            }
            // All-gather of the reduced chunks, received in place.
            for step in 0..world - 1 {
                let send = bounds((self.rank + 1 + world - step) % world);
                let receive = bounds((self.rank + world - step) % world);
                let (out, incoming) = disjoint(bucket, send, receive);
                self.exchange(&mut links, "all_reduce", bytemuck::cast_slice(out), bytemuck::cast_slice_mut(incoming))?;
            }
        }
        Ok(())
    }

    /// Passes every rank's blob around the ring; returns them in rank order.
    fn all_gather_blobs(&self, operation: &'static str, own: Vec<u8>) -> Result<Vec<Vec<u8>>> {
        let mut blobs = vec![Vec::new(); self.world];
        blobs[self.rank] = own;
        if self.world == 1 {
            return Ok(blobs);
        }
        let mut links = self.links()?;
        for step in 0..self.world - 1 {
            let send_from = (self.rank + self.world - step) % self.world;
            let recv_from = (self.rank + self.world - step - 1) % self.world;
            let mut length = [0u8; 8];
            let out_length = (blobs[send_from].len() as u64).to_le_bytes();
            self.exchange(&mut links, operation, &out_length, &mut length)?;
            let mut incoming = vec![0u8; u64::from_le_bytes(length) as usize];
            let out = std::mem::take(&mut blobs[send_from]);
            self.exchange(&mut links, operation, &out, &mut incoming)?;
            blobs[send_from] = out;
            blobs[recv_from] = incoming;
        }
        Ok(blobs)
    }
}

/// Splits `data` into the shared range `a` and the mutable range `b` (which must not overlap).
fn disjoint<T>(data: &mut [T], a: (usize, usize), b: (usize, usize)) -> (&[T], &mut [T]) {
    if a.1 <= b.0 {
        let (left, right) = data.split_at_mut(b.0);
        (&left[a.0..a.1], &mut right[..b.1 - b.0])
    } else {
        let (left, right) = data.split_at_mut(a.0);
        (&right[..a.1 - a.0], &mut left[b.0..b.1])
    }
}

/// Runs `f` on the values of a contiguous CPU tensor of element type `T`, in place.
fn with_values<T: bytemuck::Pod, R>(tensor: &mut Tensor, f: impl FnOnce(&mut [T]) -> R) -> R {
    let numel = tensor.numel();
    debug_assert!(tensor.is_contiguous() && tensor.device() == tch::Device::Cpu);
    // SAFETY: the tensor is contiguous, on the CPU, of element type `T` (checked by the caller
    // through its kind), holds `numel` elements, and `&mut` gives this function sole access.
    let values = unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr() as *mut T, numel) };
    f(values)
}

/// Serialises a CPU tensor: kind code, rank, dims, then little-endian values.
fn encode_tensor(tensor: &Tensor) -> Result<Vec<u8>> {
    let t = tensor.detach().to_device(tch::Device::Cpu).contiguous();
    let (code, values): (u8, Vec<u8>) = match t.kind() {
        Kind::Float => (0, bytemuck::cast_slice(&Vec::<f32>::try_from(&t.flatten(0, -1))?).to_vec()),
        Kind::Double => (1, bytemuck::cast_slice(&Vec::<f64>::try_from(&t.flatten(0, -1))?).to_vec()),
        Kind::Int64 => (2, bytemuck::cast_slice(&Vec::<i64>::try_from(&t.flatten(0, -1))?).to_vec()),
        other => return Err(CollectiveError::invalid("tensor", format!("kind {other:?} cannot cross the ring"))),
    };
    let dims = t.size();
    let mut out = Vec::with_capacity(2 + 8 * dims.len() + values.len());
    out.push(code);
    out.push(dims.len() as u8);
    for d in dims {
        out.extend(d.to_le_bytes());
    }
    out.extend(values);
    Ok(out)
}

/// Copies unaligned little-endian bytes into a vector of `T` (length a multiple of its size).
fn copy_out<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    let mut values = vec![T::zeroed(); bytes.len() / std::mem::size_of::<T>()];
    bytemuck::cast_slice_mut::<T, u8>(&mut values).copy_from_slice(bytes);
    values
}

fn decode_tensor(blob: &[u8]) -> Option<Tensor> {
    let (&code, rest) = blob.split_first()?;
    let (&ndim, mut rest) = rest.split_first()?;
    let mut dims = Vec::with_capacity(ndim as usize);
    for _ in 0..ndim {
        let (d, tail) = rest.split_at_checked(8)?;
        dims.push(i64::from_le_bytes(d.try_into().ok()?));
        rest = tail;
    }
    // The payload follows a 2 + 8·ndim byte header, so it is not aligned: copy it out.
    let width = if code == 0 { 4 } else { 8 };
    if rest.len() % width != 0 {
        return None;
    }
    let tensor = match code {
        0 => Tensor::from_slice(&copy_out::<f32>(rest)),
        1 => Tensor::from_slice(&copy_out::<f64>(rest)),
        2 => Tensor::from_slice(&copy_out::<i64>(rest)),
        _ => return None,
    };
    Some(tensor.view(dims.as_slice()))
}

impl Collective for TcpRing {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn all_gather(&self, tensor: &Tensor) -> Result<Vec<Tensor>> {
        let blobs = self.all_gather_blobs("all_gather", encode_tensor(tensor)?)?;
        blobs
            .iter()
            .enumerate()
            .map(|(r, b)| {
                decode_tensor(b)
                    .map(|t| t.to_device(tensor.device()))
                    .ok_or_else(|| self.error("all_gather", format!("malformed tensor from rank {r}")))
            })
            .collect()
    }
    fn all_reduce_sum(&self, tensor: &mut Tensor) -> Result<()> {
        if self.world == 1 {
            return Ok(());
        }
        let in_place = tensor.device() == tch::Device::Cpu && tensor.is_contiguous() && !tensor.requires_grad();
        let mut work =
            if in_place { tensor.shallow_clone() } else { tensor.detach().to_device(tch::Device::Cpu).contiguous() };
        match work.kind() {
            Kind::Float => with_values::<f32, _>(&mut work, |v| self.all_reduce_values(v))?,
            Kind::Double => with_values::<f64, _>(&mut work, |v| self.all_reduce_values(v))?,
            other => return Err(self.error("all_reduce", format!("kind {other:?} is not supported (f32, f64)"))),
        }
        if !in_place {
            let summed = work.to_device(tensor.device());
            tch::no_grad(|| tensor.copy_(&summed));
        }
        Ok(())
    }
    fn broadcast(&self, tensor: &mut Tensor, root: usize) -> Result<()> {
        if root >= self.world {
            return Err(self.error("broadcast", format!("root {root} out of range")));
        }
        // A gather of the root's blob only: others contribute nothing.
        let own = if self.rank == root { encode_tensor(tensor)? } else { Vec::new() };
        let blobs = self.all_gather_blobs("broadcast", own)?;
        let value =
            decode_tensor(&blobs[root]).ok_or_else(|| self.error("broadcast", "malformed tensor from root".into()))?;
        if value.size() != tensor.size() {
            return Err(self
                .error("broadcast", format!("root sent shape {:?}, this rank has {:?}", value.size(), tensor.size())));
        }
        let value = value.to_kind(tensor.kind()).to_device(tensor.device());
        tch::no_grad(|| tensor.copy_(&value));
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.all_gather_blobs("barrier", Vec::new()).map(|_| ())
    }
}
