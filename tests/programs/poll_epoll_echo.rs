//! The echo servers of lessons 13 (poll), 14 (epoll) and 15 (epoll, edge-triggered), in
//! `server` mode, with real clients:
//! - several clients connected at once each get their own lines back, whoever speaks first;
//! - edge-triggered, a message of many turns' reads comes back whole: the server comes back
//!   by itself for what one turn left, which no new edge announces;
//! - lesson 13 echoes with a blocking send, so one client that sends without reading stalls
//!   everyone: a newcomer hears nothing, not even the greeting, until that client reads
//!   (its README's pitfall);
//! - lesson 15's sockets are non-blocking, so such a client is let go and the others are
//!   served meanwhile (the comment on its `serve`).

use crate::util;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

/// How long a client waits for an echo that should come before the test fails (a hang guard).
const ECHO_LIMIT: Duration = Duration::from_secs(10);
/// How long a client waits to show that nothing comes: a lower bound, never an upper one.
const SILENCE: Duration = Duration::from_millis(700);
/// The greeting lesson 13's server sends first.
const GREETING_13: &str = "hello from lesson 13: send lines, I echo them\n";
/// What a client that never reads sends, at most, before the test stops it.
const FLOOD_LIMIT: usize = 256 << 20;

/// A lesson's server mode on a free port; its trace is drained so it never blocks on stdout.
struct Server(Child);

impl Server {
    fn start(lesson: u8) -> (Server, u16) {
        let port = util::free_port();
        let child = util::start_lesson_server(lesson, port, "listening on");
        (Server(child), port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Our own child, by its PID; server mode would otherwise run for a long while.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(ECHO_LIMIT)).expect("SO_RCVTIMEO");
    stream
}

/// Reads exactly `len` bytes.
fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut got = vec![0u8; len];
    stream.read_exact(&mut got).expect("reading what the server sent");
    got
}

/// Sends `text` and returns what comes back of the same length.
fn echo(stream: &mut TcpStream, text: &[u8]) -> Vec<u8> {
    stream.write_all(text).expect("send");
    read_exactly(stream, text.len())
}

/// Three clients connected at once; the last to connect speaks first.
fn several_clients_at_once(lesson: u8, greeting: &str) {
    let (_server, port) = Server::start(lesson);
    let mut clients: Vec<TcpStream> = (0..3).map(|_| connect(port)).collect();
    for client in &mut clients {
        assert_eq!(read_exactly(client, greeting.len()), greeting.as_bytes());
    }
    for (index, client) in clients.iter_mut().enumerate().rev() {
        let line = format!("client {index} speaks\n");
        assert_eq!(echo(client, line.as_bytes()), line.as_bytes());
    }
    for (index, client) in clients.iter_mut().enumerate() {
        let line = format!("client {index} again\n");
        assert_eq!(echo(client, line.as_bytes()), line.as_bytes());
    }
}

#[test]
fn lesson_13_serves_several_clients_at_once() {
    several_clients_at_once(13, GREETING_13);
}

#[test]
fn lesson_14_serves_several_clients_at_once() {
    several_clients_at_once(14, "");
}

#[test]
fn lesson_15_serves_several_clients_at_once() {
    several_clients_at_once(15, "");
}

/// The edge-triggered server reads 16 x 4096 bytes per turn: a message of a megabyte takes
/// many turns, and what one turn leaves no new edge announces once the sender has stopped.
/// The whole of it comes back only if the server comes back to it by itself.
#[test]
fn lesson_15_comes_back_by_itself_for_what_a_turn_left_unread() {
    let (_server, port) = Server::start(15);
    let mut client = connect(port);
    let long: Vec<u8> = (0..1_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut reader = client.try_clone().expect("dup");
    let expected = long.len();
    let echoed = std::thread::spawn(move || read_exactly(&mut reader, expected));
    client.write_all(&long).expect("send");
    let echoed = echoed.join().expect("the reader");
    assert!(echoed == long, "the whole megabyte, in order");
}

/// Sends without reading until the kernel has no room left on either side for a while: the
/// server, blocked in a send to us, has stopped reading. Returns whether that happened.
fn flood_until_stuck(flooder: &mut TcpStream) -> bool {
    flooder.set_nonblocking(true).expect("O_NONBLOCK");
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    let mut stuck_since: Option<Instant> = None;
    while sent < FLOOD_LIMIT {
        match flooder.write(&chunk) {
            Ok(n) => {
                sent += n;
                stuck_since = None;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let since = *stuck_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= SILENCE {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn lesson_13_one_client_that_never_reads_stalls_everyone() {
    let (_server, port) = Server::start(13);
    let mut flooder = connect(port);
    assert_eq!(read_exactly(&mut flooder, GREETING_13.len()), GREETING_13.as_bytes());
    assert!(
        flood_until_stuck(&mut flooder),
        "the server kept reading from a client that never reads"
    );

    // The kernel still completes a newcomer's handshake, but the server never gets to it.
    let mut newcomer = connect(port);
    newcomer.set_read_timeout(Some(SILENCE)).expect("SO_RCVTIMEO");
    newcomer.write_all(b"anyone there?\n").expect("send");
    let mut buf = [0u8; 64];
    let heard = newcomer.read(&mut buf);
    assert!(
        matches!(&heard, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the newcomer heard {heard:?} while the server was stuck in a send"
    );

    // The flooder reads at last: the server's send completes, and everyone is served again.
    flooder.set_nonblocking(false).expect("blocking");
    flooder.shutdown(Shutdown::Write).expect("shutdown");
    let reader = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = flooder.read_to_end(&mut sink);
    });
    newcomer.set_read_timeout(Some(ECHO_LIMIT)).expect("SO_RCVTIMEO");
    let expected = format!("{GREETING_13}anyone there?\n");
    assert_eq!(read_exactly(&mut newcomer, expected.len()), expected.as_bytes());
    drop(newcomer);
    reader.join().expect("the flooder's reader");
}

#[test]
fn lesson_15_lets_a_client_that_never_reads_go_and_serves_the_others() {
    let (_server, port) = Server::start(15);
    let mut flooder = connect(port);
    let mut other = connect(port);
    assert_eq!(echo(&mut other, b"before\n"), b"before\n");
    flooder.set_nonblocking(true).expect("O_NONBLOCK");
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    let deadline = Instant::now() + ECHO_LIMIT;
    // The server's echo meets EAGAIN once our receive buffer is full, and it closes us: our
    // sends then fail (EPIPE or ECONNRESET).
    let dropped = loop {
        match flooder.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break true,
        }
        if sent >= FLOOD_LIMIT || Instant::now() >= deadline {
            break false;
        }
    };
    assert!(
        dropped,
        "a client that never reads was still connected after {sent} bytes"
    );
    assert_eq!(
        echo(&mut other, b"after\n"),
        b"after\n",
        "the others are served all along"
    );
}
