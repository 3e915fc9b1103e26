//! `socklab chat-server` and `echo-server` stop cleanly on SIGINT and SIGTERM, under every loop,
//! with real clients (nc, Python, std's TcpStream): every client that reads gets the room's
//! goodbye, then end of file; the server exits with status 0 and says how it stopped. A client
//! that never reads is cut off once `STOP_FLUSH` has passed: the server waits that long for it
//! (a lower bound the code guarantees, asserted), and no longer: it exits while that client
//! has still read nothing.
//!
//! Each loop has its own tests (select, poll, epoll, epoll-et). The signals are sent to the
//! server's PID, as `kill` would; every wait is bounded, every process is killed by its PID
//! when its guard is dropped, everything is on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::chat;
use crate::chat::{Peer, Server, WAIT};
use crate::util;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use socklab::serve::STOP_FLUSH;

/// `socklab COMMAND --mux MUX --port 0 --trace off ARGS`, killed (SIGKILL, by its PID) if the
/// test ends without it having exited.
fn start(command: &str, mux: &str, args: &[&str]) -> Server {
    let mut server = Command::new(chat::socklab());
    server
        .args([command, "--mux", mux, "--port", "0", "--trace", "off"])
        .args(args);
    Server::start_command(server)
}

/// nc as a chat client.
fn nc(port: u16) -> Peer {
    util::require("nc");
    let mut command = Command::new("nc");
    command.args(["127.0.0.1", &port.to_string()]);
    Peer::program("nc", command)
}

/// A Python chat client: stdin to the socket, the socket to stdout, until the server closes.
fn python(port: u16) -> Peer {
    util::require("python3");
    let script = format!(
        "import socket, sys, threading\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         def relay():\n\
         \x20   for line in sys.stdin.buffer:\n\
         \x20       s.sendall(line)\n\
         threading.Thread(target=relay, daemon=True).start()\n\
         while data := s.recv(4096):\n\
         \x20   sys.stdout.buffer.write(data)\n\
         \x20   sys.stdout.buffer.flush()\n"
    );
    let mut command = Command::new("python3");
    command.args(["-u", "-c", &script]);
    Peer::program("python", command)
}

/// Three clients talk, the server gets `signal`: each hears the goodbye, then end of file.
fn chat_stops_on(mux: &str, signal: Signal) {
    let mut server = start("chat-server", mux, &[]);
    let mut peers = [nc(server.port), python(server.port), Peer::tcp(server.port)];
    let names: Vec<String> = peers.iter().map(|p| p.name.clone()).collect();
    peers[0].say("before the stop");
    for peer in &mut peers[1..] {
        peer.expect_said(&names[0], "before the stop");
    }
    // nc and the Python client run until their input ends and the server closes: end their
    // input now (neither sends anything for it: no FIN, the room keeps them).
    for program in &mut peers[..2] {
        program.close_input();
    }
    server.signal(signal);
    let goodbye = format!("the server is stopping ({}); goodbye", signal.as_str());
    for peer in &mut peers {
        peer.expect_notice(&goodbye);
        assert_eq!(peer.expect_closed(), "end of file");
        let after: Vec<&String> = peer
            .transcript
            .iter()
            .skip_while(|line| !line.ends_with(&goodbye))
            .collect();
        assert_eq!(after.len(), 1, "the goodbye is the last line: {:?}", peer.transcript);
    }
    let (status, stderr) = server.wait();
    assert!(
        status.success(),
        "{mux}, {}: exited with {status}; stderr:\n{stderr}",
        signal.as_str()
    );
    assert!(
        stderr.contains(&format!("{}: stopped; every client was closed\n", signal.as_str())),
        "{stderr}"
    );
}

/// A TcpStream with a small receive buffer that never reads.
fn never_reads(port: u16) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket
        .connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .expect("connect");
    socket.into()
}

/// Writes `line` over and over until the socket has had no room for a whole second (the server
/// pushes back: it has stopped reading us), or 64 MB are written. Returns the bytes written.
fn write_until_pushed_back(stream: &mut TcpStream, line: &[u8]) -> usize {
    stream.set_nonblocking(true).expect("O_NONBLOCK");
    let mut written = 0;
    while written < 64 << 20 {
        match stream.write(line) {
            Ok(n) => written += n,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                let mut room = [PollFd::new(stream.as_fd(), PollFlags::POLLOUT)];
                if nix::poll::poll(&mut room, PollTimeout::from(1000u16)) == Ok(0) {
                    stream.set_nonblocking(false).expect("O_NONBLOCK off");
                    return written;
                }
            }
            Err(error) => panic!("writing to the server: {error}"),
        }
    }
    panic!("64 MB written and the server never pushed back");
}

