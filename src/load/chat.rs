//! Chat fan-out: N clients in the room each say M lines; every line must reach the N-1 others,
//! each sender's lines in the order said. Lines delivered per second, and what was lost.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use super::connect::PATIENCE;
use super::measure::CpuWatch;
use super::{Failures, Report, timeout_until};

/// Clients connected before waiting for the room's welcome: below the listen backlog.
const BATCH: usize = 64;

/// Once lines are flowing, this long with no byte arriving anywhere ends the run (with loss,
/// if lines are missing): on loopback a room that is still working is never this quiet.
const QUIET: Duration = Duration::from_secs(2);

pub struct Chat {
    pub server: SocketAddr,
    pub clients: usize,
    /// Lines each client says.
    pub lines: usize,
    /// How far a sender may be ahead of the delivery of its lines: it may say line k once
    /// (k - window) x (clients - 1) deliveries of its lines have been made, counted over all its
    /// receivers. 0: no limit, each client sends all its lines at once and TCP paces it.
    pub window: usize,
    /// The longest the lines may take to arrive.
    pub timeout: Duration,
    pub server_pid: Option<i32>,
}

struct Client {
    stream: TcpStream,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// Lines formatted for sending; `outgoing[sent..]` is not sent yet.
    outgoing: Vec<u8>,
    sent: usize,
    /// How many of its lines it has formatted.
    said: usize,
    /// Its last send met a full buffer: wait for EPOLLOUT.
    blocked: bool,
    /// Registered for EPOLLOUT as well as EPOLLIN.
    watching_out: bool,
    welcomed: bool,
    open: bool,
}

/// What arrived, and what was wrong with it.
struct Tally {
    clients: usize,
    /// `got[receiver * clients + sender]`: lines of the sender the receiver has received.
    got: Vec<u32>,
    /// `next[receiver * clients + sender]`: the number the receiver expects next from the sender.
    next: Vec<u32>,
    /// Per sender: its lines delivered, plus those that can no longer be (their receiver left).
    settled_from: Vec<u64>,
    delivered: u64,
    out_of_order: u64,
    welcomes: usize,
    joins: u64,
    last_delivery: Instant,
    /// Senders whose window has opened by a line since they were last asked to send.
    opened: Vec<usize>,
    failures: Failures,
}

impl Tally {
    /// One line arrived at `receiver`, without its newline: `HH:MM:SS ` and then a notice
    /// (`* ...`), an error (`! ...`) or `NAME say: TEXT`.
    fn line(&mut self, receiver: usize, line: &[u8]) {
        let Some((sender, number)) = bench_line(line) else {
            let text = line.get(9..).unwrap_or_default();
            match text.strip_prefix(b"* ") {
                Some(notice) if notice.starts_with(b"welcome") => self.welcomes += 1,
                Some(notice) if notice.ends_with(b" joined") => self.joins += 1,
                Some(_) => {}
                None => self.failures.add(format!(
                    "client {receiver} got a line that is neither a notice nor a relayed bench line: {:?}",
                    String::from_utf8_lossy(line)
                )),
            }
            return;
        };
        let sender = sender as usize;
        if sender >= self.clients || sender == receiver {
            self.failures.add(format!(
                "client {receiver} got a line from client {sender}, which it cannot"
            ));
            return;
        }
        let pair = receiver * self.clients + sender;
        if number != self.next[pair] {
            self.out_of_order += 1;
            self.failures.add(format!(
                "client {receiver} got line {number} of client {sender} where it expected line {}",
                self.next[pair]
            ));
        }
        self.next[pair] = number + 1;
        self.got[pair] += 1;
        self.settled_from[sender] += 1;
        self.delivered += 1;
        if self.settled_from[sender].is_multiple_of(self.clients as u64 - 1) {
            self.opened.push(sender); // one of its lines has reached (or passed) everyone
        }
    }

    /// A receiver left: what it had not received from each sender can no longer be delivered.
    fn lost_receiver(&mut self, receiver: usize, lines: usize) {
        for sender in 0..self.clients {
            if sender != receiver {
                let got = self.got[receiver * self.clients + sender] as u64;
                self.settled_from[sender] += (lines as u64).saturating_sub(got);
                self.opened.push(sender);
            }
        }
    }
}

