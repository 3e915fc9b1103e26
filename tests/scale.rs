//! How many idle clients each loop holds, and whether it still serves every one of them:
//! `socklab echo-server` (the echo service: the chat's broadcast to 10,000 would test the room,
//! not the loop) under select, poll, epoll and epoll-et.
//!
//! - select holds clients up to its FD_SETSIZE ceiling, about 1,000: the client that would get
//!   descriptor 1024 is told why and closed, and everyone inside is still echoed;
//! - poll and epoll (level and edge) hold 10,000 idle clients, and then every one of them, the
//!   last to join included, still gets its own line back.
//!
//! RLIMIT_NOFILE: the test raises its own soft limit (its clients need 10,000 descriptors), and
//! the server inherits it, since resource limits survive fork and exec. Where the hard limit is
//! too low the test says so and skips. The tests take turns (a lock): two at once would need
//! twice the descriptors, and this machine has two cores.
//!
//! Synchronisation is real, never a sleep: clients join in batches, and the last of each batch
//! must get its line back before the next batch connects. The listener's accept queue is
//! first-in first-out, so that one's echo means every earlier client was accepted, and the
//! queue never holds more than a batch (its backlog is 128).

mod util;
#[macro_use]
#[path = "programs/chat/mod.rs"]
mod chat;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Mutex;

use chat::{Server, WAIT};
use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// One test at a time: see the module's doc.
static TURN: Mutex<()> = Mutex::new(());

/// Idle clients that poll and epoll must hold: ten times what select can.
const MANY: usize = 10_000;

/// Descriptors beyond its clients a process needs: stdio, the listener, the spare, epoll,
/// the test harness's pipes and threads.
const MARGIN: u64 = 64;

/// Clients that connect before the last of them must answer.
const BATCH: usize = 100;

/// Raises this process's soft RLIMIT_NOFILE to at least `wanted`. `Err` says why it cannot.
fn raise_descriptor_limit(wanted: u64) -> Result<(), String> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit: {e}"))?;
    if soft >= wanted {
        return Ok(());
    }
    if hard < wanted {
        return Err(format!(
            "RLIMIT_NOFILE hard limit is {hard}, below the {wanted} this test needs (raise it with `ulimit -Hn`)"
        ));
    }
    setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).map_err(|e| format!("setrlimit: {e}"))
}

/// `socklab echo-server --mux MUX --port 0 --trace off`.
fn start_echo_server(mux: &str) -> Server {
    let mut command = Command::new(chat::socklab());
    command.args(["echo-server", "--mux", mux, "--port", "0", "--trace", "off"]);
    Server::start_command(command)
}

/// A new client that connected; the server may not have accepted it yet.
fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the echo server");
    stream.set_read_timeout(Some(WAIT)).expect("SO_RCVTIMEO");
    util::reset_on_close(&stream);
    stream
}

/// Sends `line` and returns what came back: the line itself from a server that took the client,
/// or whatever it said before closing (everything up to end-of-file).
fn round_trip(stream: &mut TcpStream, line: &str) -> String {
    stream.write_all(line.as_bytes()).expect("sending a line");
    let mut answer = vec![0u8; line.len()];
    let mut got = 0;
    while got < answer.len() {
        match stream.read(&mut answer[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(error) => panic!("no answer to {line:?} within {WAIT:?}: {error}"),
        }
    }
    answer.truncate(got);
    let mut text = String::from_utf8_lossy(&answer).into_owned();
    if got > 0 && !text.ends_with('\n') {
        // A refusal is longer than our line: read the rest of it, up to the close. The close
        // may come as a reset (our line was unread), but only after the bytes sent before it.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        text.push_str(&String::from_utf8_lossy(&rest));
    }
    text
}

/// Every client sends its own line first, then every client reads its echo: all of them are
/// waiting on the server at once, the last-joined among them.
fn everyone_is_echoed(clients: &mut [TcpStream]) {
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .write_all(format!("line from client {i}\n").as_bytes())
            .expect("sending a line");
    }
    let total = clients.len();
    for (i, client) in clients.iter_mut().enumerate() {
        let expected = format!("line from client {i}\n");
        let mut answer = vec![0u8; expected.len()];
        client
            .read_exact(&mut answer)
            .unwrap_or_else(|e| panic!("client {i} of {total} got no echo: {e}"));
        assert_eq!(String::from_utf8_lossy(&answer), expected, "client {i}");
    }
}

/// Connects `MANY` clients in batches, then checks that every one is still served.
fn holds_many_idle_clients(mux: &str) {
    let _turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Err(reason) = raise_descriptor_limit(MANY as u64 + MARGIN) {
        println!("skipped: {reason}");
        return;
    }
    let mut server = start_echo_server(mux);
    let mut clients: Vec<TcpStream> = Vec::with_capacity(MANY);
    while clients.len() < MANY {
        for _ in 0..BATCH.min(MANY - clients.len()) {
            clients.push(connect(server.port));
        }
        let n = clients.len();
        let line = format!("joined as client {n}\n");
        let last = clients.last_mut().expect("a client");
        assert_eq!(round_trip(last, &line), line, "client {n} was not served");
    }
    everyone_is_echoed(&mut clients);
    server.assert_alive();
}

#[test]
fn poll_holds_10000_idle_clients_and_still_serves_every_one() {
    holds_many_idle_clients("poll");
}

#[test]
fn epoll_holds_10000_idle_clients_and_still_serves_every_one() {
    holds_many_idle_clients("epoll");
}

#[test]
fn edge_triggered_epoll_holds_10000_idle_clients_and_still_serves_every_one() {
    holds_many_idle_clients("epoll-et");
}

/// select holds clients until the next one would be descriptor 1024: that one is told why and
/// closed (no panic, no FD_SET past the end of the bitmap), and everyone inside is still served.
#[test]
fn select_holds_clients_up_to_fd_setsize_and_refuses_the_next_cleanly() {
    const SETSIZE: usize = libc::FD_SETSIZE;
    let _turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Enough that running out of descriptors (EMFILE) cannot come first, on either side.
    if let Err(reason) = raise_descriptor_limit(2 * SETSIZE as u64 + MARGIN) {
        println!("skipped: {reason}");
        return;
    }
    let mut server = start_echo_server("select");
    let mut clients: Vec<TcpStream> = Vec::new();
    let refusal = loop {
        assert!(
            clients.len() < SETSIZE,
            "select took {} clients: more than FD_SETSIZE allows",
            clients.len()
        );
        // One at a time: the refusal must come to exactly the client past the limit.
        let mut client = connect(server.port);
        let line = format!("joined as client {}\n", clients.len());
        let answer = round_trip(&mut client, &line);
        if answer != line {
            break answer;
        }
        clients.push(client);
    };
    assert_eq!(
        refusal,
        format!(
            "! sorry, the server cannot take you: descriptor {SETSIZE} is past select's limit of {SETSIZE} (FD_SETSIZE)\n"
        ),
        "what the client past the limit heard, after {} got in",
        clients.len()
    );
    // Descriptors 0-2 are stdio, then the listener and the spare kept for EMFILE: at most every
    // other number below 1024 is a client (fewer if the server inherited descriptors).
    assert!(
        (SETSIZE - 64..=SETSIZE - 5).contains(&clients.len()),
        "{} clients held under select",
        clients.len()
    );
    everyone_is_echoed(&mut clients);
    server.assert_alive();
}
