//! Lesson 08's claims about non-blocking sockets, asserted against the kernel:
//! - recv on an empty non-blocking socket fails with EAGAIN (O_NONBLOCK set by fcntl, or by
//!   SOCK_NONBLOCK at socket(), which is the same flag F_GETFL shows; ioctl FIONBIO too);
//! - O_NONBLOCK belongs to the open socket, so a dup'd descriptor shares it;
//! - accept4 on a non-blocking listener with nothing queued fails with EAGAIN;
//! - an accepted socket does not inherit O_NONBLOCK from the listener (SOCK_NONBLOCK asks for it);
//! - a non-blocking connect to a live port says EINPROGRESS, turns writable, and SO_ERROR is 0;
//! - to a closed port it ends in ECONNREFUSED (at once, or as POLLERR and SO_ERROR), and
//!   reading SO_ERROR clears it;
//! - Python's setblocking(False) is ioctl(FIONBIO) on Linux, and settimeout(t) sets it too and
//!   then waits in poll for up to t;
//! - waiting by busy-polling burns CPU time: the lesson's spin uses many times the CPU its
//!   poll uses for the same wait (a shape within one run, not a timing).

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use crate::util;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, accept4, bind, connect,
    getsockname, getsockopt, listen, recv, send, socket, sockopt,
};

/// The longest any wait in these tests may take before it counts as a failure.
const WAIT_MS: u16 = 5000;