/// `HH:MM:SS NAME say: bench SENDER NUMBER`: the sender and the line's number. Read from the
/// end, so the time and the name (which the load does not check) cost nothing: this runs for
/// every line delivered, tens of millions a run.
fn bench_line(line: &[u8]) -> Option<(u32, u32)> {
    let (rest, number) = last_number(line)?;
    let (rest, sender) = last_number(rest.strip_suffix(b" ")?)?;
    rest.strip_suffix(b" say: bench ")?;
    Some((sender, number))
}

/// The decimal number at the end of `bytes` (at most 9 digits, so it cannot overflow), and
/// what comes before it.
fn last_number(bytes: &[u8]) -> Option<(&[u8], u32)> {
    let digits = bytes.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 9 {
        return None;
    }
    let (rest, digits) = bytes.split_at(bytes.len() - digits);
    Some((rest, digits.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0'))))
}

/// Where the first `\n` in `bytes` is. Eight bytes at a time: a byte equal to `\n` is a zero
/// byte after XOR, and `(x - 0x01..01) & !x & 0x80..80` marks the lowest zero byte of `x`.
fn find_newline(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const NEWLINES: u64 = ONES * b'\n' as u64;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes")) ^ NEWLINES;
        let zero = x.wrapping_sub(ONES) & !x & HIGHS;
        if zero != 0 {
            return Some(at + zero.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    words.remainder().iter().position(|&b| b == b'\n').map(|i| at + i)
}

/// The clients, the epoll instance that watches them, and the tally.
struct Room<'a> {
    load: &'a Chat,
    clients: Vec<Client>,
    epoll: Epoll,
    tally: Tally,
    buf: Vec<u8>,
    sending: bool,
}

/// # Errors
/// When the clients cannot get into the room. Loss, drops and disorder are in the report.
pub fn run(load: &Chat) -> Result<Report, String> {
    if load.clients < 2 || load.lines == 0 {
        return Err("chat fan-out needs at least 2 clients and 1 line".into());
    }
    let n = load.clients;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| format!("epoll_create1: {e}"))?;
    let mut room = Room {
        load,
        clients: Vec::with_capacity(n),
        epoll,
        tally: Tally {
            clients: n,
            got: vec![0; n * n],
            next: vec![0; n * n],
            settled_from: vec![0; n],
            delivered: 0,
            out_of_order: 0,
            welcomes: 0,
            joins: 0,
            last_delivery: Instant::now(),
            opened: Vec::with_capacity(n),
            failures: Failures::default(),
        },
        buf: vec![0u8; 64 * 1024],
        sending: false,
    };
    room.enter()?;

    let expected = (n * (n - 1) * load.lines) as u64;
    let cpu = CpuWatch::start(load.server_pid);
    let start = Instant::now();
    room.tally.last_delivery = start;
    room.sending = true;
    for index in 0..n {
        room.send(index);
    }
    let deadline = start + load.timeout;
    let mut last_byte = start;
    while room.tally.delivered < expected {
        let now = Instant::now();
        if now >= deadline {
            room.tally.failures.add(format!("timed out after {:?}", load.timeout));
            break;
        }
        if now - last_byte > QUIET {
            break; // nothing more is coming: what is missing is lost
        }
        if room.pump(deadline.min(now + QUIET))? {
            last_byte = Instant::now();
        }
    }
    let tally = &mut room.tally;
    // A complete run's work ends with its last delivery; an incomplete one's with the quiet
    // spell that ended it.
    let cpu = match tally.delivered {
        n if n == expected => cpu.stop_over(tally.last_delivery - start),
        _ => cpu.stop(),
    };
    let secs = (tally.last_delivery - start).as_secs_f64().max(1e-9);
    let lost = expected - tally.delivered.min(expected);
    let dropped = room.clients.iter().filter(|c| !c.open).count();
    if lost > 0 {
        tally.failures.lead(format!(
            "{lost} of {expected} deliveries lost ({:.2} %); {dropped} clients disconnected by the server",
            lost as f64 * 100.0 / expected as f64
        ));
    }
    let lines_per_s = tally.delivered as f64 / secs;
    let window = match load.window {
        0 => "no window: each says all its lines at once".to_string(),
        w => format!(
            "window {w}: line k once (k - {w}) x {} of the sender's lines arrived",
            n - 1
        ),
    };
    let summary = format!(
        "chat fan-out, {n} clients x {} lines ({window}): {} of {expected} lines delivered in {secs:.2} s, \
         {lines_per_s:.0} lines/s; lost {lost}, dropped {dropped}, out of order {}; {}",
        load.lines,
        tally.delivered,
        tally.out_of_order,
        cpu.describe(),
    );
    let failures = std::mem::take(&mut tally.failures);
    let (delivered, out_of_order) = (tally.delivered, tally.out_of_order);
    let mut report = Report::new("chat", summary, failures);
    report.figure("lines_per_s", lines_per_s);
    report.figure("delivered", delivered as f64);
    report.figure("expected", expected as f64);
    report.figure("lost", lost as f64);
    report.figure("dropped", dropped as f64);
    report.figure("out_of_order", out_of_order as f64);
    report.figure("clients", n as f64);
    report.figure("lines", load.lines as f64);
    report.figure("window", load.window as f64);
    report.figure("secs", secs);
    report.cpu(cpu);
    Ok(report)
}

impl Room<'_> {
    /// Connects every client, a batch at a time, and waits until each is welcomed and has
    /// heard everyone after it join: from then on every line reaches everyone.
    fn enter(&mut self) -> Result<(), String> {
        let n = self.load.clients;
        while self.clients.len() < n {
            let first = self.clients.len();
            for index in first..n.min(first + BATCH) {
                let server = self.load.server;
                let stream =
                    TcpStream::connect(server).map_err(|e| format!("connect {server} (client {index}): {e}"))?;
                stream
                    .set_nodelay(true)
                    .and_then(|()| stream.set_nonblocking(true))
                    .map_err(|e| format!("client {index}: {e}"))?;
                self.epoll
                    .add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, index as u64))
                    .map_err(|e| format!("epoll_ctl(EPOLL_CTL_ADD): {e}"))?;
                self.clients.push(Client {
                    stream,
                    partial: Vec::with_capacity(256),
                    outgoing: Vec::with_capacity(64 * 1024),
                    sent: 0,
                    said: 0,
                    blocked: false,
                    watching_out: false,
                    welcomed: false,
                    open: true,
                });
            }
            let count = self.clients.len();
            self.settle(|tally| tally.welcomes >= count, "welcome")?;
        }
        let joins = (n * (n - 1) / 2) as u64;
        self.settle(|tally| tally.joins >= joins, "join notices")?;
        if let Some(index) = self.clients.iter().position(|c| !c.welcomed || !c.open) {
            return Err(format!("client {index} was not welcomed into the room"));
        }
        if !self.tally.failures.is_empty() {
            return Err(format!("entering the room: {}", self.tally.failures.first()));
        }
        Ok(())
    }

    /// Pumps events until `done`, for at most [`PATIENCE`].
    fn settle(&mut self, done: impl Fn(&Tally) -> bool, what: &str) -> Result<(), String> {
        let give_up = Instant::now() + PATIENCE;
        while !done(&self.tally) {
            if Instant::now() >= give_up {
                return Err(format!("the room's {what} did not all arrive within {PATIENCE:?}"));
            }
            self.pump(give_up)?;
        }
        Ok(())
    }

    /// One epoll_wait (until `until` at the latest), and what it reports; true if any byte came.
    fn pump(&mut self, until: Instant) -> Result<bool, String> {
        let mut events = [EpollEvent::empty(); 256];
        let ready = match self.epoll.wait(&mut events, timeout_until(until)) {
            Ok(ready) => ready,
            Err(nix::errno::Errno::EINTR) => return Ok(false),
            Err(e) => return Err(format!("epoll_wait: {e}")),
        };
        let mut arrived = false;
        for event in &events[..ready] {
            let index = event.data() as usize;
            if !self.clients[index].open {
                continue;
            }
            if event.events().contains(EpollFlags::EPOLLOUT) {
                self.clients[index].blocked = false;
                self.send(index);
            }
            if event
                .events()
                .intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR)
            {
                arrived |= self.receive(index);
            }
            while let Some(sender) = self.tally.opened.pop() {
                if self.sending {
                    self.send(sender);
                }
            }
        }
        Ok(arrived)
    }

    /// One read from a client: every whole line is counted, the rest kept for next time.
    fn receive(&mut self, index: usize) -> bool {
        let n = match (&self.clients[index].stream).read(&mut self.buf) {
            Ok(0) => {
                self.leave(index, "the server closed its connection");
                return false;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => return false,
            Err(e) => {
                self.leave(index, &format!("recv: {e}"));
                return false;
            }
        };
        let mut bytes = &self.buf[..n];
        let client = &mut self.clients[index];
        let tally = &mut self.tally;
        let (delivered, welcomes) = (tally.delivered, tally.welcomes);
        if !client.partial.is_empty() {
            let Some(end) = find_newline(bytes) else {
                client.partial.extend_from_slice(bytes);
                return true;
            };
            client.partial.extend_from_slice(&bytes[..end]);
            tally.line(index, &client.partial);
            client.partial.clear();
            bytes = &bytes[end + 1..];
        }
        while let Some(end) = find_newline(bytes) {
            tally.line(index, &bytes[..end]);
            bytes = &bytes[end + 1..];
        }
        client.partial.extend_from_slice(bytes); // the start of a line still coming
        client.welcomed |= tally.welcomes > welcomes;
        if tally.delivered > delivered {
            tally.last_delivery = Instant::now();
        }
        true
    }

    /// How many lines `sender` may have said so far.
    fn allowed(&self, sender: usize) -> usize {
        let lines = self.load.lines;
        if self.load.window == 0 {
            return lines;
        }
        let others = (self.load.clients - 1) as u64;
        let settled = (self.tally.settled_from[sender] / others) as usize;
        lines.min(self.load.window + settled)
    }

    /// Formats what the client may say now and sends until done or the send buffer is full.
    fn send(&mut self, index: usize) {
        let allowed = self.allowed(index);
        let client = &mut self.clients[index];
        if !client.open || client.blocked {
            return;
        }
        if client.sent == client.outgoing.len() {
            client.outgoing.clear();
            client.sent = 0;
        }
        while client.said < allowed {
            let _ = writeln!(client.outgoing, "bench {index} {}", client.said);
            client.said += 1;
        }
        while client.sent < client.outgoing.len() {
            match (&client.stream).write(&client.outgoing[client.sent..]) {
                Ok(n) => client.sent += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    client.blocked = true;
                    if !client.watching_out {
                        client.watching_out = true;
                        let event = &mut EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT, index as u64);
                        let _ = self.epoll.modify(&client.stream, event);
                    }
                    return;
                }
                Err(e) => {
                    self.leave(index, &format!("send: {e}"));
                    return;
                }
            }
        }
        if client.watching_out {
            client.watching_out = false;
            let _ = self
                .epoll
                .modify(&client.stream, &mut EpollEvent::new(EpollFlags::EPOLLIN, index as u64));
        }
    }

    fn leave(&mut self, index: usize, why: &str) {
        let client = &mut self.clients[index];
        client.open = false;
        let _ = self.epoll.delete(&client.stream);
        self.tally.failures.add(format!("client {index}: {why}"));
        self.tally.lost_receiver(index, self.load.lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_are_found_wherever_they_are() {
        for len in 0..40 {
            for at in 0..len {
                let mut bytes = vec![b'x'; len];
                bytes[at] = b'\n';
                if at + 3 < len {
                    bytes[at + 3] = b'\n';
                }
                assert_eq!(find_newline(&bytes), Some(at), "len {len}, at {at}");
            }
            assert_eq!(find_newline(&vec![b'\x0b'; len]), None);
        }
    }

    #[test]
    fn a_relayed_bench_line_is_read_from_its_end() {
        assert_eq!(
            bench_line(b"12:00:00 127.0.0.1:40122 say: bench 17 199"),
            Some((17, 199))
        );
        assert_eq!(bench_line(b"12:00:00 127.0.0.1:40122 say: bench 17"), None);
        assert_eq!(bench_line(b"12:00:00 127.0.0.1:40122 say: bench 17 1x"), None);
        assert_eq!(bench_line(b"12:00:00 127.0.0.1:40122 said: bench 17 1"), None);
        assert_eq!(bench_line(b"12:00:00 * 127.0.0.1:40122 joined"), None);
    }
}
