//! The chat room's test suite, run against `socklab chat-server --mux MUX` with real peers:
//! nc, socat, Python's `socket`, std's TcpStream and `socklab chat-client`.
//!
//! Each event loop's file (`tests/programs/chat_select.rs`, `chat_poll.rs`, `chat_epoll.rs`,
//! `chat_epoll_et.rs`; `chat_lesson11.rs` for lesson 11's own select loop, the cases that apply
//! to it), a module of the `programs` test program, says `chat_suite!("select");` and gets
//! every test below and in [`flow`] (flow control under load, seed 003's client, the echo
//! service's backpressure): the same room must behave the same under every loop. That
//! includes urgent (MSG_OOB) data:
//! select sees it in the exceptional set and drops the sender, so poll and epoll loops must
//! watch POLLPRI / EPOLLPRI and do the same.
//!
//! Every wait is bounded ([`WAIT`]), every server and peer process is killed by its own PID
//! when its guard is dropped, everything is on 127.0.0.1, and nothing is timed.
#![allow(dead_code)]

pub mod flow;
// For `chat_suite!`, which names every case as `chat::CASE`; not every file that uses this
// module expands it.
#[allow(unused_imports)]
pub use flow::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util;

/// The longest any one expectation waits (a line, a close, a process ending).
pub const WAIT: Duration = Duration::from_secs(10);

/// Expands to one `#[test]` per case of the suite, each run against the loop named `$mux`.
#[macro_export]
macro_rules! chat_suite {
    ($mux:literal) => {
        $crate::chat_suite!(
            $mux;
            three_real_peers_hear_each_other,
            a_flood_reaches_a_reader_whole_and_in_order,
            two_hundred_clients_say_fifty_lines_each_and_everyone_hears_everything,
            who_answers_the_asker_in_a_room_of_five_thousand,
            two_seed_clients_hear_each_other,
            echo_gives_back_every_byte_of_a_two_way_stream,
            a_line_over_the_limit_is_refused_and_its_sender_stays,
            exit_leaves_and_the_others_are_told,
            end_of_file_leaves_and_the_others_are_told,
            a_reset_in_mid_line_drops_only_that_client,
            control_characters_and_bad_utf8_arrive_harmless,
            urgent_data_drops_its_sender,
            the_chat_client_talks_and_leaves_with_exit,
            the_chat_client_leaves_at_end_of_input,
            the_chat_client_says_when_the_server_goes,
            running_out_of_descriptors_turns_newcomers_away,
            with_no_descriptor_to_spare_accepting_pauses_instead_of_spinning,
            every_descriptor_the_server_opens_is_close_on_exec,
        );
    };
    ($mux:literal; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::chat::$case($mux);
            }
        )+
    };
}

/// The `socklab` program `cargo test` built next to this test.
pub fn socklab() -> std::path::PathBuf {
    let path = util::target_dir().join("socklab");
    assert!(path.exists(), "{} is not built: run `cargo build`", path.display());
    path
}

/// Not one of socklab's `--mux` loops but lesson 11's own select loop over the same room
/// (`lesson-11 server`, `tests/programs/chat_lesson11.rs`), which takes the grace as `grace SECONDS`.
pub const LESSON_11: &str = "lesson-11";

/// The program and arguments that run the room under `mux` on a port the kernel picks, the
/// trace in `trace` mode: `socklab chat-server --mux MUX ...`, or lesson 11's `server`.
pub fn server_argv(mux: &str, trace: &str) -> Vec<String> {
    let (program, args) = if mux == LESSON_11 {
        (util::lesson_program(11), vec!["server"])
    } else {
        (socklab(), vec!["chat-server", "--mux", mux])
    };
    std::iter::once(program.display().to_string())
        .chain(
            args.into_iter()
                .chain(["--port", "0", "--trace", trace])
                .map(String::from),
        )
        .collect()
}

