//! Rosetta's side of `bench/collectives`: one rank of a TCP ring all-reducing f32 buffers of
//! several sizes; rank 0 prints one JSON line per size.
//!
//! usage: ring_bench RANK PEERS(comma-separated host:port) SIZES_MB(comma-separated) ITERATIONS

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use rosetta_collective::collective::Collective;
use rosetta_collective::ring::TcpRing;
use tch::{Kind, Tensor};

/// The ring secret of the benchmark's ranks.
const SECRET: &[u8] = b"ring-secret";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 5, "usage: ring_bench RANK PEERS SIZES_MB ITERATIONS");
    let rank: usize = args[1].parse()?;
    let peers: Vec<SocketAddr> = args[2].split(',').map(str::parse).collect::<Result<_, _>>()?;
    let sizes: Vec<usize> = args[3].split(',').map(str::parse).collect::<Result<_, _>>()?;
    let iterations: usize = args[4].parse()?;
    let listener = TcpListener::bind(peers[rank])?;
    let ring = TcpRing::connect(rank, listener, peers.clone(), Duration::from_secs(60), SECRET)?;
    let world = peers.len();
    for size_mb in sizes {
        let elements = (size_mb << 20) / 4;
        let mut buffer = Tensor::ones([elements as i64], (Kind::Float, tch::Device::Cpu));
        ring.all_reduce_sum(&mut buffer)?; // warm-up
        ring.barrier()?;
        let started = Instant::now();
        for _ in 0..iterations {
            ring.all_reduce_sum(&mut buffer)?;
        }
        ring.barrier()?;
        let seconds = started.elapsed().as_secs_f64() / iterations as f64;
        let bytes = (elements * 4) as f64;
        let bus_bandwidth = bytes / seconds * 2.0 * (world as f64 - 1.0) / world as f64;
        if rank == 0 {
            println!(
                "{}",
                serde_json::json!({"impl": "rosetta-ring", "size_mb": size_mb, "seconds": seconds,
                                   "bus_gbps": bus_bandwidth / 1e9})
            );
        }
    }
    Ok(())
}