fn tcp_socket(flags: SockFlag) -> OwnedFd {
    socket(
        AddressFamily::Inet,
        SockType::Stream,
        flags | SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .expect("socket")
}

/// A socket bound to a port the kernel chose on 127.0.0.1, and that address.
fn bound(flags: SockFlag) -> (OwnedFd, SockaddrIn) {
    let sock = tcp_socket(flags);
    bind(sock.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).expect("bind 127.0.0.1:0");
    let addr: SockaddrIn = getsockname(sock.as_raw_fd()).expect("getsockname");
    (sock, addr)
}

fn listening(flags: SockFlag) -> (OwnedFd, SockaddrIn) {
    let (sock, addr) = bound(flags);
    listen(&sock, Backlog::new(8).expect("a small backlog")).expect("listen");
    (sock, addr)
}

fn is_nonblocking(fd: impl AsFd) -> bool {
    let bits = fcntl(fd, FcntlArg::F_GETFL).expect("fcntl F_GETFL");
    OFlag::from_bits_truncate(bits).contains(OFlag::O_NONBLOCK)
}

/// F_GETFL, then F_SETFL with O_NONBLOCK added: what the lesson's set_nonblocking does.
fn set_nonblocking(fd: impl AsFd) {
    let bits = fcntl(&fd, FcntlArg::F_GETFL).expect("fcntl F_GETFL");
    let flags = OFlag::from_bits_truncate(bits) | OFlag::O_NONBLOCK;
    fcntl(&fd, FcntlArg::F_SETFL(flags)).expect("fcntl F_SETFL");
}

/// Waits (bounded) for `events` on `fd` and returns what the kernel reported.
fn wait_for(fd: impl AsFd, events: PollFlags) -> PollFlags {
    let mut fds = [PollFd::new(fd.as_fd(), events)];
    let ready = poll(&mut fds, PollTimeout::from(WAIT_MS)).expect("poll");
    assert_eq!(ready, 1, "nothing became ready within {WAIT_MS} ms");
    fds[0].revents().expect("revents nix knows")
}

fn accept_now(listener: impl AsFd, flags: SockFlag) -> nix::Result<OwnedFd> {
    accept4(listener.as_fd().as_raw_fd(), flags | SockFlag::SOCK_CLOEXEC).map(|fd| {
        // SAFETY: accept4 succeeded, so fd is a fresh descriptor that nothing else owns.
        unsafe { OwnedFd::from_raw_fd(fd) }
    })
}

/// A connected pair over loopback: (the client's socket, the server's accepted socket).
fn connected_pair() -> (OwnedFd, OwnedFd) {
    let (listener, addr) = listening(SockFlag::empty());
    let client = tcp_socket(SockFlag::empty());
    connect(client.as_raw_fd(), &addr).expect("blocking connect to a listener");
    let server_side = accept_now(&listener, SockFlag::empty()).expect("accept4");
    (client, server_side)
}

#[test]
fn recv_on_an_empty_nonblocking_socket_is_eagain() {
    let (client, server_side) = connected_pair();
    assert!(!is_nonblocking(&server_side), "sockets start out blocking");
    set_nonblocking(&server_side);
    let mut buf = [0u8; 16];
    assert_eq!(
        recv(server_side.as_raw_fd(), &mut buf, MsgFlags::empty()),
        Err(Errno::EAGAIN)
    );
    // Linux gives EWOULDBLOCK, the BSD name, the same number.
    assert_eq!(Errno::EWOULDBLOCK, Errno::EAGAIN);
    // EAGAIN is "not yet", not an error of the connection: once data is there, recv gets it.
    assert_eq!(send(client.as_raw_fd(), b"late", MsgFlags::MSG_NOSIGNAL), Ok(4));
    assert!(wait_for(&server_side, PollFlags::POLLIN).contains(PollFlags::POLLIN));
    assert_eq!(recv(server_side.as_raw_fd(), &mut buf, MsgFlags::empty()), Ok(4));
    assert_eq!(&buf[..4], b"late");
    assert_eq!(
        recv(server_side.as_raw_fd(), &mut buf, MsgFlags::empty()),
        Err(Errno::EAGAIN),
        "drained: EAGAIN again"
    );
}

#[test]
fn sock_nonblock_and_fionbio_set_the_flag_fcntl_shows() {
    let born = tcp_socket(SockFlag::SOCK_NONBLOCK);
    assert!(is_nonblocking(&born), "SOCK_NONBLOCK at socket() is O_NONBLOCK");
    let mut buf = [0u8; 16];
    // Not even connected: a stream socket says ENOTCONN before it could say EAGAIN.
    assert_eq!(
        recv(born.as_raw_fd(), &mut buf, MsgFlags::empty()),
        Err(Errno::ENOTCONN)
    );

    let (_client, server_side) = connected_pair();
    let mut on: libc::c_int = 1;
    // SAFETY: FIONBIO reads one c_int from the pointer, which is valid for the whole call.
    let ret = unsafe { libc::ioctl(server_side.as_raw_fd(), libc::FIONBIO, &mut on) };
    assert_eq!(Errno::result(ret), Ok(0), "ioctl FIONBIO");
    assert!(is_nonblocking(&server_side), "FIONBIO sets O_NONBLOCK");
    assert_eq!(
        recv(server_side.as_raw_fd(), &mut buf, MsgFlags::empty()),
        Err(Errno::EAGAIN)
    );
}

#[test]
fn the_flag_belongs_to_the_open_socket_not_the_descriptor() {
    let (_client, server_side) = connected_pair();
    let second = nix::unistd::dup(&server_side).expect("dup");
    set_nonblocking(&second);
    assert!(
        is_nonblocking(&server_side),
        "O_NONBLOCK set through one descriptor shows through its dup"
    );
}

#[test]
fn accept4_on_an_empty_nonblocking_listener_is_eagain() {
    let (by_fcntl, _) = listening(SockFlag::empty());
    set_nonblocking(&by_fcntl);
    assert_eq!(accept_now(&by_fcntl, SockFlag::empty()).err(), Some(Errno::EAGAIN));

    let (born_nonblocking, _) = listening(SockFlag::SOCK_NONBLOCK);
    assert_eq!(
        accept_now(&born_nonblocking, SockFlag::empty()).err(),
        Some(Errno::EAGAIN)
    );
}

#[test]
fn accepted_socket_does_not_inherit_o_nonblock() {
    let (listener, addr) = listening(SockFlag::empty());
    set_nonblocking(&listener);
    assert!(is_nonblocking(&listener));

    let first = tcp_socket(SockFlag::empty());
    connect(first.as_raw_fd(), &addr).expect("connect");
    assert!(wait_for(&listener, PollFlags::POLLIN).contains(PollFlags::POLLIN));
    let accepted = accept_now(&listener, SockFlag::empty()).expect("accept4 with a connection queued");
    assert!(
        !is_nonblocking(&accepted),
        "Linux: the accepted socket is blocking although the listener is not"
    );
    assert!(is_nonblocking(&listener), "the listener keeps its flag");

    // accept4's SOCK_NONBLOCK is how to get it in the same call.
    let second = tcp_socket(SockFlag::empty());
    connect(second.as_raw_fd(), &addr).expect("connect");
    assert!(wait_for(&listener, PollFlags::POLLIN).contains(PollFlags::POLLIN));
    let asked = accept_now(&listener, SockFlag::SOCK_NONBLOCK).expect("accept4(SOCK_NONBLOCK)");
    assert!(is_nonblocking(&asked));
}

#[test]
fn nonblocking_connect_to_a_live_port_completes_with_so_error_0() {
    let (listener, addr) = listening(SockFlag::empty());
    let client = tcp_socket(SockFlag::SOCK_NONBLOCK);
    // The socket stays locked in SYN_SENT for the whole call, so even on loopback Linux answers
    // EINPROGRESS rather than 0.
    assert_eq!(connect(client.as_raw_fd(), &addr), Err(Errno::EINPROGRESS));
    let revents = wait_for(&client, PollFlags::POLLOUT);
    assert_eq!(revents, PollFlags::POLLOUT, "writable, no POLLERR, no POLLHUP");
    assert_eq!(getsockopt(&client, sockopt::SocketError), Ok(0));
    // The handshake really finished: the listener has the connection queued.
    let accepted = accept_now(&listener, SockFlag::empty()).expect("the connection is queued");
    assert_eq!(send(client.as_raw_fd(), b"hi", MsgFlags::MSG_NOSIGNAL), Ok(2));
    let mut buf = [0u8; 4];
    assert_eq!(recv(accepted.as_raw_fd(), &mut buf, MsgFlags::empty()), Ok(2));
}

#[test]
fn nonblocking_connect_to_a_closed_port_ends_in_econnrefused() {
    // Bound but never listening: the port is ours, and a SYN to it is answered with RST.
    let (_unlistened, addr) = bound(SockFlag::empty());
    let client = tcp_socket(SockFlag::SOCK_NONBLOCK);
    match connect(client.as_raw_fd(), &addr) {
        // Either the refusal is already known when connect returns...
        Err(Errno::ECONNREFUSED) => {}
        // ...or (what this kernel does on loopback) it arrives later: poll reports the socket
        // writable with POLLERR, and SO_ERROR says why.
        Err(Errno::EINPROGRESS) => {
            let revents = wait_for(&client, PollFlags::POLLOUT);
            assert!(revents.contains(PollFlags::POLLERR), "revents {revents:?} lack POLLERR");
            assert_eq!(
                getsockopt(&client, sockopt::SocketError),
                Ok(Errno::ECONNREFUSED as i32)
            );
            assert_eq!(
                getsockopt(&client, sockopt::SocketError),
                Ok(0),
                "reading SO_ERROR clears it"
            );
        }
        other => panic!("connect to a closed port gave {other:?}"),
    }
}

/// Seed 003's Python, run under strace: what setblocking(False) and settimeout() ask the kernel.
const PYTHON_PROBE: &str = r#"
import errno, socket
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(1)
client = socket.socket(); client.setblocking(False)
print("connect_ex", errno.errorcode[client.connect_ex(listener.getsockname())])
conn, _ = listener.accept(); conn.setblocking(False)
try:
    conn.recv(100)
except BlockingIOError as e:
    print("recv", type(e).__name__, errno.errorcode[e.errno])
listener.settimeout(0.05)
try:
    listener.accept()
except socket.timeout:
    print("accept timed out")
"#;

#[test]
fn python_setblocking_is_fionbio_and_settimeout_waits_in_poll() {
    util::require("strace");
    util::require("python3");
    let log_path = std::env::temp_dir().join(format!("socklab-nonblocking-py-{}.txt", std::process::id()));
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-e", "trace=ioctl,poll,connect,recvfrom", "-o"])
        .arg(&log_path)
        .args(["python3", "-c", PYTHON_PROBE]);
    let output = util::run_with_deadline(command, Duration::from_secs(30));
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python3 under strace failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "connect_ex EINPROGRESS",
        "recv BlockingIOError EAGAIN",
        "accept timed out",
    ] {
        assert!(printed.contains(line), "Python did not print {line:?}:\n{printed}");
    }
    let has = |parts: &[&str]| log.lines().any(|l| parts.iter().all(|p| l.contains(p)));
    // One each for setblocking(False) on the client and the connection, and for settimeout().
    let fionbio_on = log
        .lines()
        .filter(|l| l.contains("FIONBIO, [1])") && l.ends_with("= 0"))
        .count();
    assert!(
        fionbio_on >= 3,
        "expected 3 ioctl(fd, FIONBIO, [1]), saw {fionbio_on}:\n{log}"
    );
    assert!(has(&["connect(", "EINPROGRESS"]), "no EINPROGRESS connect in:\n{log}");
    assert!(has(&["recvfrom(", "EAGAIN"]), "no EAGAIN recvfrom in:\n{log}");
    assert!(
        has(&["poll([{fd=", "events=POLLIN}], 1, 50)", "= 0 (Timeout)"]),
        "settimeout(0.05) did not wait in poll for 50 ms:\n{log}"
    );
}

