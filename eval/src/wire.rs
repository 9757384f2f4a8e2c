//! Compact binary framing of shard messages (thresholds and counts) between evaluation
//! processes: little-endian, length-prefixed, each message starting with a tag byte.

use std::io::{Read, Write};

use crate::error::{EvalError, Result};
use crate::rank::{Hit, ShardCounts, ShardThresholds};

const THRESHOLDS: u8 = 1;
const COUNTS: u8 = 2;
const SCORES: u8 = 3;
const QUERY_VECTORS: u8 = 4;

fn io(peer: &str, e: std::io::Error) -> EvalError {
    EvalError::invalid(peer, format!("pipe: {e}"))
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A reader over one message body that names the peer in its errors.
struct Body<'a> {
    bytes: &'a [u8],
    peer: &'a str,
}

impl Body<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.bytes.len() < n {
            return Err(EvalError::invalid(self.peer, "message ends early"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn len(&mut self, limit: usize) -> Result<usize> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= limit)
            .ok_or_else(|| EvalError::invalid(self.peer, format!("length {n} too large")))
    }
}

fn send(out: &mut impl Write, tag: u8, body: &[u8]) -> std::io::Result<()> {
    out.write_all(&[tag])?;
    out.write_all(&(body.len() as u64).to_le_bytes())?;
    out.write_all(body)?;
    out.flush()
}

fn receive(input: &mut impl Read, tag: u8, peer: &str) -> Result<Vec<u8>> {
    let mut head = [0u8; 9];
    input.read_exact(&mut head).map_err(|e| io(peer, e))?;
    if head[0] != tag {
        let got = if (THRESHOLDS..=QUERY_VECTORS).contains(&head[0]) {
            format!("message {}", head[0])
        } else {
            let text = String::from_utf8_lossy(&head);
            format!("{text:?}, which is not a message: something else wrote on the pipe")
        };
        return Err(EvalError::invalid(peer, format!("expected message {tag}, got {got}")));
    }
    let len = u64::from_le_bytes(head[1..].try_into().unwrap_or_default());
    let mut body = vec![0u8; usize::try_from(len).map_err(|_| EvalError::invalid(peer, "message too large"))?];
    input.read_exact(&mut body).map_err(|e| io(peer, e))?;
    Ok(body)
}

/// Sends round 1 of a shard.
pub fn send_thresholds(out: &mut impl Write, t: &ShardThresholds) -> std::io::Result<()> {
    let mut body = Vec::with_capacity(8 + t.scores.len() * 8);
    put_u64(&mut body, t.scores.len() as u64);
    for &(pair, score) in &t.scores {
        body.extend_from_slice(&pair.to_le_bytes());
        body.extend_from_slice(&score.to_le_bytes());
    }
    send(out, THRESHOLDS, &body)
}

/// Receives round 1 of the shard behind `peer`.
pub fn receive_thresholds(input: &mut impl Read, peer: &str) -> Result<ShardThresholds> {
    let bytes = receive(input, THRESHOLDS, peer)?;
    let mut body = Body { bytes: &bytes, peer };
    let n = body.len(bytes.len() / 8)?;
    let scores = (0..n).map(|_| Ok((body.u32()?, body.f32()?))).collect::<Result<_>>()?;
    Ok(ShardThresholds { scores })
}

fn send_floats(out: &mut impl Write, tag: u8, values: &[f32]) -> std::io::Result<()> {
    let mut body = Vec::with_capacity(8 + values.len() * 4);
    put_u64(&mut body, values.len() as u64);
    values.iter().for_each(|s| body.extend_from_slice(&s.to_le_bytes()));
    send(out, tag, &body)
}

fn receive_floats(input: &mut impl Read, tag: u8, peer: &str) -> Result<Vec<f32>> {
    let bytes = receive(input, tag, peer)?;
    let mut body = Body { bytes: &bytes, peer };
    let n = body.len(bytes.len() / 4)?;
    (0..n).map(|_| body.f32()).collect()
}

