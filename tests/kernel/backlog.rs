//! The backlog (lesson 07, `make lesson-7 ARGS=backlog`): with `listen(fd, B)` and nobody
//! accepting, Linux lets B + 1 finished handshakes wait in the accept queue. The next client is
//! not refused: its SYN is dropped (the kernel counts a ListenOverflows), it sends the SYN again
//! after the retransmission timeout (1 s, then 3 s, 7 s...), and its connect returns only once
//! an accept has made room. ss -lnt shows the queue as Recv-Q and the backlog as Send-Q, the
//! numbers TCP_INFO gives on the listener. A backlog above net.core.somaxconn is cut to it.
//!
//! Cost: about 0.5 s for each queue-holding test (it waits to see the extra client *not*
//! connect) and about 1 s for the delayed client (one SYN retransmission); the lesson's part
//! about 1.2 s.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util;
use crate::util::tcp;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The backlog most tests here pass to listen.
const BACKLOG: u32 = 2;
/// A bound on waits for things that take microseconds on loopback (a hang guard, not a claim).
const PATIENCE: Duration = Duration::from_secs(5);
/// Long enough to see that a client whose SYN was dropped is still not connected: Linux sends
/// the first SYN retransmission after its initial RTO of 1 s (RFC 6298), never sooner.
const NOT_BEFORE_RETRANSMISSION: Duration = Duration::from_millis(500);
/// The least a delayed connect can take: one initial RTO (1 s), less timer granularity.
const ONE_RETRANSMISSION: Duration = Duration::from_millis(900);
/// How long the delayed connect may take after accept before the test gives up on it.
const CONNECT_GUARD: Duration = Duration::from_secs(20);

fn tcp_socket() -> Socket {
    Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket")
}

fn loopback(port: u16) -> SockAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into()
}

fn port_of(sock: &Socket) -> u16 {
    sock.local_addr()
        .expect("getsockname")
        .as_socket()
        .expect("an IP address")
        .port()
}

/// A listener on 127.0.0.1 at a port the kernel picks, made with `listen(fd, backlog)`, and that port.
fn listener(backlog: u32) -> (Socket, u16) {
    let sock = tcp_socket();
    sock.bind(&loopback(0)).expect("bind");
    sock.listen(backlog as i32).expect("listen");
    let port = port_of(&sock);
    (sock, port)
}

/// A client whose connect is under way: non-blocking, so the test decides how long to wait.
fn start_connect(port: u16) -> Socket {
    let sock = tcp_socket();
    sock.set_nonblocking(true).expect("O_NONBLOCK");
    match sock.connect(&loopback(port)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => panic!("connect: {e}"),
    }
    sock
}

/// Whether the handshake of `sock` finished within `limit` and succeeded (writable, SO_ERROR 0).
fn connected_within(sock: &Socket, limit: Duration) -> bool {
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLOUT)];
    let ms = PollTimeout::try_from(limit).expect("a poll timeout");
    if poll(&mut fds, ms).expect("poll") == 0 {
        return false;
    }
    if let Some(error) = sock.take_error().expect("SO_ERROR") {
        panic!("the connect failed: {error}");
    }
    true
}

/// `count` clients, each connected before the next starts.
fn fill(port: u16, count: u32) -> Vec<Socket> {
    (1..=count)
        .map(|n| {
            let client = start_connect(port);
            assert!(
                connected_within(&client, PATIENCE),
                "client {n} of {count} did not connect"
            );
            client
        })
        .collect()
}

/// The final ACK of a handshake may be processed a moment after connect returns: look until
/// the listener's queue holds `n`.
fn wait_for_queue(listener: &Socket, n: u32) {
    assert!(
        tcp::wait_until(PATIENCE, || tcp::info(listener).tcpi_unacked == n),
        "the accept queue never held {n}; it holds {}",
        tcp::info(listener).tcpi_unacked
    );
}

