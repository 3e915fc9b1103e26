//! Bulk: one connection, a writer thread sending large chunks for a fixed time while the main
//! thread reads the echo and checks that every byte comes back, in order.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::connect::{self, PATIENCE};
use super::measure::CpuWatch;
use super::{Failures, Report};

pub struct Bulk {
    pub server: SocketAddr,
    /// Bytes per write: a multiple of 8 (see [`Stream`]).
    pub chunk: usize,
    /// How long the writer writes.
    pub secs: Duration,
    pub server_pid: Option<i32>,
}

/// The bytes sent: the stream is a run of 64-bit little-endian words counting up from 0, so
/// each byte's value says where in the stream it belongs, and a byte lost, repeated or
/// reordered anywhere is caught where it happens.
struct Stream {
    offset: u64,
}

impl Stream {
    fn byte_at(offset: u64) -> u8 {
        ((offset / 8) >> (8 * (offset % 8))) as u8
    }

    /// Fills `buf` (a multiple of 8 long, and at a multiple of 8) with what comes next.
    fn fill(&mut self, buf: &mut [u8]) {
        for (i, word) in buf.chunks_exact_mut(8).enumerate() {
            word.copy_from_slice(&(self.offset / 8 + i as u64).to_le_bytes());
        }
        self.offset += buf.len() as u64;
    }

    /// Checks that `bytes` are what comes next; on a wrong byte, its offset in the stream.
    fn check(&mut self, bytes: &[u8]) -> Result<(), u64> {
        let mut rest = bytes;
        while !self.offset.is_multiple_of(8) && !rest.is_empty() {
            self.check_byte(rest[0])?;
            rest = &rest[1..];
        }
        let words = rest.chunks_exact(8);
        let tail = words.remainder();
        // Every word at once, with no branch (so the compiler can use vector instructions): the
        // reader checks every byte the server echoes, and must not be slower than the server.
        // Only a run with a wrong word goes through it again to find the wrong byte.
        let first = self.offset / 8;
        let wrong = words.clone().zip(first..).fold(0, |bits, (word, n)| {
            bits | (u64::from_le_bytes(word.try_into().expect("8 bytes")) ^ n)
        });
        if wrong != 0 {
            for word in words {
                for &byte in word {
                    self.check_byte(byte)?;
                }
            }
        } else {
            self.offset += 8 * words.len() as u64;
        }
        for &byte in tail {
            self.check_byte(byte)?;
        }
        Ok(())
    }

    fn check_byte(&mut self, byte: u8) -> Result<(), u64> {
        if byte != Stream::byte_at(self.offset) {
            return Err(self.offset);
        }
        self.offset += 1;
        Ok(())
    }
}

/// Writes for `secs`, then half-closes (`shutdown(SHUT_WR)`): the server sees end-of-file once
/// it has read everything, echoes the rest, and closes. Returns the bytes written, and why it
/// stopped early if it did.
fn write_for(mut stream: TcpStream, chunk: usize, secs: Duration) -> (u64, Option<String>) {
    let mut buf = vec![0u8; chunk];
    let mut stream_out = Stream { offset: 0 };
    let end = Instant::now() + secs;
    let mut failure = None;
    while Instant::now() < end {
        stream_out.fill(&mut buf);
        if let Err(e) = stream.write_all(&buf) {
            failure = Some(format!(
                "the writer stopped after about {} bytes: {e}",
                stream_out.offset
            ));
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
    // A failed write_all may have sent part of its chunk; the reader's count is the truth.
    (stream_out.offset, failure)
}

/// # Errors
/// When the connection cannot be set up. What goes wrong after is in the report.
pub fn run(load: &Bulk) -> Result<Report, String> {
    if load.chunk == 0 || !load.chunk.is_multiple_of(8) {
        return Err(format!("--chunk {} is not a positive multiple of 8", load.chunk));
    }
    let stream = connect::echoed(load.server, 1)?.pop().expect("one connection");
    let timeouts = stream
        .set_read_timeout(Some(PATIENCE))
        .and_then(|()| stream.set_write_timeout(Some(PATIENCE)));
    timeouts.map_err(|e| format!("SO_RCVTIMEO, SO_SNDTIMEO: {e}"))?;
    let writer_half = stream.try_clone().map_err(|e| format!("dup: {e}"))?;
    let mut failures = Failures::default();

    let cpu = CpuWatch::start(load.server_pid);
    let start = Instant::now();
    let (chunk, secs) = (load.chunk, load.secs);
    let writer = std::thread::spawn(move || write_for(writer_half, chunk, secs));
    let mut stream_in = Stream { offset: 0 };
    let mut buf = vec![0u8; 64 * 1024];
    let mut reached_end = false;
    loop {
        match (&stream).read(&mut buf) {
            Ok(0) => {
                reached_end = true;
                break;
            }
            Ok(n) => {
                if let Err(offset) = stream_in.check(&buf[..n]) {
                    failures.add(format!(
                        "byte {offset} came back wrong (lost, repeated or reordered bytes before it)"
                    ));
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                failures.add(format!("reading the echo after {} bytes: {e}", stream_in.offset));
                break;
            }
        }
    }
    if !reached_end {
        // Stop the writer too: nobody reads the echo any more, so it would block until its timeout.
        let _ = stream.shutdown(Shutdown::Both);
    }
    let elapsed = start.elapsed();
    let cpu = cpu.stop();
    let (written, write_failure) = writer.join().unwrap_or((0, Some("the writer thread panicked".into())));
    if let Some(failure) = write_failure {
        failures.add(failure);
    }
    let received = stream_in.offset;
    if reached_end && received < written {
        failures.lead(format!(
            "only {received} of {written} bytes came back: the server closed the connection early"
        ));
    }

    let secs = elapsed.as_secs_f64();
    let mb_per_s = received as f64 / secs / 1e6;
    let summary = format!(
        "bulk, one connection, {} KiB writes with the echo read at the same time: {} MB in {secs:.2} s, \
         {mb_per_s:.0} MB/s echoed; {}",
        load.chunk / 1024,
        received / 1_000_000,
        cpu.describe(),
    );
    let mut report = Report::new("bulk", summary, failures);
    report.figure("mb_per_s", mb_per_s);
    report.figure("bytes", received as f64);
    report.figure("chunk", load.chunk as f64);
    report.figure("secs", secs);
    report.cpu(cpu);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_reads_back_in_any_split_and_catches_a_lost_byte() {
        let mut sent = vec![0u8; 4096];
        Stream { offset: 0 }.fill(&mut sent);
        let mut whole = Stream { offset: 0 };
        for piece in sent.chunks(13) {
            assert_eq!(whole.check(piece), Ok(()));
        }
        assert_eq!(whole.offset, 4096);
        let mut lossy = Stream { offset: 0 };
        assert_eq!(lossy.check(&sent[..1000]), Ok(()));
        assert_eq!(lossy.check(&sent[1001..2000]), Err(1000));
        let mut repeated = Stream { offset: 0 };
        assert_eq!(repeated.check(&sent[..1024]), Ok(()));
        assert_eq!(repeated.check(&sent[..8]), Err(1024));
    }
}
