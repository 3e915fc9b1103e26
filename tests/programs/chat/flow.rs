//! Flow control under load, against `socklab chat-server --mux MUX` (and `echo-server`), with
//! real peers: a flood with a reader, a reader that never reads and a quiet client; 200 clients
//! all talking at once; `/who` in a room of 5,000; seed 003's own Python client; and an echo
//! client that writes and reads 64 KiB chunks at once. Every case is in `chat_suite!`, so it
//! runs under every loop.
//!
//! Nothing is timed from above: a bound on how long something may take is a limit against a
//! hang ([`WAIT`] and multiples), never a measurement.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::{Peer, Server, WAIT, said_text, socklab};
use crate::util;

/// The flood: lines of 150 bytes, newline included.
const FLOOD_LINES: usize = 20_000;
const FLOOD_LINE: usize = 150;

/// The grace the flood's server is started with: short, so the test is.
const GRACE: Duration = Duration::from_millis(500);

/// Line `i` of the flood, without its newline.
fn flood_line(i: usize) -> String {
    let head = format!("flood {i:05} ");
    format!("{head}{}", "f".repeat(FLOOD_LINE - 1 - head.len()))
}

/// A client with a small receive buffer that never calls recv: the kernel's share of what
/// waits for it is small, so the room's own queue for it fills within the flood.
fn never_reading_client(port: u16) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    socket.connect(&addr.into()).expect("connecting the never-reader");
    socket.into()
}

/// Connects, reads the welcome line (and nothing past it), and returns the stream and the name
/// the room gave it.
fn join(port: u16) -> (TcpStream, String) {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    stream.set_read_timeout(Some(WAIT)).expect("SO_RCVTIMEO");
    let mut welcome = Vec::new();
    let mut byte = [0u8];
    while !welcome.ends_with(b"\n") {
        (&stream).read_exact(&mut byte).expect("a welcome");
        welcome.push(byte[0]);
    }
    let name = super::welcome_name(&String::from_utf8_lossy(&welcome));
    (stream, name)
}

/// Waits for `thread` to finish, at most `limit`.
fn join_within<T>(thread: JoinHandle<T>, limit: Duration, what: &str) -> T {
    let deadline = Instant::now() + limit;
    while !thread.is_finished() {
        assert!(Instant::now() < deadline, "{what} did not finish within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    thread.join().unwrap_or_else(|_| panic!("{what} panicked"))
}

/// A thread that reads `stream` to its end and throws the bytes away: a client that reads.
fn drain(mut stream: TcpStream) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
    })
}

/// One client floods the room with 20,000 lines of 150 bytes as fast as it can, while a second
/// never reads and a third reads everything: the reader gets all 20,000, in order; the
/// never-reader is let go ("stopped reading") once its queue has sat above the high-water mark
/// for the grace; and a fourth client's line, said in the middle of the flood, reaches the
/// reader before the flood ends.
pub fn a_flood_reaches_a_reader_whole_and_in_order(mux: &str) {
    let mut server = Server::start_with(mux, &["--grace", &GRACE.as_secs_f64().to_string()]);
    let (reader, _) = join(server.port);
    reader.set_read_timeout(Some(3 * WAIT)).expect("SO_RCVTIMEO");
    let never = never_reading_client(server.port);
    let never_name = never.local_addr().expect("its address").to_string();
    let (mut quiet, quiet_name) = join(server.port);
    let (flooder, flooder_name) = join(server.port);
    let _quiet_drain = drain(quiet.try_clone().expect("cloning"));
    let _flooder_drain = drain(flooder.try_clone().expect("cloning"));

    // The reader reads on its own thread, counting the flood as it comes; this one watches.
    let counted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&counted);
    let flood_prefix = format!("{flooder_name} say: ");
    let prefix = flood_prefix.clone();
    let dropped = format!("* {never_name} left (stopped reading)");
    let drop_notice = dropped.clone();
    let listening = std::thread::spawn(move || {
        let mut lines = BufReader::new(reader);
        let mut heard = Vec::new();
        let mut dropped_at = None;
        let mut line = String::new();
        let last = format!("{prefix}{}", flood_line(FLOOD_LINES - 1));
        while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
            let text = said_text(line.trim_end()).unwrap_or_default().to_string();
            if text.starts_with(&prefix) {
                count.fetch_add(1, Ordering::Relaxed);
            }
            let done = text == last;
            if text == drop_notice {
                dropped_at = Some(Instant::now());
            }
            heard.push(text);
            line.clear();
            if done {
                break;
            }
        }
        (heard, dropped_at)
    });

    let started = Instant::now();
    let mut writer = flooder.try_clone().expect("cloning");
    let flooding = std::thread::spawn(move || {
        let flood: String = (0..FLOOD_LINES).map(|i| flood_line(i) + "\n").collect();
        writer.write_all(flood.as_bytes())
    });
    // In the middle of the flood, the quiet client says one line.
    let deadline = Instant::now() + 3 * WAIT;
    while counted.load(Ordering::Relaxed) < 200 {
        assert!(Instant::now() < deadline, "the reader heard no flood");
        std::thread::sleep(Duration::from_millis(5));
    }
    quiet.write_all(b"a quiet line\n").expect("the quiet line");
    join_within(flooding, 6 * WAIT, "the flood").expect("flooding");
    let (heard, dropped_at) = join_within(listening, 6 * WAIT, "the reader");

    let flood: Vec<&str> = heard.iter().filter_map(|t| t.strip_prefix(&flood_prefix)).collect();
    assert_eq!(flood.len(), FLOOD_LINES, "every line of the flood");
    assert!(
        flood.iter().enumerate().all(|(i, line)| *line == flood_line(i)),
        "in order"
    );
    let quiet_line = format!("{quiet_name} say: a quiet line");
    let quiet_at = heard.iter().position(|t| *t == quiet_line).expect("the quiet line");
    let flood_before = heard[..quiet_at]
        .iter()
        .filter(|t| t.starts_with(&flood_prefix))
        .count();
    assert!(flood_before < FLOOD_LINES, "the quiet line came while the flood ran");
    let dropped_after = dropped_at.unwrap_or_else(|| panic!("the never-reader was not let go: {dropped}")) - started;
    // It cannot have been over the high-water mark before the flood began, and it stays at
    // least the grace there before it goes.
    assert!(dropped_after >= GRACE, "dropped {dropped_after:?} into the flood");
    assert!(
        !heard.iter().any(|t| t.contains("left") && !t.contains(&never_name)),
        "nobody else left"
    );
    println!(
        "{mux}: flood of {FLOOD_LINES} lines heard whole in {:?}; the never-reader let go {dropped_after:?} \
         into it (grace {GRACE:?}); the quiet line after {flood_before} flood lines",
        started.elapsed()
    );
    drop(never);
    server.assert_alive();
}