/// A reader that never reads fills its buffers and the room's outbox for it, until the room
/// pauses (flow control) and the talker's writes stall; then SIGTERM. The server waits
/// STOP_FLUSH for the stalled one, cuts it off, and exits 0; the reading client heard the
/// goodbye and end of file meanwhile.
fn chat_stop_cuts_off_a_client_that_never_reads(mux: &str) {
    let mut server = start("chat-server", mux, &["--grace", "60"]);
    let stalled = never_reads(server.port);
    let mut watcher = Peer::tcp(server.port);
    let mut talker = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    let line = [b"x".repeat(500), b"\n".to_vec()].concat();
    let written = write_until_pushed_back(&mut talker, &line);
    assert!(written > 64 * 1024, "the room pushed back after only {written} bytes");

    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);
    watcher.expect_notice("the server is stopping (SIGTERM); goodbye");
    assert_eq!(watcher.expect_closed(), "end of file");
    let (status, stderr) = server.wait();
    let took = signalled.elapsed();
    assert!(status.success(), "{mux}: exited with {status}; stderr:\n{stderr}");
    assert!(
        stderr.contains("SIGTERM: stopped; every client was closed; 1 of them cut off with output unsent after 1 s"),
        "{mux}: {stderr}"
    );
    assert!(
        took >= STOP_FLUSH,
        "{mux}: exited {took:?} after SIGTERM, before its bound"
    );
    // Cut off, it gets what its kernel held, then end of file (not a reset): the server read
    // and dropped everything it sent. Not the goodbye: that waited behind the rest.
    let mut rest = Vec::new();
    let mut reader = stalled;
    reader.set_read_timeout(Some(WAIT)).expect("SO_RCVTIMEO");
    reader.read_to_end(&mut rest).expect("reading to end of file");
    let rest = String::from_utf8_lossy(&rest);
    assert!(!rest.contains("stopping"), "{mux}: the goodbye jumped the queue");
    drop(talker);
}

