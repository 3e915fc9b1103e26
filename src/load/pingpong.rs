//! Ping-pong: every connection sends a message, waits until all of it has come back, checks it
//! byte for byte, and sends the next. Messages per second, and the round trip's latency.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use super::connect::{self, PATIENCE};
use super::measure::{CpuWatch, Histogram};
use super::{Failures, Report, timeout_until};

/// The largest message: one that always fits the socket's send buffer, so every send is whole
/// (a ping-pong has one message in flight per connection, and the buffer is empty when it goes).
pub const MAX_SIZE: usize = 4096;

pub struct PingPong {
    pub server: SocketAddr,
    /// Connections exchanging messages.
    pub conns: usize,
    /// Connections opened first and held open without a word: what a server with many
    /// quiet clients pays for them.
    pub idle: usize,
    /// Bytes per message.
    pub size: usize,
    /// Exchanges before this are not counted: connections and caches settle.
    pub warmup: Duration,
    /// How long the counted part lasts.
    pub secs: Duration,
    pub server_pid: Option<i32>,
}

/// One connection and the message it has in flight.
struct Conn {
    stream: TcpStream,
    /// Its first 8 bytes are a sequence number, the next 4 the connection's index, so no
    /// reply can pass for another's.
    message: Vec<u8>,
    sequence: u64,
    /// How much of the message has come back.
    received: usize,
    sent_at: Instant,
    open: bool,
}

impl Conn {
    fn new(stream: TcpStream, index: usize, size: usize) -> Conn {
        let mut message: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let index = (index as u32).to_le_bytes();
        let at = 8.min(size);
        let len = index.len().min(size - at);
        message[at..at + len].copy_from_slice(&index[..len]);
        Conn {
            stream,
            message,
            sequence: 0,
            received: 0,
            sent_at: Instant::now(),
            open: true,
        }
    }

    /// Sends the next message, whole.
    fn send(&mut self, now: Instant) -> Result<(), String> {
        self.sequence += 1;
        let sequence = self.sequence.to_le_bytes();
        let len = sequence.len().min(self.message.len());
        self.message[..len].copy_from_slice(&sequence[..len]);
        self.received = 0;
        self.sent_at = now;
        match (&self.stream).write(&self.message) {
            Ok(n) if n == self.message.len() => Ok(()),
            Ok(n) => Err(format!(
                "a {}-byte send was short ({n}) into an empty send buffer",
                self.message.len()
            )),
            Err(e) => Err(format!("send: {e}")),
        }
    }

    /// Takes `bytes` as the next part of the reply; true once the reply is whole.
    fn take(&mut self, bytes: &[u8]) -> Result<bool, String> {
        let expected = &self.message[self.received..];
        if bytes.len() > expected.len() {
            return Err(format!(
                "message {}: {} bytes came back where {} were still owed",
                self.sequence,
                bytes.len(),
                expected.len()
            ));
        }
        // One comparison of the slices (memcmp); the byte that differs is looked for only when
        // one does. A byte-by-byte search of every reply was the load's costliest step, and the
        // load must not be what limits a server.
        if bytes != &expected[..bytes.len()] {
            let at = bytes
                .iter()
                .zip(expected)
                .position(|(got, sent)| got != sent)
                .unwrap_or(0);
            return Err(format!(
                "message {}: byte {} came back as {:#04x}, was sent as {:#04x}",
                self.sequence,
                self.received + at,
                bytes[at],
                expected[at]
            ));
        }
        self.received += bytes.len();
        Ok(self.received == self.message.len())
    }
}

/// What the measured interval saw.
struct Tally {
    latencies: Histogram,
    failures: Failures,
}

/// Opens the idle connections, then the busy ones, exchanges messages for `warmup + secs`,
/// and reports on the last `secs`.
///
/// # Errors
/// When the connections cannot be set up. Failures during the run (a wrong byte, a dropped
/// connection, a server that stops answering) are in the report instead.
pub fn run(load: &PingPong) -> Result<Report, String> {
    if load.conns == 0 || load.size == 0 || load.size > MAX_SIZE {
        return Err(format!(
            "ping-pong needs at least one connection and a size of 1 to {MAX_SIZE} bytes"
        ));
    }
    let idle = connect::echoed(load.server, load.idle)?;
    let streams = connect::echoed(load.server, load.conns)?;
    let mut conns: Vec<Conn> = streams
        .into_iter()
        .enumerate()
        .map(|(index, stream)| Conn::new(stream, index, load.size))
        .collect();
    let mut tally = Tally {
        latencies: Histogram::default(),
        failures: Failures::default(),
    };
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let end = measure_from + load.secs;
    let cpu = if conns.len() == 1 {
        one_connection(&mut conns[0], &mut tally, load, measure_from, end)?
    } else {
        many_connections(&mut conns, &mut tally, load, measure_from, end)?
    };
    let still_idle = idle.iter().filter(|stream| is_quiet(stream)).count();
    if still_idle < idle.len() {
        tally.failures.add(format!(
            "{} of {} idle connections were closed or spoken to by the server",
            idle.len() - still_idle,
            idle.len()
        ));
    }
    drop(idle);

    let secs = load.secs.as_secs_f64();
    let messages = tally.latencies.count() as f64;
    let msgs_per_s = messages / secs;
    let mb_per_s = msgs_per_s * load.size as f64 / 1e6;
    let p50 = tally.latencies.quantile_us(0.5).unwrap_or(f64::NAN);
    let p99 = tally.latencies.quantile_us(0.99).unwrap_or(f64::NAN);
    let summary = format!(
        "ping-pong, {} B messages, {} connection{}{}, {secs:.1} s: {msgs_per_s:.0} msgs/s ({mb_per_s:.1} MB/s echoed), \
         round trip p50 {p50:.1} µs, p99 {p99:.1} µs; {}",
        load.size,
        load.conns,
        if load.conns == 1 { "" } else { "s" },
        if load.idle > 0 {
            format!(" + {} idle", load.idle)
        } else {
            String::new()
        },
        cpu.describe(),
    );
    let mut report = Report::new("pingpong", summary, tally.failures);
    report.figure("msgs_per_s", msgs_per_s);
    report.figure("mb_per_s", mb_per_s);
    report.figure("p50_us", p50);
    report.figure("p99_us", p99);
    report.figure("conns", load.conns as f64);
    report.figure("idle", load.idle as f64);
    report.figure("size", load.size as f64);
    report.figure("secs", secs);
    report.cpu(cpu);
    Ok(report)
}