/// 200 clients each say 50 lines, all at once: every line reaches every other client, in each
/// sender's order, and nobody is dropped.
pub fn two_hundred_clients_say_fifty_lines_each_and_everyone_hears_everything(mux: &str) {
    const CLIENTS: usize = 200;
    const LINES: usize = 50;
    let mut server = Server::start(mux);
    let mut clients: Vec<TcpStream> = Vec::with_capacity(CLIENTS);
    // Who is who: a client's name is its address, and its port says which client it is.
    let mut by_port = vec![usize::MAX; 65536];
    for i in 0..CLIENTS {
        let (stream, name) = join(server.port);
        by_port[port_of(name.as_bytes())] = i;
        clients.push(stream);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let said: String = (0..LINES).map(|j| format!("line {j:02} of {i:03}\n")).collect();
        client.write_all(said.as_bytes()).expect("saying");
    }
    // One thread reads all 200 with poll: each client's bytes, split into lines.
    let mut partial = vec![Vec::new(); CLIENTS];
    let mut next = vec![vec![0usize; CLIENTS]; CLIENTS]; // [hearer][speaker]: lines heard so far
    let mut heard = vec![0usize; CLIENTS];
    let mut complete = 0;
    for client in &clients {
        client.set_nonblocking(true).expect("O_NONBLOCK");
    }
    let deadline = Instant::now() + 6 * WAIT;
    let mut buf = vec![0u8; 65536];
    while complete < CLIENTS {
        assert!(Instant::now() < deadline, "only {complete} clients heard everything");
        let mut fds: Vec<PollFd<'_>> = clients
            .iter()
            .map(|c| PollFd::new(c.as_fd(), PollFlags::POLLIN))
            .collect();
        nix::poll::poll(&mut fds, PollTimeout::from(1000u16)).expect("poll");
        let ready: Vec<usize> = fds
            .iter()
            .enumerate()
            .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(i, _)| i)
            .collect();
        drop(fds);
        for hearer in ready {
            let n = match (&clients[hearer]).read(&mut buf) {
                Ok(0) => panic!("client {hearer} was closed"),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => panic!("client {hearer}: {e}"),
            };
            let bytes = &mut partial[hearer];
            bytes.extend_from_slice(&buf[..n]);
            let mut start = 0;
            while let Some(at) = bytes[start..].iter().position(|&b| b == b'\n') {
                let line = &bytes[start..start + at];
                start += at + 1;
                // "HH:MM:SS 127.0.0.1:PORT say: line NN of SSS", or a notice "HH:MM:SS * ...".
                assert!(
                    !line.ends_with(b")"),
                    "{hearer} heard {:?}",
                    String::from_utf8_lossy(line)
                );
                if line.get(9) == Some(&b'*') {
                    continue;
                }
                let tail = &line[line.len() - "line NN of SSS".len()..];
                let speaker = by_port[port_of(&line[9..line.len() - " say: line NN of SSS".len()])];
                let number = usize::from(tail[5] - b'0') * 10 + usize::from(tail[6] - b'0');
                assert!(
                    number == next[hearer][speaker] && tail[11..] == *format!("{speaker:03}").as_bytes(),
                    "client {hearer} heard {:?} from {speaker}: out of order or lost",
                    String::from_utf8_lossy(line)
                );
                next[hearer][speaker] += 1;
                heard[hearer] += 1;
                if heard[hearer] == (CLIENTS - 1) * LINES {
                    complete += 1;
                }
            }
            bytes.drain(..start);
        }
    }
    for (hearer, heard) in next.iter().enumerate() {
        assert_eq!(heard[hearer], 0, "{hearer} heard itself");
    }
    server.assert_alive();
}