/// Three echo clients get their echoes; the server gets `signal`; each reads end of file.
fn echo_stops_on(mux: &str, signal: Signal) {
    let mut server = start("echo-server", mux, &[]);
    util::require("python3");
    util::require("nc");
    let port = server.port.to_string();
    let mut nc = Command::new("nc")
        .args(["127.0.0.1", &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("nc");
    let mut python = Command::new("python3")
        .args([
            "-c",
            "import socket, sys\n\
             s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n\
             s.sendall(b'from python\\n')\n\
             while data := s.recv(4096):\n\
             \x20   sys.stdout.buffer.write(data); sys.stdout.buffer.flush()\n",
            &port,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut std_client = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    std_client.write_all(b"from std\n").expect("send");
    // nc runs until its input ends and the server closes; its input ends now, with no FIN.
    let mut typing = nc.stdin.take().expect("its stdin");
    typing.write_all(b"from nc\n").expect("typing into nc");
    drop(typing);
    let outputs: [Box<dyn Read + Send>; 3] = [
        Box::new(nc.stdout.take().expect("stdout")),
        Box::new(python.stdout.take().expect("stdout")),
        Box::new(std_client.try_clone().expect("clone")),
    ];
    // Each output read to its end on a thread of its own: every wait here is bounded.
    let (heard_tx, heard) = mpsc::channel();
    let (echoed_tx, echoed) = mpsc::channel();
    for (index, output) in outputs.into_iter().enumerate() {
        let (heard_tx, echoed_tx) = (heard_tx.clone(), echoed_tx.clone());
        std::thread::spawn(move || {
            let mut output = BufReader::new(output);
            let mut echo = String::new();
            let _ = output.read_line(&mut echo);
            let _ = echoed_tx.send((index, echo));
            let mut rest = String::new();
            let ended = output.read_to_string(&mut rest).map(|_| rest);
            let _ = heard_tx.send((index, ended.map_err(|e| e.to_string())));
        });
    }
    let want = ["from nc\n", "from python\n", "from std\n"];
    for _ in 0..3 {
        let (index, echo) = echoed.recv_timeout(WAIT).expect("an echo within WAIT");
        assert_eq!(echo, want[index], "{mux}");
    }
    server.signal(signal);
    for _ in 0..3 {
        let (index, rest) = heard.recv_timeout(WAIT).expect("end of file within WAIT");
        assert_eq!(
            rest.as_deref(),
            Ok(""),
            "{mux}: client {index}: after its echo, end of file"
        );
    }
    let (status, stderr) = server.wait();
    assert!(status.success(), "{mux}: exited with {status}; stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("{}: stopped; every client was closed\n", signal.as_str())),
        "{stderr}"
    );
    for mut child in [nc, python] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A client that sends and never reads its echo: the echo waits, the server stops reading it
/// (backpressure) and its writes stall; SIGINT; the server cuts it off after STOP_FLUSH.
fn echo_stop_cuts_off_a_client_that_never_reads(mux: &str) {
    let mut server = start("echo-server", mux, &[]);
    let mut stalled = never_reads(server.port);
    let written = write_until_pushed_back(&mut stalled, &[b'e'; 4096]);
    assert!(written > 0);
    let signalled = Instant::now();
    server.signal(Signal::SIGINT);
    let (status, stderr) = server.wait();
    let took = signalled.elapsed();
    assert!(status.success(), "{mux}: exited with {status}; stderr:\n{stderr}");
    assert!(
        stderr.contains("SIGINT: stopped; every client was closed; 1 of them cut off with output unsent after 1 s"),
        "{mux}: {stderr}"
    );
    assert!(
        took >= STOP_FLUSH,
        "{mux}: exited {took:?} after SIGINT, before its bound"
    );
    assert!(stalled.as_raw_fd() > 0);
}

/// Started as `server &` from a script starts it (SIGINT ignored, and SIG_IGN survives exec),
/// the server takes SIGINT all the same, and its trace shows what it replaced.
#[test]
fn a_server_started_with_sigint_ignored_still_stops_on_it() {
    util::require("python3");
    let wrapper = format!(
        "import os, signal\n\
         signal.signal(signal.SIGINT, signal.SIG_IGN)\n\
         program = {program:?}\n\
         os.execv(program, [program, 'echo-server', '--port', '0', '--trace', 'plain'])\n",
        program = chat::socklab().display().to_string()
    );
    let mut child = Command::new("python3")
        .args(["-c", &wrapper])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stderr = BufReader::new(child.stderr.take().expect("its stderr"));
    let mut first = String::new();
    stderr.read_line(&mut first).expect("its first line");
    let port = chat::listening_port(&first).unwrap_or_else(|| panic!("no port in {first:?}"));
    // An echo proves its loop runs, and so that its handlers are in place: the line above is
    // printed before they are, and a SIGINT then would find SIG_IGN.
    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    client.write_all(b"x").expect("send");
    let mut echo = [0u8; 1];
    client.set_read_timeout(Some(WAIT)).expect("SO_RCVTIMEO");
    client.read_exact(&mut echo).expect("the echo");
    nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("kill");
    let output = util::wait_with_deadline(child, Duration::from_secs(30));
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("its stderr");
    assert!(output.status.success(), "exited with {}: {rest}", output.status);
    assert!(rest.contains("SIGINT: stopped; every client was closed"), "{rest}");
    let trace = String::from_utf8_lossy(&output.stdout);
    assert!(
        trace.contains("rt_sigaction(SIGINT, {sa_handler=0xADDR, sa_mask=[], sa_flags=SA_RESTORER|SA_RESTART, sa_restorer=0xADDR}, {sa_handler=SIG_IGN, sa_mask=[], sa_flags=0}, 8) = 0"),
        "{trace}"
    );
}

/// While the server waits for a client that never reads, a second SIGINT ends the wait: its
/// trace says so, the client is cut off, and the exit status is still 0.
#[test]
fn a_second_signal_ends_the_wait_for_a_client_that_never_reads() {
    let mut child = Command::new(chat::socklab())
        .args(["echo-server", "--mux", "epoll", "--port", "0", "--trace", "plain"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("socklab");
    let mut stderr = BufReader::new(child.stderr.take().expect("its stderr"));
    let mut first = String::new();
    stderr.read_line(&mut first).expect("its first line");
    let port = chat::listening_port(&first).unwrap_or_else(|| panic!("no port in {first:?}"));
    let mut stalled = never_reads(port);
    write_until_pushed_back(&mut stalled, &[b'e'; 4096]);
    let pid = Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGINT).expect("kill");
    // The trace says when the stop began; then the second signal.
    let (line_tx, lines) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().expect("its stdout"));
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let mut trace = Vec::new();
    while !trace.iter().any(|l: &String| l.contains("SIGINT: the server stops")) {
        trace.push(lines.recv_timeout(WAIT).expect("the trace's line for the stop"));
    }
    nix::sys::signal::kill(pid, Signal::SIGINT).expect("kill");
    let output = util::wait_with_deadline(child, Duration::from_secs(30));
    trace.extend(lines.iter());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("its stderr");
    assert!(output.status.success(), "exited with {}: {rest}", output.status);
    assert!(
        trace.iter().any(|l| l.contains("» a second signal: no more waiting")),
        "{}",
        trace.join("\n")
    );
    assert!(
        rest.contains("SIGINT: stopped; every client was closed; 1 of them cut off"),
        "{rest}"
    );
}

macro_rules! every_loop {
    ($($name:ident: $mux:literal),+ $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[test]
                fn chat_server_stops_cleanly_on_sigint_and_sigterm() {
                    chat_stops_on($mux, Signal::SIGINT);
                    chat_stops_on($mux, Signal::SIGTERM);
                }

                #[test]
                fn chat_server_does_not_wait_past_its_bound_for_a_client_that_never_reads() {
                    chat_stop_cuts_off_a_client_that_never_reads($mux);
                }

                #[test]
                fn echo_server_stops_cleanly_on_sigint_and_sigterm() {
                    echo_stops_on($mux, Signal::SIGINT);
                    echo_stops_on($mux, Signal::SIGTERM);
                }

                #[test]
                fn echo_server_does_not_wait_past_its_bound_for_a_client_that_never_reads() {
                    echo_stop_cuts_off_a_client_that_never_reads($mux);
                }
            }
        )+
    };
}

every_loop!(select: "select", poll: "poll", epoll: "epoll", epoll_et: "epoll-et");
