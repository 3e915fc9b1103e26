//! Lesson 07's servers, run as a learner runs them (`lesson-07 server --port P MODEL`): the
//! iterative server makes a second client wait until the first has finished; the forking and
//! threading servers answer the second client while the first is still connected; and the
//! forking server, which never calls waitpid in server mode, leaves no zombie children
//! (SIGCHLD set to SIG_IGN: the kernel reaps them; tests/forks/fork.rs shows a child nobody waits
//! for staying a zombie otherwise).
//!
//! "Waiting" is shown with the kernel's own numbers: while the first client's conversation
//! goes on, the second client's connection sits in the listener's accept queue (the `rx_queue`
//! of a LISTEN socket in /proc/net/tcp is that queue's length) and no byte reaches it.

use crate::util;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A bound on every wait, so a broken server fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(10);

#[test]
fn iterative_server_makes_the_second_client_wait() {
    let server = Server::start("iterative");
    let mut first = server.connect();
    assert_eq!(echo(&mut first, "first\n"), "first\n");

    let mut second = server.connect();
    second.write_all(b"second\n").expect("send");
    // The kernel finished the second client's handshake, but nobody accepted it.
    server.wait_for_accept_queue(1);

    // The first conversation goes on, and the server answers it...
    assert_eq!(echo(&mut first, "still here\n"), "still here\n");
    // ...while the second client, connected before that, is still unaccepted and unanswered.
    assert_eq!(
        server.accept_queue(),
        1,
        "the iterative server accepted a second client"
    );
    assert!(
        nothing_to_read(&second),
        "the second client got a reply while the first was served"
    );

    // Only when the first client goes does the second get its reply.
    drop(first);
    assert_eq!(read_reply(&mut second), "second\n");
    assert_eq!(server.accept_queue(), 0);
}

#[test]
fn forking_server_answers_the_second_client_at_once() {
    second_client_is_served_while_the_first_is_connected("forking");
}

#[test]
fn threading_server_answers_the_second_client_at_once() {
    second_client_is_served_while_the_first_is_connected("threading");
}

fn second_client_is_served_while_the_first_is_connected(model: &str) {
    let server = Server::start(model);
    let mut first = server.connect();
    assert_eq!(echo(&mut first, "first\n"), "first\n");

    // The first client stays connected and silent; the second is answered anyway.
    let mut second = server.connect();
    assert_eq!(echo(&mut second, "second\n"), "second\n");
    assert_eq!(
        server.accept_queue(),
        0,
        "{model}: a connection is still waiting for accept"
    );

    // And the first conversation was never interrupted.
    assert_eq!(echo(&mut first, "still here\n"), "still here\n");
    drop(second);
    drop(first);
}

#[test]
fn forking_server_leaves_no_zombie_children() {
    let server = Server::start("forking");
    for round in 0..3 {
        let mut client = server.connect();
        assert_eq!(
            echo(&mut client, &format!("round {round}\n")),
            format!("round {round}\n")
        );
    }
    // Each child exits once its client has gone (dropped above). Whether it is still running
    // or a zombie, it is listed as the server's child until the kernel reaps it.
    let started = Instant::now();
    loop {
        let children = children_of(server.child.id());
        if children.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the forking server still has children (pid, state): {children:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// (pid, state) of every process whose parent is `parent`, from /proc/PID/stat.
fn children_of(parent: u32) -> Vec<(u32, char)> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "PID (name) STATE PPID ...": the name may hold spaces, so split after its ')'.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            children.push((pid, state));
        }
    }
    children
}

/// The lesson program in server mode, killed (by its own PID) when the test ends.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(model: &str) -> Server {
        let port = util::free_port();
        let child = Command::new(util::lesson_program(7))
            .args(["server", "--port", &port.to_string(), model])
            .env("SOCKLAB_TRACE", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting lesson-07 server");
        let mut server = Server { child, port };
        server.wait_until_listening();
        server
    }

    /// Waits until the listening socket exists: its row appears in /proc/net/tcp.
    fn wait_until_listening(&mut self) {
        let started = Instant::now();
        while self.listen_row().is_none() {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("the server exited early: {status}");
            }
            assert!(started.elapsed() < PATIENCE, "the server never listened");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("SO_RCVTIMEO");
        stream
    }

    /// The LISTEN row for our port in /proc/net/tcp.
    fn listen_row(&self) -> Option<String> {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
        let local = format!("0100007F:{:04X}", self.port);
        table
            .lines()
            .find(|row| {
                let fields: Vec<&str> = row.split_whitespace().collect();
                fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
            })
            .map(String::from)
    }

    /// How many finished handshakes wait for accept: for a LISTEN socket, the kernel shows
    /// the accept queue's length as `rx_queue` (the hex after the colon in `tx_queue:rx_queue`).
    fn accept_queue(&self) -> usize {
        let row = self.listen_row().expect("the listening socket is gone");
        let queues = row.split_whitespace().nth(4).expect("tx_queue:rx_queue");
        let rx = queues.split_once(':').expect("tx:rx").1;
        usize::from_str_radix(rx, 16).expect("hex")
    }

    /// The final ACK of a handshake may be processed a moment after connect returns: look
    /// until the queue holds `n` (a bounded wait, not a timing assertion).
    fn wait_for_accept_queue(&self, n: usize) {
        let started = Instant::now();
        while self.accept_queue() != n {
            assert!(started.elapsed() < PATIENCE, "the accept queue never held {n}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn echo(stream: &mut TcpStream, line: &str) -> String {
    stream.write_all(line.as_bytes()).expect("send");
    read_reply(stream)
}

fn read_reply(stream: &mut TcpStream) -> String {
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).expect("a reply (SO_RCVTIMEO bounds the wait)");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Whether the socket has no byte waiting, without blocking.
fn nothing_to_read(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    stream.set_nonblocking(true).expect("O_NONBLOCK");
    let result = stream.peek(&mut buf);
    stream.set_nonblocking(false).expect("blocking again");
    matches!(result, Err(ref e) if e.kind() == ErrorKind::WouldBlock)
}