/// The port in a client's name, `127.0.0.1:PORT`.
fn port_of(name: &[u8]) -> usize {
    let colon = name.iter().rposition(|&b| b == b':').expect("ADDR:PORT");
    name[colon + 1..]
        .iter()
        .fold(0, |port, &d| port * 10 + usize::from(d - b'0'))
}

/// `/who` answers the one who asked, in a room of 5,000 (under select, as many as fit below
/// FD_SETSIZE: 1,000). The others read their join notices, as clients do.
pub fn who_answers_the_asker_in_a_room_of_five_thousand(mux: &str) {
    let room = if mux == "select" || mux == super::LESSON_11 {
        1000
    } else {
        5000
    };
    let mut server = Server::start(mux);
    let others = Drain::new();
    // In batches smaller than the listen backlog (128), each welcomed before the next comes:
    // a full backlog would make the kernel drop handshakes, and clients retry a second later.
    let deadline = Instant::now() + 6 * WAIT;
    for joined in 1..room {
        others.add(TcpStream::connect(("127.0.0.1", server.port)).expect("connecting"));
        if joined % 100 == 0 || joined == room - 1 {
            while others.welcomed() < joined {
                assert!(Instant::now() < deadline, "{} of {joined} welcomed", others.welcomed());
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    let mut asker = Peer::tcp(server.port);
    asker.say("/who");
    let mut names = Vec::new();
    let parts = loop {
        let line = asker.expect("the answer to /who", |line| {
            said_text(line).is_some_and(|text| text.starts_with("* in the room"))
        });
        let text = said_text(&line).unwrap_or_default();
        assert!(line.len() < socklab::chat::MAX_LINE, "a line of {} bytes", line.len());
        let (head, list) = text.split_once(": ").expect("* in the room (k/n): names");
        names.extend(list.split(", ").map(String::from));
        // "* in the room (k/n)": the last part is k == n.
        let (k, n) = head
            .trim_start_matches("* in the room (")
            .trim_end_matches(')')
            .split_once('/')
            .map(|(k, n)| (k.parse::<usize>().expect("k"), n.parse::<usize>().expect("n")))
            .expect("a numbered part");
        if k == n {
            break n;
        }
    };
    assert_eq!(names.len(), room, "in {parts} lines");
    assert!(names.contains(&format!("{} (you)", asker.name)));
    assert_eq!(others.closed(), 0, "nobody was dropped");
    drop(others);
    server.assert_alive();
}

/// Two of seed 003's own clients (`seed_client.py`, Python 3, logic unchanged: each line is
/// sent without its newline, 0.1 s apart) hear each other, and `exit` leaves.
pub fn two_seed_clients_hear_each_other(mux: &str) {
    util::require("python3");
    let mut server = Server::start(mux);
    let seed = |port: u16| {
        let mut command = Command::new("python3");
        command
            .arg("-u")
            .arg(util::root().join("lessons/11-select-chat-room/seed_client.py"))
            .args(["127.0.0.1", &port.to_string()]);
        Peer::program("seed client", command)
    };
    let mut a = seed(server.port);
    let mut b = seed(server.port);
    a.expect_notice(&format!("{} joined", b.name));
    a.say("hello from the seed");
    b.expect_said(&a.name, "hello from the seed");
    // One line at a time, as a person types: two lines the seed sends 0.1 s apart arrive as one
    // when the server is too busy to read between them (the compromise its README documents).
    b.say("and back");
    a.expect_said(&b.name, "and back");
    b.say("a second line");
    a.expect_said(&b.name, "a second line");
    a.say("exit");
    b.expect_notice(&format!("{} left (end of file)", a.name));
    let (status, stderr) = a.wait_exit();
    assert!(status.success(), "{status}: {stderr}");
    server.assert_alive();
}

/// `socklab echo-server`: one connection writes 64 KiB chunks for 3 s while another thread
/// reads: every byte comes back, in order, and the connection is never dropped (the server
/// stops reading while an echo waits: backpressure).
pub fn echo_gives_back_every_byte_of_a_two_way_stream(mux: &str) {
    const CHUNK: usize = 64 * 1024;
    const FOR: Duration = Duration::from_secs(3);
    let mut command = Command::new(socklab());
    command.args(["echo-server", "--mux", mux, "--port", "0", "--trace", "off"]);
    let mut server = Server::start_command(command);
    let client = TcpStream::connect(("127.0.0.1", server.port)).expect("connecting");
    client.set_read_timeout(Some(WAIT)).expect("SO_RCVTIMEO");
    let byte = |i: u64| (i % 251) as u8 ^ (i >> 16) as u8;
    let mut writer = client.try_clone().expect("cloning");
    let writing = std::thread::spawn(move || {
        let started = Instant::now();
        let mut sent: u64 = 0;
        let mut chunk = vec![0u8; CHUNK];
        while started.elapsed() < FOR {
            for (k, b) in chunk.iter_mut().enumerate() {
                *b = byte(sent + k as u64);
            }
            writer.write_all(&chunk).expect("writing a chunk");
            sent += CHUNK as u64;
        }
        writer.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
        sent
    });
    let mut reader = client;
    let mut got: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) => panic!("after {got} bytes: {e}"),
        };
        if n == 0 {
            break;
        }
        if let Some(k) = (0..n).find(|&k| buf[k] != byte(got + k as u64)) {
            panic!("byte {} came back wrong", got + k as u64);
        }
        got += n as u64;
    }
    let sent = writing.join().expect("the writer");
    assert_eq!(got, sent, "every byte came back, then end-of-file");
    assert!(sent >= 8 * CHUNK as u64, "only {sent} bytes in {FOR:?}");
    println!("{mux}: {} MB echoed in {FOR:?}", sent >> 20);
    server.assert_alive();
}