/// `lesson-08` with the trace off prints its two measurements by themselves:
/// `busy-poll: N recv calls answered EAGAIN in W ms; this thread ran on the CPU for C ms (P% of the wait)`
/// and `poll, then one recv: waited W ms; this thread ran on the CPU for C ms (P% of the wait)`.
#[test]
fn busy_polling_burns_many_times_the_cpu_of_sleeping_in_poll() {
    let mut command = Command::new(util::lesson_program(8));
    command.env("SOCKLAB_TRACE", "off");
    let output = util::run_with_deadline(command, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "lesson-08 failed: {stdout}");
    let line = |start: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{stdout}"))
            .to_string()
    };
    let spin = line("busy-poll:");
    let sleep = line("poll, then one recv:");
    let calls: u64 = number_after(&spin, "busy-poll: ");
    let spin_cpu: f64 = number_after(&spin, "on the CPU for ");
    let poll_cpu: f64 = number_after(&sleep, "on the CPU for ");
    assert!(calls > 100, "the spin asked again and again: {spin}");
    assert!(
        spin_cpu > 10.0 * poll_cpu.max(0.1),
        "the same wait: spinning used {spin_cpu} ms of CPU, sleeping in poll {poll_cpu} ms"
    );
}

fn number_after<T: std::str::FromStr>(line: &str, words: &str) -> T {
    let rest = &line[line.find(words).unwrap_or_else(|| panic!("{words:?} in {line:?}")) + words.len()..];
    let number: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    number
        .parse()
        .unwrap_or_else(|_| panic!("a number after {words:?} in {line:?}"))
}