/// One connection: blocking send, blocking recv. No epoll_wait between them, so the load adds
/// as little as it can to each round trip.
fn one_connection(
    conn: &mut Conn,
    tally: &mut Tally,
    load: &PingPong,
    measure_from: Instant,
    end: Instant,
) -> Result<super::measure::CpuUse, String> {
    conn.stream
        .set_read_timeout(Some(PATIENCE))
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    let mut buf = vec![0u8; load.size];
    let mut cpu = None;
    let mut now = Instant::now();
    'run: while now < end {
        if cpu.is_none() && now >= measure_from {
            cpu = Some(CpuWatch::start(load.server_pid));
        }
        if let Err(failure) = conn.send(now) {
            tally.failures.add(format!("the connection: {failure}"));
            break;
        }
        loop {
            let n = match (&conn.stream).read(&mut buf) {
                Ok(0) => {
                    tally.failures.add(format!(
                        "the server closed the connection after {} messages",
                        conn.sequence - 1
                    ));
                    break 'run;
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tally
                        .failures
                        .add(format!("the connection, message {}: {e}", conn.sequence));
                    break 'run;
                }
            };
            match conn.take(&buf[..n]) {
                Ok(true) => break,
                Ok(false) => {}
                Err(failure) => {
                    tally.failures.add(format!("the connection: {failure}"));
                    break 'run;
                }
            }
        }
        now = Instant::now();
        if now >= measure_from && now < end {
            tally.latencies.record(now - conn.sent_at);
        }
    }
    Ok(cpu.unwrap_or_else(|| CpuWatch::start(load.server_pid)).stop())
}

/// Many connections: one epoll instance, level-triggered, one read per ready connection; a
/// whole reply is checked, timed, and answered by the next message at once.
fn many_connections(
    conns: &mut [Conn],
    tally: &mut Tally,
    load: &PingPong,
    measure_from: Instant,
    end: Instant,
) -> Result<super::measure::CpuUse, String> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| format!("epoll_create1: {e}"))?;
    for (index, conn) in conns.iter().enumerate() {
        conn.stream
            .set_nonblocking(true)
            .map_err(|e| format!("O_NONBLOCK: {e}"))?;
        epoll
            .add(&conn.stream, EpollEvent::new(EpollFlags::EPOLLIN, index as u64))
            .map_err(|e| format!("epoll_ctl(EPOLL_CTL_ADD): {e}"))?;
    }
    let now = Instant::now();
    for (index, conn) in conns.iter_mut().enumerate() {
        if let Err(failure) = conn.send(now) {
            tally.failures.add(format!("connection {index}: {failure}"));
            conn.open = false;
        }
    }
    let mut events = vec![EpollEvent::empty(); 256];
    let mut buf = vec![0u8; 64 * 1024];
    let mut cpu = None;
    let mut last_reply = Instant::now();
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if cpu.is_none() && now >= measure_from {
            cpu = Some(CpuWatch::start(load.server_pid));
        }
        if now - last_reply > PATIENCE {
            tally
                .failures
                .add(format!("no reply on any connection for {PATIENCE:?}"));
            break;
        }
        let next_mark = if cpu.is_none() { measure_from } else { end };
        let ready = match epoll.wait(&mut events, timeout_until(next_mark)) {
            Ok(ready) => ready,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("epoll_wait: {e}")),
        };
        for event in &events[..ready] {
            let index = event.data() as usize;
            let conn = &mut conns[index];
            if !conn.open {
                continue;
            }
            let outcome = match (&conn.stream).read(&mut buf) {
                Ok(0) => Err(format!("the server closed it after {} messages", conn.sequence - 1)),
                Ok(n) => conn.take(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Ok(false),
                Err(e) => Err(format!("recv: {e}")),
            };
            let outcome = match outcome {
                Ok(true) => {
                    let now = Instant::now();
                    last_reply = now;
                    if now >= measure_from && now < end {
                        tally.latencies.record(now - conn.sent_at);
                    }
                    conn.send(now)
                }
                Ok(false) => Ok(()),
                Err(failure) => Err(failure),
            };
            if let Err(failure) = outcome {
                tally.failures.add(format!("connection {index}: {failure}"));
                conn.open = false;
                let _ = epoll.delete(&conn.stream);
            }
        }
    }
    Ok(cpu.unwrap_or_else(|| CpuWatch::start(load.server_pid)).stop())
}

/// An idle connection is fine if the server has neither closed it nor sent it anything.
fn is_quiet(stream: &TcpStream) -> bool {
    let _ = stream.set_nonblocking(true);
    let mut byte = [0u8];
    matches!(stream.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
}