/// Many clients that read everything they are sent, on one thread (epoll, so a room of
/// thousands costs the test only what is ready), so that a room of thousands is a room of
/// readers.
pub struct Drain {
    epoll: Arc<Epoll>,
    streams: Arc<std::sync::Mutex<Vec<Option<TcpStream>>>>,
    welcomed: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drain {
    pub fn new() -> Drain {
        let epoll = Arc::new(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll_create1"));
        let streams: Arc<std::sync::Mutex<Vec<Option<TcpStream>>>> = Arc::default();
        let welcomed = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (ep, list, hello, gone, halt) = (
            Arc::clone(&epoll),
            Arc::clone(&streams),
            Arc::clone(&welcomed),
            Arc::clone(&closed),
            Arc::clone(&stop),
        );
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut events = vec![EpollEvent::empty(); 256];
            let mut heard: Vec<bool> = Vec::new();
            while !halt.load(Ordering::Relaxed) {
                let ready = ep.wait(&mut events, EpollTimeout::from(10u16)).unwrap_or(0);
                let mut streams = list.lock().unwrap();
                heard.resize(streams.len(), false);
                for event in &events[..ready] {
                    let index = event.data() as usize;
                    let Some(stream) = streams[index].as_ref() else {
                        continue;
                    };
                    // Edge-triggered: read until EAGAIN.
                    let ended = loop {
                        match (&*stream).read(&mut buf) {
                            Ok(0) => break true,
                            Ok(_) => {
                                if !std::mem::replace(&mut heard[index], true) {
                                    hello.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                            Err(_) => break true,
                        }
                    };
                    if ended {
                        gone.fetch_add(1, Ordering::Relaxed);
                        streams[index] = None;
                    }
                }
            }
        });
        Drain {
            epoll,
            streams,
            welcomed,
            closed,
            stop,
            thread: Some(thread),
        }
    }

    /// Adds a connected client (non-blocking from now on) for the thread to read.
    pub fn add(&self, stream: TcpStream) {
        // Rooms of thousands: their closes must not fill the kernel's TIME_WAIT table.
        util::reset_on_close(&stream);
        stream.set_nonblocking(true).expect("O_NONBLOCK");
        let mut streams = self.streams.lock().unwrap();
        let index = streams.len();
        self.epoll
            .add(
                stream.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, index as u64),
            )
            .expect("epoll_ctl ADD");
        streams.push(Some(stream));
    }

    /// How many of its streams have heard something (their welcome).
    pub fn welcomed(&self) -> usize {
        self.welcomed.load(Ordering::Relaxed)
    }

    /// How many of its streams the server has closed so far.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::Relaxed)
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