fn the_accept_queue_holds_backlog_plus_one(backlog: u32) {
    let (listener, port) = listener(backlog);
    let _waiting = fill(port, backlog + 1);
    wait_for_queue(&listener, backlog + 1);

    let info = tcp::info(&listener);
    assert_eq!(info.tcpi_state, tcp::LISTEN);
    assert_eq!(
        (info.tcpi_unacked, info.tcpi_sacked),
        (backlog + 1, backlog),
        "TCP_INFO on the listener: (queued, backlog)"
    );
    let row = tcp::listen_row(port);
    assert_eq!(
        (row.recv_q, row.send_q),
        (u64::from(backlog) + 1, u64::from(backlog)),
        "ss -lnt: Recv-Q is the queue, Send-Q the backlog"
    );

    // One more client: its SYN finds the queue full and is dropped, so nothing answers it.
    let next = start_connect(port);
    assert!(
        !connected_within(&next, NOT_BEFORE_RETRANSMISSION),
        "listen({backlog}) took more than {} connections",
        backlog + 1
    );
    assert_eq!(
        tcp::state(&next),
        tcp::SYN_SENT,
        "the extra client still waits for a SYN-ACK"
    );
    let next_port = port_of(&next);
    assert_eq!(
        tcp::row(next_port, port).map(|r| r.state),
        Some("SYN-SENT".to_string()),
        "ss shows the extra client in SYN-SENT"
    );
    assert_eq!(tcp::info(&listener).tcpi_unacked, backlog + 1, "the queue did not grow");
}

#[test]
fn listen_2_holds_three_connections_and_ss_shows_recv_q_3_send_q_2() {
    the_accept_queue_holds_backlog_plus_one(BACKLOG);
}

#[test]
fn listen_0_still_holds_one_connection() {
    the_accept_queue_holds_backlog_plus_one(0);
}

#[test]
fn a_client_past_a_full_queue_is_delayed_until_accept_makes_room_not_refused() {
    // With tcp_abort_on_overflow = 1 the kernel resets a client whose *final ACK* finds the
    // queue full; a SYN that finds it full is dropped in both settings, and that is the case here.
    let abort_on_overflow = tcp::sysctl("net/ipv4/tcp_abort_on_overflow");
    println!("net.ipv4.tcp_abort_on_overflow = {abort_on_overflow}; the SYN-drop case is tested");

    let (listener, port) = listener(BACKLOG);
    let _waiting = fill(port, BACKLOG + 1);
    wait_for_queue(&listener, BACKLOG + 1);
    let overflows = tcp::listen_overflows();

    // A blocking connect, as a user's client makes it, with no SO_SNDTIMEO: with a timeout set,
    // any wake-up of the sleeping thread (a cgroup freeze, a stop and continue) ends connect
    // with EINTR; without one the kernel restarts it unseen. The test bounds the wait itself.
    let client = Arc::new(tcp_socket());
    let started = Instant::now();
    let dialer = {
        let client = Arc::clone(&client);
        std::thread::spawn(move || {
            let result = client.connect(&loopback(port));
            (result, Instant::now())
        })
    };

    assert!(
        tcp::wait_until(PATIENCE, || tcp::state(&*client) == tcp::SYN_SENT),
        "the client never sent its SYN"
    );
    assert!(
        tcp::wait_until(PATIENCE, || tcp::listen_overflows() > overflows),
        "the kernel counted no ListenOverflows: the SYN was not dropped on the full queue"
    );
    assert!(!dialer.is_finished(), "connect returned while the queue was still full");

    let accepted_at = Instant::now();
    let (_first, _) = listener.accept().expect("accept");
    // A hang guard, not a claim: the SYN goes again at 1 s, 3 s, 7 s, 15 s after the first.
    assert!(
        tcp::wait_until(CONNECT_GUARD, || dialer.is_finished()),
        "connect still blocked {CONNECT_GUARD:?} after accept made room"
    );
    let (result, connected_at) = dialer.join().expect("the connecting thread");
    result.unwrap_or_else(|e| panic!("connect failed ({e}); tcp_abort_on_overflow = {abort_on_overflow}"));
    assert!(connected_at > accepted_at, "connect returned before accept made room");
    let waited = connected_at - started;
    println!("the delayed connect took {waited:?}");
    assert!(
        waited >= ONE_RETRANSMISSION,
        "connect took {waited:?}: less than one SYN retransmission timeout"
    );
    let info = tcp::info(&*client);
    assert_eq!(info.tcpi_state, tcp::ESTABLISHED);
    assert!(
        info.tcpi_total_retrans >= 1,
        "the SYN was sent again: tcpi_total_retrans = {}",
        info.tcpi_total_retrans
    );
}