/// A running `socklab chat-server`, killed (by its PID) when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// `socklab chat-server --mux MUX --port 0 --trace off` (or lesson 11's `server`): the
    /// kernel picks the port, and the server's first line on stderr says which.
    pub fn start(mux: &str) -> Server {
        Server::start_with(mux, &[])
    }

    /// The same, with more arguments (`--grace 0.5`).
    pub fn start_with(mux: &str, args: &[&str]) -> Server {
        let argv = server_argv(mux, "off");
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]);
        if mux == LESSON_11 {
            command.args(args.iter().map(|arg| arg.trim_start_matches("--")));
        } else {
            command.args(args);
        }
        Server::start_command(command)
    }

    /// Starts a command that ends up running a chat server (through a wrapper, say).
    pub fn start_command(mut command: Command) -> Server {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting socklab chat-server");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (first_tx, first_rx) = mpsc::channel();
        let lines = BufReader::new(child.stderr.take().expect("its stderr"));
        let collected = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                let _ = first_tx.send(line.clone());
                collected.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let first = first_rx.recv_timeout(WAIT);
        let port = first.as_deref().ok().and_then(listening_port);
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the chat server never said where it listens; stderr: {first:?}");
        };
        Server { child, port, stderr }
    }

    /// Panics unless the server is still running: one client's trouble must not end it.
    pub fn assert_alive(&mut self) {
        let status = self.child.try_wait().expect("asking about the server");
        assert!(
            status.is_none(),
            "the server ended ({status:?}); stderr:\n{}",
            self.stderr()
        );
        assert!(!self.stderr().contains("panicked"), "{}", self.stderr());
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to its PID, as `kill` would.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("kill");
    }

    /// Waits (at most 30 s: a hang, not a measure) for it to exit; its status and stderr.
    pub fn wait(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the server") {
                std::thread::sleep(Duration::from_millis(50)); // its last stderr line
                return (status, self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops it now (SIGKILL to its PID) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `... listens on 127.0.0.1:40123 (select); ...` gives 40123.
pub fn listening_port(line: &str) -> Option<u16> {
    let after = line.split("listens on ").nth(1)?;
    let addr = after.split_whitespace().next()?;
    addr.rsplit(':').next()?.parse().ok()
}

/// What a peer heard.
enum Heard {
    Line(String),
    /// Its connection (or the program's stdout) ended: "end of file", or the error.
    Closed(String),
}

/// How a peer is driven.
enum Kind {
    Socket(TcpStream),
    Program { child: Child, stderr: Arc<Mutex<String>> },
}

/// A participant in the room: lines typed in, lines heard out, with a transcript of all heard.
pub struct Peer {
    label: String,
    /// Its name in the room (its address, from the welcome line).
    pub name: String,
    input: Option<Box<dyn Write + Send>>,
    heard: Receiver<Heard>,
    pub transcript: Vec<String>,
    kind: Kind,
}

impl Peer {
    /// A TcpStream peer, joined: its welcome line has arrived.
    pub fn tcp(port: u16) -> Peer {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the chat server");
        let reader = stream.try_clone().expect("cloning the stream");
        let writer = stream.try_clone().expect("cloning the stream");
        Peer::joined("tcp", Box::new(writer), reader, Kind::Socket(stream))
    }

    /// A program (nc, socat, python3, socklab chat-client) whose stdin is what it says and
    /// whose stdout is what it hears; joined once its welcome line is out.
    pub fn program(label: &str, mut command: Command) -> Peer {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {label}: {e}"));
        let stdout = child.stdout.take().expect("its stdout");
        let stdin: ChildStdin = child.stdin.take().expect("its stdin");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("its stderr");
        let collected = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err_pipe.read_to_string(&mut text);
            collected.lock().unwrap().push_str(&text);
        });
        Peer::joined(label, Box::new(stdin), stdout, Kind::Program { child, stderr })
    }

    fn joined(label: &str, input: Box<dyn Write + Send>, output: impl Read + Send + 'static, kind: Kind) -> Peer {
        let (tx, heard) = mpsc::channel();
        std::thread::spawn(move || {
            let mut output = BufReader::new(output);
            loop {
                let mut line = Vec::new();
                let ending = match output.read_until(b'\n', &mut line) {
                    Ok(0) => "end of file".to_string(),
                    Ok(_) if line.ends_with(b"\n") => {
                        line.pop();
                        let _ = tx.send(Heard::Line(String::from_utf8_lossy(&line).into_owned()));
                        continue;
                    }
                    Ok(_) => "end of file in mid-line".to_string(),
                    Err(error) => error.to_string(),
                };
                let _ = tx.send(Heard::Closed(ending));
                return;
            }
        });
        let mut peer = Peer {
            label: label.to_string(),
            name: String::new(),
            input: Some(input),
            heard,
            transcript: Vec::new(),
            kind,
        };
        let welcome = peer.expect("its welcome line", |line| {
            said_text(line).is_some_and(|text| text.starts_with("* welcome, you are "))
        });
        let rest = said_text(&welcome).unwrap_or_default();
        peer.name = rest["* welcome, you are ".len()..]
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        peer
    }

    /// Sends one line (the newline is added).
    pub fn say(&mut self, text: &str) {
        self.send_raw(format!("{text}\n").as_bytes());
    }

    /// Sends bytes exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let input = self.input.as_mut().expect("its input is still open");
        input.write_all(bytes).expect("sending to the peer");
        input.flush().expect("flushing to the peer");
    }

    /// Ends what it says: closes a program's stdin, or half-closes a socket (SHUT_WR).
    pub fn close_input(&mut self) {
        self.input = None;
        if let Kind::Socket(stream) = &self.kind {
            stream.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
        }
    }

    /// Waits (at most [`WAIT`]) for a line that `wanted` accepts and returns it; the lines
    /// before it are kept in the transcript too.
    pub fn expect(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.heard.recv_timeout(left) {
                Ok(Heard::Line(line)) => {
                    self.transcript.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Ok(Heard::Closed(how)) => self.fail(&format!("waiting for {what}, its connection ended ({how})")),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    self.fail(&format!("{what} did not come within {WAIT:?}"))
                }
            }
        }
    }

    /// Waits for `HH:MM:SS WHO say: TEXT`.
    pub fn expect_said(&mut self, who: &str, text: &str) -> String {
        let want = format!("{who} say: {text}");
        self.expect(&format!("{want:?}"), |line| said_text(line) == Some(want.as_str()))
    }

    /// Waits for the notice `HH:MM:SS * TEXT`.
    pub fn expect_notice(&mut self, text: &str) -> String {
        let want = format!("* {text}");
        self.expect(&format!("{want:?}"), |line| said_text(line) == Some(want.as_str()))
    }

    /// Waits for the connection to end; returns how ("end of file", or the error).
    pub fn expect_closed(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.heard.recv_timeout(left) {
                Ok(Heard::Line(line)) => self.transcript.push(line),
                Ok(Heard::Closed(how)) => return how,
                Err(_) => self.fail(&format!("its connection did not end within {WAIT:?}")),
            }
        }
    }

    /// Waits for the program to exit; returns its status and stderr.
    pub fn wait_exit(&mut self) -> (ExitStatus, String) {
        let Kind::Program { child, stderr } = &mut self.kind else {
            panic!("{} is not a program", self.label);
        };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for the peer") {
                // Its stderr reader finishes once the pipe closes; give it the same bound.
                let until = Instant::now() + WAIT;
                while Arc::strong_count(stderr) > 1 && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return (status, stderr.lock().unwrap().clone());
            }
            if Instant::now() >= deadline {
                self.fail(&format!("it did not exit within {WAIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The lines it heard that `who` said.
    pub fn said_by(&self, who: &str) -> Vec<String> {
        let prefix = format!("{who} say: ");
        self.transcript
            .iter()
            .filter_map(|line| said_text(line)?.strip_prefix(&prefix).map(String::from))
            .collect()
    }

    fn fail(&self, problem: &str) -> ! {
        panic!(
            "{} ({}): {problem}; it heard:\n{}",
            self.label,
            self.name,
            self.transcript.join("\n")
        );
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.input = None;
        match &mut self.kind {
            // Ends the reader thread's blocking read too.
            Kind::Socket(stream) => {
                let _ = stream.shutdown(Shutdown::Both);
            }
            Kind::Program { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The text after the `HH:MM:SS ` stamp, if the line has one.
pub fn said_text(line: &str) -> Option<&str> {
    let bytes = line.as_bytes();
    let stamped = bytes.len() > 9
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| bytes[i].is_ascii_digit())
        && bytes[2] == b':'
        && bytes[5] == b':'
        && bytes[8] == b' ';
    stamped.then(|| &line[9..])
}

/// A Python peer that relays stdin to the socket and the socket to stdout, and half-closes
/// (SHUT_WR) at the end of its stdin.
fn python_relay(port: u16) -> Command {
    let script = format!(
        "import socket, sys, threading\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         def relay():\n\
         \x20   for line in sys.stdin.buffer:\n\
         \x20       s.sendall(line)\n\
         \x20   s.shutdown(socket.SHUT_WR)\n\
         threading.Thread(target=relay, daemon=True).start()\n\
         while True:\n\
         \x20   data = s.recv(4096)\n\
         \x20   if not data:\n\
         \x20       break\n\
         \x20   sys.stdout.buffer.write(data)\n\
         \x20   sys.stdout.buffer.flush()\n"
    );
    let mut command = Command::new("python3");
    command.args(["-u", "-c", &script]);
    command
}

/// A Python peer that prints its welcome line, then does `action` (Python statements using
/// the connected socket `s`) and exits.
fn python_once(port: u16, action: &str) -> Command {
    let script = format!(
        "import socket, struct\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         f = s.makefile('rb')\n\
         print(f.readline().decode().rstrip('\\n'), flush=True)\n\
         {action}\n"
    );
    let mut command = Command::new("python3");
    command.args(["-u", "-c", &script]);
    command
}

fn socklab_client(port: u16) -> Command {
    let mut command = Command::new(socklab());
    command.args(["chat-client", "--port", &port.to_string()]);
    command
}

/// nc, socat and Python's socket, all in the room at once: each hears the others' lines in
/// the seed's format, never its own, and hears who joined and who left.
/// Every descriptor the server opens (listener, clients, the spare it keeps for EMFILE, its
/// wait's own and its self-pipe) is close-on-exec, so a program it started would inherit none
/// of them. `/proc/PID/fdinfo/FD` shows a descriptor's flags in octal; O_CLOEXEC is 02000000.
/// Descriptors it was given are not its own: 0-2, and whatever this test process holds that is
/// not close-on-exec (a shell can leak a descriptor or two into everything it starts).
pub fn every_descriptor_the_server_opens_is_close_on_exec(mux: &str) {
    let given: Vec<u32> = inheritable_descriptors("/proc/self/fdinfo");
    let mut server = Server::start(mux);
    let mut first = Peer::tcp(server.port);
    let second = Peer::tcp(server.port);
    // The first has heard the second join: both are accepted, and the spare taken.
    first.expect_notice(&format!("{} joined", second.name));
    let fdinfo = format!("/proc/{}/fdinfo", server.pid());
    let opened: Vec<u32> = descriptors(&fdinfo)
        .into_iter()
        .filter(|(fd, _)| *fd > 2 && !given.contains(fd))
        .map(|(fd, flags)| {
            let what = std::fs::read_link(format!("/proc/{}/fd/{fd}", server.pid()))
                .map(|path| path.display().to_string())
                .unwrap_or_default();
            assert_ne!(
                flags & O_CLOEXEC_OCTAL,
                0,
                "descriptor {fd} ({what}) is not close-on-exec"
            );
            fd
        })
        .collect();
    // The listener, two clients, the spare, at the least.
    assert!(opened.len() >= 4, "only {opened:?}");
    server.assert_alive();
}

/// O_CLOEXEC as `/proc/PID/fdinfo` shows it (octal 02000000).
const O_CLOEXEC_OCTAL: u32 = 0o2_000_000;

/// Every descriptor listed in `fdinfo` (`/proc/PID/fdinfo`), with its flags.
fn descriptors(fdinfo: &str) -> Vec<(u32, u32)> {
    let entries = std::fs::read_dir(fdinfo).unwrap_or_else(|e| panic!("reading {fdinfo}: {e}"));
    let mut found = Vec::new();
    for entry in entries.map_while(Result::ok) {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A descriptor closed since the listing was read has no flags left to show.
        let info = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let flags = info
            .lines()
            .find_map(|line| line.strip_prefix("flags:"))
            .and_then(|octal| u32::from_str_radix(octal.trim(), 8).ok());
        if let Some(flags) = flags {
            found.push((fd, flags));
        }
    }
    found
}

/// The descriptors in `fdinfo` that a program started now would inherit.
fn inheritable_descriptors(fdinfo: &str) -> Vec<u32> {
    descriptors(fdinfo)
        .into_iter()
        .filter(|(_, flags)| flags & O_CLOEXEC_OCTAL == 0)
        .map(|(fd, _)| fd)
        .collect()
}

pub fn three_real_peers_hear_each_other(mux: &str) {
    for program in ["nc", "socat", "python3"] {
        util::require(program);
    }
    let mut server = Server::start(mux);
    let port = server.port;
    let mut nc_command = Command::new("nc");
    nc_command.args(["127.0.0.1", &port.to_string()]);
    let mut nc = Peer::program("nc", nc_command);
    let mut socat_command = Command::new("socat");
    socat_command.args(["-", &format!("TCP:127.0.0.1:{port}")]);
    let mut socat = Peer::program("socat", socat_command);
    nc.expect_notice(&format!("{} joined", socat.name));
    let mut python = Peer::program("python", python_relay(port));
    nc.expect_notice(&format!("{} joined", python.name));
    socat.expect_notice(&format!("{} joined", python.name));

    nc.say("hello from nc");
    for other in [&mut socat, &mut python] {
        other.expect_said(&nc.name, "hello from nc");
    }
    socat.say("hello from socat");
    for other in [&mut nc, &mut python] {
        other.expect_said(&socat.name, "hello from socat");
    }
    python.say("hello from python, \u{4f60}\u{597d}");
    for other in [&mut nc, &mut socat] {
        other.expect_said(&python.name, "hello from python, \u{4f60}\u{597d}");
    }
    nc.say("exit");
    socat.expect_notice(&format!("{} left (exit)", nc.name));
    python.expect_notice(&format!("{} left (exit)", nc.name));
    // Had anyone's own line come back, it would have come before the last line each heard.
    for peer in [&nc, &socat, &python] {
        assert!(
            peer.said_by(&peer.name).is_empty(),
            "{} heard itself: {:?}",
            peer.label,
            peer.transcript
        );
    }
    python.close_input();
    socat.expect_notice(&format!("{} left (end of file)", python.name));
    assert_eq!(python.expect_closed(), "end of file");
    server.assert_alive();
}

/// A line of exactly MAX_LINE bytes passes; one byte more is answered with an error, nobody
/// else hears it, and its sender stays in the room.
pub fn a_line_over_the_limit_is_refused_and_its_sender_stays(mux: &str) {
    let limit = socklab::chat::MAX_LINE;
    let mut server = Server::start(mux);
    let mut a = Peer::tcp(server.port);
    let mut b = Peer::tcp(server.port);
    a.expect_notice(&format!("{} joined", b.name));
    let longest = "x".repeat(limit);
    a.say(&longest);
    b.expect_said(&a.name, &longest);
    a.say(&"y".repeat(limit + 1));
    let answer = a.expect("the error", |line| {
        said_text(line).is_some_and(|text| text.starts_with("! line longer than"))
    });
    assert!(answer.contains(&limit.to_string()), "{answer}");
    a.say("still here");
    b.expect_said(&a.name, "still here");
    assert!(
        !b.transcript.iter().any(|line| line.contains("yyy")),
        "{:?}",
        b.transcript
    );
    server.assert_alive();
}

/// `exit` leaves: the others are told, and the leaver's connection ends cleanly (FIN).
pub fn exit_leaves_and_the_others_are_told(mux: &str) {
    let mut server = Server::start(mux);
    let mut a = Peer::tcp(server.port);
    let mut b = Peer::tcp(server.port);
    a.expect_notice(&format!("{} joined", b.name));
    a.say("exit");
    b.expect_notice(&format!("{} left (exit)", a.name));
    assert_eq!(a.expect_closed(), "end of file");
    server.assert_alive();
}

/// End-of-file (the client's shutdown(SHUT_WR)) leaves too: its whole lines are said, its
/// unfinished one is lost, the others are told, and the server closes its side. (Its first
/// line ends with a newline, so the room frames its lines by newlines from then on: a pause
/// before the end-of-file does not make the unfinished line a message.)
pub fn end_of_file_leaves_and_the_others_are_told(mux: &str) {
    let mut server = Server::start(mux);
    let mut a = Peer::tcp(server.port);
    let mut b = Peer::tcp(server.port);
    a.expect_notice(&format!("{} joined", b.name));
    a.send_raw(b"a whole line\nan unfinished line");
    a.close_input();
    b.expect_said(&a.name, "a whole line");
    b.expect_notice(&format!("{} left (end of file)", a.name));
    assert_eq!(a.expect_closed(), "end of file");
    assert_eq!(
        b.said_by(&a.name),
        ["a whole line"],
        "the unfinished line was said: {:?}",
        b.transcript
    );
    server.assert_alive();
}

/// A Python client sends a line and half a line and closes with SO_LINGER 0 (a reset, RST): it
/// is dropped as failed, its half line goes nowhere, and the others carry on.
pub fn a_reset_in_mid_line_drops_only_that_client(mux: &str) {
    util::require("python3");
    let mut server = Server::start(mux);
    let mut a = Peer::tcp(server.port);
    let mut b = Peer::tcp(server.port);
    a.expect_notice(&format!("{} joined", b.name));
    let reset = "s.sendall(b'a whole line\\nhalf a li')\n\
                 s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n\
                 s.close()";
    let output = util::run_with_deadline(python_once(server.port, reset), WAIT);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let welcome = String::from_utf8_lossy(&output.stdout).into_owned();
    let name = welcome_name(&welcome);
    a.expect_notice(&format!("{name} joined"));
    a.expect_notice(&format!("{name} left (connection failed)"));
    a.say("after the reset");
    b.expect_said(&a.name, "after the reset");
    assert!(
        !a.transcript.iter().any(|line| line.contains("half a li")),
        "{:?}",
        a.transcript
    );
    server.assert_alive();
}

fn welcome_name(line: &str) -> String {
    let text = said_text(line.trim_end()).unwrap_or_else(|| panic!("not a welcome line: {line:?}"));
    let rest = text
        .strip_prefix("* welcome, you are ")
        .unwrap_or_else(|| panic!("not a welcome line: {line:?}"));
    rest.split(';').next().unwrap_or_default().to_string()
}

/// ESC, BEL and bytes that are not UTF-8 reach the others as U+FFFD, so nobody can clear
/// another person's screen.
pub fn control_characters_and_bad_utf8_arrive_harmless(mux: &str) {
    let mut server = Server::start(mux);
    let mut a = Peer::tcp(server.port);
    let mut b = Peer::tcp(server.port);
    a.expect_notice(&format!("{} joined", b.name));
    a.send_raw(b"\x1b[2Jclear\x07 \xff\xfe!\r\n");
    b.expect_said(&a.name, "\u{FFFD}[2Jclear\u{FFFD} \u{FFFD}\u{FFFD}!");
    server.assert_alive();
}

/// Urgent (MSG_OOB) data: select puts the socket in its exceptional set, and the chat, which
/// has no use for it, drops the sender. The others are told and carry on.
pub fn urgent_data_drops_its_sender(mux: &str) {
    util::require("python3");
    let mut server = Server::start(mux);
    let mut a = Peer::tcp(server.port);
    let mut b = Peer::tcp(server.port);
    a.expect_notice(&format!("{} joined", b.name));
    let urgent = "s.send(b'!', socket.MSG_OOB)\n\
                  s.settimeout(10)\n\
                  try:\n    print('closed' if f.read() == b'' else 'data')\n\
                  except ConnectionResetError:\n    print('closed')";
    let output = util::run_with_deadline(python_once(server.port, urgent), WAIT + WAIT);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut lines = stdout.lines();
    let name = welcome_name(lines.next().unwrap_or_default());
    // A FIN, or a reset: closing a socket whose urgent byte was never read discards unread
    // data, and the kernel answers that with RST.
    assert_eq!(
        lines.last(),
        Some("closed"),
        "the server should close the sender: {stdout}"
    );
    a.expect_notice(&format!("{name} joined"));
    a.expect_notice(&format!("{name} left (connection failed)"));
    b.say("still talking");
    a.expect_said(&b.name, "still talking");
    server.assert_alive();
}

/// `socklab chat-client` hears the room, says what is typed, and `exit` ends it with status 0.
pub fn the_chat_client_talks_and_leaves_with_exit(mux: &str) {
    let mut server = Server::start(mux);
    let mut a = Peer::tcp(server.port);
    let mut client = Peer::program("socklab chat-client", socklab_client(server.port));
    a.expect_notice(&format!("{} joined", client.name));
    a.say("hi client");
    client.expect_said(&a.name, "hi client");
    client.say("hello a");
    a.expect_said(&client.name, "hello a");
    client.say("exit");
    a.expect_notice(&format!("{} left (exit)", client.name));
    let (status, stderr) = client.wait_exit();
    assert!(status.success(), "{status}: {stderr}");
    server.assert_alive();
}

/// At the end of its input the client sends a last unfinished line with a newline, then
/// half-closes: the room hears the line and then end-of-file. Status 0.
pub fn the_chat_client_leaves_at_end_of_input(mux: &str) {
    let mut server = Server::start(mux);
    let mut a = Peer::tcp(server.port);
    let mut client = Peer::program("socklab chat-client", socklab_client(server.port));
    a.expect_notice(&format!("{} joined", client.name));
    client.send_raw(b"first\nno newline");
    client.close_input();
    a.expect_said(&client.name, "first");
    a.expect_said(&client.name, "no newline");
    a.expect_notice(&format!("{} left (end of file)", client.name));
    let (status, stderr) = client.wait_exit();
    assert!(status.success(), "{status}: {stderr}");
    server.assert_alive();
}

/// When the server goes away the client ends with one line saying so, and status 1.
pub fn the_chat_client_says_when_the_server_goes(mux: &str) {
    let mut server = Server::start(mux);
    let mut client = Peer::program("socklab chat-client", socklab_client(server.port));
    server.kill();
    let (status, stderr) = client.wait_exit();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("the server closed the connection"), "{stderr}");
}

/// With no descriptor left even for the spare (RLIMIT_NOFILE at the first free number), a
/// newcomer cannot be accepted at all: accept4 fails with EMFILE, and the loop stops accepting
/// for a tenth of a second before it tries again, instead of spinning on a listener that stays
/// readable. Counted in the server's own trace (`tests/programs/trace_vs_strace.rs` holds it to strace's):
/// a spin would make thousands of accept4 calls in the second watched, the pause about ten.
pub fn with_no_descriptor_to_spare_accepting_pauses_instead_of_spinning(mux: &str) {
    util::require("python3");
    // stdio, the listener, epoll's own instance, and socklab's self-pipe, two ends for SIGINT
    // and SIGTERM (lesson 11's loop has none): the limit leaves nothing after them.
    let self_pipe = if mux == LESSON_11 { 0 } else { 2 };
    let limit = if mux.starts_with("epoll") { 5 } else { 4 } + self_pipe;
    let trace = std::env::temp_dir().join(format!("socklab-no-spare-{mux}-{}.json", std::process::id()));
    let wrapper = format!(
        "import os, resource\n\
         fd = os.open({trace:?}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)\n\
         os.dup2(fd, 1)\n\
         os.close(fd)\n\
         soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n\
         resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, hard))\n\
         argv = {argv:?}\n\
         os.execv(argv[0], argv)\n",
        trace = trace.display().to_string(),
        argv = server_argv(mux, "json")
    );
    let mut command = Command::new("python3");
    command.args(["-c", &wrapper]);
    let mut server = Server::start_command(command);
    let newcomer = TcpStream::connect(("127.0.0.1", server.port)).expect("connecting");
    std::thread::sleep(Duration::from_secs(1)); // the second watched
    server.assert_alive();
    server.kill();
    drop(newcomer);
    let json = std::fs::read_to_string(&trace).unwrap_or_default();
    let _ = std::fs::remove_file(&trace);
    let accepts = json.lines().filter(|l| l.contains("\"line\":\"accept4(")).count();
    let refused = json
        .lines()
        .filter(|l| l.contains("\"line\":\"accept4(") && l.contains("EMFILE"))
        .count();
    assert!(
        refused >= 2,
        "accept4 was tried again after its pause: {accepts} calls\n{json}"
    );
    assert!(
        accepts <= 50,
        "{accepts} accept4 calls in a second: the loop spins on the listener"
    );
}

/// With RLIMIT_NOFILE lowered to a handful, newcomers past the limit are accepted into the
/// server's spare descriptor, told why, and closed, instead of leaving the listener readable
/// forever; everyone already inside keeps talking, and a place freed is a place taken.
pub fn running_out_of_descriptors_turns_newcomers_away(mux: &str) {
    util::require("python3");
    const LIMIT: u32 = 16;
    let wrapper = format!(
        "import os, resource\n\
         soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n\
         resource.setrlimit(resource.RLIMIT_NOFILE, ({LIMIT}, hard))\n\
         program = {program:?}\n\
         os.execv(program, [program, 'chat-server', '--mux', {mux:?}, '--port', '0', '--trace', 'off'])\n",
        program = socklab().display().to_string()
    );
    let mut command = Command::new("python3");
    command.args(["-c", &wrapper]);
    let mut server = Server::start_command(command);

    let mut inside: Vec<TcpStream> = Vec::new();
    let mut refusal = None;
    for _ in 0..LIMIT + 4 {
        let stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connecting");
        stream.set_read_timeout(Some(WAIT)).expect("SO_RCVTIMEO");
        let mut first_line = String::new();
        BufReader::new(stream.try_clone().expect("cloning"))
            .read_line(&mut first_line)
            .expect("a first line");
        if first_line.contains("welcome") {
            inside.push(stream);
        } else {
            refusal = Some(first_line);
            break;
        }
    }
    assert_eq!(
        refusal.as_deref(),
        Some("! sorry, the server cannot take you: the server has no descriptors left; try again later\n"),
        "after {} clients got in",
        inside.len()
    );
    assert!(
        inside.len() >= 3,
        "only {} clients got in under a limit of {LIMIT}",
        inside.len()
    );

    // The ones inside still talk: the first speaks, the last hears it.
    let mut last = BufReader::new(inside.last().expect("a client").try_clone().expect("cloning"));
    inside[0].write_all(b"still here\n").expect("speaking");
    let heard = (0..LIMIT * 2)
        .map_while(|_| {
            let mut line = String::new();
            last.read_line(&mut line).ok().filter(|&n| n > 0).map(|_| line)
        })
        .find(|line| line.contains("say: still here"));
    assert!(heard.is_some(), "the last client never heard the first");

    // One leaves; its place can be taken again.
    drop(inside.remove(0));
    let welcomed = |stream: &TcpStream| {
        let mut first_line = String::new();
        let _ = stream.set_read_timeout(Some(WAIT));
        let _ = BufReader::new(stream).read_line(&mut first_line);
        first_line.contains("welcome")
    };
    // The server notices the departure at its next wait; until then newcomers are turned away.
    let rejoined = (0..50).any(|_| {
        let newcomer = TcpStream::connect(("127.0.0.1", server.port)).expect("connecting");
        welcomed(&newcomer) || {
            std::thread::sleep(Duration::from_millis(20));
            false
        }
    });
    assert!(rejoined, "nobody could join after a place was freed");
    server.assert_alive();
}