/// Sends every relevant pair's score (the merged thresholds) to a shard.
pub fn send_scores(out: &mut impl Write, scores: &[f32]) -> std::io::Result<()> {
    send_floats(out, SCORES, scores)
}

/// Receives the merged thresholds.
pub fn receive_scores(input: &mut impl Read, peer: &str) -> Result<Vec<f32>> {
    receive_floats(input, SCORES, peer)
}

/// Sends query embeddings (row-major): a worker's share, or every query's.
pub fn send_query_vectors(out: &mut impl Write, values: &[f32]) -> std::io::Result<()> {
    send_floats(out, QUERY_VECTORS, values)
}

/// Receives query embeddings.
pub fn receive_query_vectors(input: &mut impl Read, peer: &str) -> Result<Vec<f32>> {
    receive_floats(input, QUERY_VECTORS, peer)
}

/// Sends round 2 of a shard.
pub fn send_counts(out: &mut impl Write, c: &ShardCounts) -> std::io::Result<()> {
    let hits: usize = c.top.iter().map(Vec::len).sum();
    let mut body = Vec::with_capacity(16 + c.beaters.len() * 4 + c.top.len() * 8 + hits * 8);
    put_u64(&mut body, c.beaters.len() as u64);
    c.beaters.iter().for_each(|b| body.extend_from_slice(&b.to_le_bytes()));
    put_u64(&mut body, c.top.len() as u64);
    for list in &c.top {
        put_u64(&mut body, list.len() as u64);
        for hit in list {
            body.extend_from_slice(&hit.doc.to_le_bytes());
            body.extend_from_slice(&hit.score.to_le_bytes());
        }
    }
    send(out, COUNTS, &body)
}

/// Receives round 2 of the shard behind `peer`.
pub fn receive_counts(input: &mut impl Read, peer: &str) -> Result<ShardCounts> {
    let bytes = receive(input, COUNTS, peer)?;
    let limit = bytes.len() / 4;
    let mut body = Body { bytes: &bytes, peer };
    let n = body.len(limit)?;
    let beaters = (0..n).map(|_| body.u32()).collect::<Result<_>>()?;
    let lists = body.len(limit)?;
    let mut top = Vec::with_capacity(lists);
    for _ in 0..lists {
        let len = body.len(limit)?;
        top.push((0..len).map(|_| Ok(Hit { doc: body.u32()?, score: body.f32()? })).collect::<Result<Vec<_>>>()?);
    }
    Ok(ShardCounts { beaters, top })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_truncation_is_an_error() {
        let t = ShardThresholds { scores: vec![(0, 0.5), (7, -1.25)] };
        let c = ShardCounts { beaters: vec![1, 2, 3], top: vec![vec![Hit { doc: 4, score: 0.9 }], vec![]] };
        let mut buf = Vec::new();
        send_thresholds(&mut buf, &t).unwrap();
        send_scores(&mut buf, &[0.5, 0.25]).unwrap();
        send_counts(&mut buf, &c).unwrap();
        let mut input = buf.as_slice();
        assert_eq!(receive_thresholds(&mut input, "w").unwrap(), t);
        assert_eq!(receive_scores(&mut input, "w").unwrap(), vec![0.5, 0.25]);
        assert_eq!(receive_counts(&mut input, "w").unwrap(), c);
        let thresholds_len = 1 + 8 + 8 + 2 * 8;
        let mut short = &buf[..thresholds_len + 10];
        receive_thresholds(&mut short, "w").unwrap();
        let err = receive_scores(&mut short, "worker 2").unwrap_err().to_string();
        assert!(err.contains("worker 2"), "{err}");
        let mut wrong = buf.as_slice();
        let err = receive_counts(&mut wrong, "w").unwrap_err().to_string();
        assert!(err.contains("expected message 2, got message 1"), "{err}");
        let mut printed = b"onednn_verbose,v1,info".as_slice();
        let err = receive_counts(&mut printed, "w").unwrap_err().to_string();
        assert!(err.contains("got \"onednn_ve\", which is not a message"), "{err}");
    }
}