#[test]
fn a_backlog_above_somaxconn_is_cut_to_it() {
    let somaxconn: u32 = tcp::sysctl("net/core/somaxconn")
        .parse()
        .expect("net.core.somaxconn is a number");
    println!("net.core.somaxconn = {somaxconn}");
    let asked_for = [somaxconn as i32 + 1000, i32::MAX, -1, 7];
    for asked in asked_for {
        let sock = tcp_socket();
        sock.bind(&loopback(0)).expect("bind");
        // SAFETY: listen takes a descriptor this socket owns and an int.
        let ret = unsafe { libc::listen(sock.as_raw_fd(), asked) };
        assert_eq!(ret, 0, "listen({asked}) is never refused for its size");
        // The kernel compares the backlog as an unsigned int: -1 is the largest of all.
        let kept = if asked >= 0 && (asked as u32) < somaxconn {
            asked as u32
        } else {
            somaxconn
        };
        assert_eq!(tcp::info(&sock).tcpi_sacked, kept, "listen({asked})");
        assert_eq!(
            tcp::listen_row(port_of(&sock)).send_q,
            u64::from(kept),
            "ss Send-Q after listen({asked})"
        );
    }
}

/// socklab::sys::listen goes through nix's `Backlog`, which refuses more than libc's SOMAXCONN
/// (4096) itself, before any system call; -1 (`Backlog::MAXALLOWABLE`) asks for the most.
#[test]
fn socklab_listen_refuses_above_4096_before_the_kernel_sees_it() {
    socklab::trace::set_mode(socklab::trace::Mode::Off);
    let sock = tcp_socket();
    sock.bind(&loopback(0)).expect("bind");
    assert_eq!(socklab::sys::listen(&sock, 5000), Err(nix::errno::Errno::EINVAL));
    assert_eq!(sock.is_listener().ok(), Some(false), "nothing listened");
    socklab::sys::listen(&sock, -1).expect("listen(fd, -1)");
    let somaxconn: u32 = tcp::sysctl("net/core/somaxconn").parse().expect("a number");
    assert_eq!(tcp::info(&sock).tcpi_sacked, somaxconn);
}

/// The lesson's own part, run as a learner runs it, its trace read as JSON lines: the first
/// three clients' connects returned before any accept4 began; the fourth's returned only after
/// the first accept4, at least one SYN retransmission timeout after it began; the listener's
/// TCP_INFO said 3 waiting with a backlog of 2; and listen(fd, -1) was cut to somaxconn.
#[test]
fn lesson_07_backlog_part_shows_the_queue_and_the_delayed_client() {
    let mut command = Command::new(util::lesson_program(7));
    command.arg("backlog").env("SOCKLAB_TRACE", "json");
    let output = util::run_with_deadline(command, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let records: Vec<&str> = stdout.lines().collect();
    let call = |actor: &str, syscall: &str| -> Span {
        let wanted = format!("\"actor\":\"{actor}\",\"syscall\":\"{syscall}\"");
        let line = records
            .iter()
            .find(|line| line.contains(&wanted))
            .unwrap_or_else(|| panic!("no {syscall} by {actor} in:\n{stdout}"));
        Span::of(line)
    };
    let first_accept = call("server", "accept4");
    for client in ["client#1", "client#2", "client#3"] {
        let connect = call(client, "connect");
        assert!(
            connect.end() < first_accept.start,
            "{client}'s connect returned before anyone accepted: {connect:?}, accept4 {first_accept:?}"
        );
    }
    let delayed = call("client#4", "connect");
    assert!(
        delayed.end() > first_accept.start,
        "client#4's connect returned only after the first accept4 began: {delayed:?}, accept4 {first_accept:?}"
    );
    assert!(
        delayed.blocked >= ONE_RETRANSMISSION.as_secs_f64(),
        "client#4's connect blocked {} s: less than one SYN retransmission",
        delayed.blocked
    );
    assert!(
        stdout.contains("Recv-Q 3, Send-Q 2: backlog + 1 connections wait"),
        "{stdout}"
    );
    let somaxconn = tcp::sysctl("net/core/somaxconn");
    assert!(
        stdout.contains(&format!("Send-Q {somaxconn}: net.core.somaxconn on this machine")),
        "{stdout}"
    );
}

/// When a call began (`t`) and how long it blocked (`blocked_us`), in seconds since the demo began.
#[derive(Debug)]
struct Span {
    start: f64,
    blocked: f64,
}

impl Span {
    fn of(record: &str) -> Span {
        let number = |key: &str| -> f64 {
            let after = record
                .split_once(&format!("\"{key}\":"))
                .unwrap_or_else(|| panic!("no {key} in {record}"))
                .1;
            let digits: String = after.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            digits
                .parse()
                .unwrap_or_else(|_| panic!("{key} is not a number in {record}"))
        };
        Span {
            start: number("t"),
            blocked: number("blocked_us") / 1e6,
        }
    }

    fn end(&self) -> f64 {
        self.start + self.blocked
    }
}
