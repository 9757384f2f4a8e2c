//! The TCP ring collective on loopback: every operation, bucketing, and failures with bounded
//! waits and named peers.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use rosetta_collective::collective::Collective;
use rosetta_collective::ring::TcpRing;
use tch::{Kind, Tensor};

/// The ring secret of these tests' generation.
const SECRET: &[u8] = b"ring-secret";

fn listeners(world: usize) -> (Vec<TcpListener>, Vec<SocketAddr>) {
    let listeners: Vec<TcpListener> = (0..world).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addresses = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    (listeners, addresses)
}

fn run_ring<T: Send + 'static>(world: usize, body: impl Fn(TcpRing) -> T + Send + Sync + Clone + 'static) -> Vec<T> {
    let (listeners, addresses) = listeners(world);
    let handles: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(rank, listener)| {
            let addresses = addresses.clone();
            let body = body.clone();
            std::thread::spawn(move || {
                let ring = TcpRing::connect(rank, listener, addresses, Duration::from_secs(20), SECRET)
                    .unwrap()
                    .with_bucket_bytes(4096);
                body(ring)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn all_operations_agree_with_their_definitions() {
    for world in [2, 3, 4] {
        run_ring(world, move |ring| {
            let r = ring.rank() as f64;
            // 10_001 floats over 4 KiB buckets: many buckets, uneven chunks.
            let values: Vec<f32> = (0..10_001).map(|i| (i % 97) as f32 * (r as f32 + 1.0)).collect();
            let mut x = Tensor::from_slice(&values).view([73, 137]);
            ring.all_reduce_sum(&mut x).unwrap();
            let factor: f32 = (1..=world).map(|k| k as f32).sum();
            let expected: Vec<f32> = (0..10_001).map(|i| (i % 97) as f32 * factor).collect();
            assert_eq!(Vec::<f32>::try_from(&x.flatten(0, -1)).unwrap(), expected);
            assert_eq!(x.size(), vec![73, 137]);

            let mut d = Tensor::from_slice(&[r, 0.5]).to_kind(Kind::Double);
            ring.all_reduce_sum(&mut d).unwrap();
            let total: f64 = (0..world).map(|k| k as f64).sum();
            assert_eq!(Vec::<f64>::try_from(&d).unwrap(), vec![total, 0.5 * world as f64]);

            let mine = Tensor::full([ring.rank() as i64 + 1, 2], r, (Kind::Float, tch::Device::Cpu));
            let gathered = ring.all_gather(&mine).unwrap();
            for (k, t) in gathered.iter().enumerate() {
                assert_eq!(t.size(), vec![k as i64 + 1, 2]);
                assert_eq!(t.double_value(&[0, 0]), k as f64);
            }
            let mut b = Tensor::from_slice(&[r, r]);
            ring.broadcast(&mut b, world - 1).unwrap();
            assert_eq!(Vec::<f64>::try_from(&b).unwrap(), vec![(world - 1) as f64; 2]);
            ring.barrier().unwrap();
        });
    }
}

#[test]
fn a_peer_that_never_comes_is_named_after_the_timeout() {
    let (mut listeners, addresses) = listeners(2);
    let started = Instant::now();
    let err = TcpRing::connect(0, listeners.remove(0), addresses, Duration::from_millis(300), SECRET)
        .unwrap_err()
        .to_string();
    assert!(err.contains("rank 0") && err.contains("rank 1"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_peer_that_dies_mid_run_fails_the_operation_with_its_name() {
    let (listeners, addresses) = listeners(2);
    let mut listeners = listeners.into_iter();
    let (l0, l1) = (listeners.next().unwrap(), listeners.next().unwrap());
    let a = addresses.clone();
    let dying = std::thread::spawn(move || {
        let ring = TcpRing::connect(1, l1, a, Duration::from_secs(10), SECRET).unwrap();
        ring.barrier().unwrap();
        drop(ring); // the process "crashes": its sockets close
    });
    let ring = TcpRing::connect(0, l0, addresses, Duration::from_millis(500), SECRET).unwrap();
    ring.barrier().unwrap();
    dying.join().unwrap();
    let mut x = Tensor::ones([100_000], (Kind::Float, tch::Device::Cpu));
    let err = ring.all_reduce_sum(&mut x).unwrap_err().to_string();
    assert!(err.contains("all_reduce") && err.contains("rank 1"), "{err}");
}

#[test]
fn a_stranger_is_refused_at_the_handshake() {
    let (listeners, mut addresses) = listeners(2);
    let mut listeners = listeners.into_iter();
    let (l0, l1) = (listeners.next().unwrap(), listeners.next().unwrap());
    // Rank 1 believes the world has 3 ranks (its next rank, 2, lives at rank 0's address).
    let wrong = vec![addresses[0], addresses[1], addresses[0]];
    let handle =
        std::thread::spawn(move || TcpRing::connect(1, l1, wrong, Duration::from_millis(800), SECRET).map(|_| ()));
    addresses.truncate(2);
    let err = TcpRing::connect(0, l0, addresses, Duration::from_millis(800), SECRET).unwrap_err().to_string();
    assert!(err.contains("expected rank 1 of 2, got rank 1 of 3"), "{err}");
    let _ = handle.join();
}

#[test]
fn intruders_are_dropped_and_the_ring_still_forms() {
    use std::io::Write;
    let (listeners, addresses) = listeners(2);
    let mut listeners = listeners.into_iter();
    let (l0, l1) = (listeners.next().unwrap(), listeners.next().unwrap());
    // Before the real rank 1 connects, three strangers knock at rank 0: one with a right header
    // and a guessed proof, one that speaks another protocol, one that connects and says nothing.
    let header: Vec<u8> = [0x524F_5354u32, 3, 2, 1].iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut wrong = std::net::TcpStream::connect(addresses[0]).unwrap();
    wrong.write_all(&[header.clone(), vec![7u8; 64]].concat()).unwrap();
    let mut other = std::net::TcpStream::connect(addresses[0]).unwrap();
    other.write_all(&[b"GET / HTTP/1.1\r\n".as_slice(), &[0u8; 66]].concat()).unwrap();
    let _silent = std::net::TcpStream::connect(addresses[0]).unwrap();
    let a = addresses.clone();
    let real = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        TcpRing::connect(1, l1, a, Duration::from_secs(20), SECRET).unwrap()
    });
    let ring = TcpRing::connect(0, l0, addresses, Duration::from_secs(20), SECRET).unwrap();
    let peer = real.join().unwrap();
    let other = std::thread::spawn(move || {
        let mut x = Tensor::from_slice(&[2.0f32]);
        peer.all_reduce_sum(&mut x).unwrap();
        Vec::<f32>::try_from(&x).unwrap()
    });
    let mut x = Tensor::from_slice(&[1.0f32]);
    ring.all_reduce_sum(&mut x).unwrap();
    assert_eq!(Vec::<f32>::try_from(&x).unwrap(), vec![3.0]);
    assert_eq!(other.join().unwrap(), vec![3.0]);
}

#[test]
fn the_secret_never_crosses_the_wire_and_a_listener_without_it_is_refused() {
    use std::io::{Read, Write};
    // A stranger listens where rank 0 expects rank 1: it records what rank 0 sends and
    // answers with a challenge, but cannot prove it holds the secret.
    let (listeners, addresses) = listeners(2);
    let mut listeners = listeners.into_iter();
    let (l0, stranger) = (listeners.next().unwrap(), listeners.next().unwrap());
    let recorder = std::thread::spawn(move || {
        let (mut stream, _) = stranger.accept().unwrap();
        stream.write_all(&[9u8; 32]).unwrap();
        let mut seen = vec![0u8; 80];
        stream.read_exact(&mut seen).unwrap();
        stream.write_all(&[0u8; 32]).unwrap();
        seen
    });
    let err = TcpRing::connect(0, l0, addresses, Duration::from_secs(2), SECRET).unwrap_err().to_string();
    let seen = recorder.join().unwrap();
    assert!(!seen.windows(SECRET.len()).any(|w| w == SECRET), "the secret was sent in clear");
    assert!(err.contains("does not hold this generation's ring secret"), "{err}");
}

#[test]
fn a_peer_with_another_generations_secret_is_refused_and_named() {
    let (listeners, addresses) = listeners(2);
    let mut listeners = listeners.into_iter();
    let (l0, l1) = (listeners.next().unwrap(), listeners.next().unwrap());
    let a = addresses.clone();
    let stale = std::thread::spawn(move || {
        TcpRing::connect(1, l1, a, Duration::from_millis(800), b"old generation").map(|_| ())
    });
    let err = TcpRing::connect(0, l0, addresses, Duration::from_millis(800), SECRET).unwrap_err().to_string();
    assert!(err.contains("refused 1 connection(s)") && err.contains("wrong secret"), "{err}");
    let _ = stale.join();
}
