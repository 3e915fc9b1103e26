//! SO_REUSEADDR and TIME_WAIT (lesson 04): after the server closes a connection first, the
//! server's side of it waits in TIME_WAIT holding the port. A new socket binding that port
//! without SO_REUSEADDR gets EADDRINUSE; with SO_REUSEADDR (set on the old socket too) it binds.
//! SO_REUSEADDR never lets two sockets listen on one port. TIME_WAIT lasts a minute.
//!
//! The TCP state is read from the kernel's own table, /proc/net/tcp (state 06 is TIME_WAIT).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, accept, bind, connect, getsockname,
    listen, recv, setsockopt, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};

/// /proc/net/tcp's code for TIME_WAIT (include/net/tcp_states.h: TCP_TIME_WAIT = 6).
const TIME_WAIT: &str = "06";
/// How long the kernel may take to move a socket to the state the test waits for.
const STATE_DEADLINE: Duration = Duration::from_secs(2);
/// A recv that should return at once gets this long before the test fails instead of hanging.
const RECV_LIMIT_MS: i64 = 5000;

fn tcp_socket() -> OwnedFd {
    nix::sys::socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .expect("socket")
}

fn loopback(port: u16) -> SockaddrIn {
    SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

fn local_port(fd: &OwnedFd) -> u16 {
    getsockname::<SockaddrIn>(fd.as_raw_fd()).expect("getsockname").port()
}

/// The state (two hex digits) of the IPv4 TCP socket from 127.0.0.1:`local` to 127.0.0.1:`remote`,
/// if the kernel has one. Both ports are matched: another connection may use either port.
fn state_of(local: u16, remote: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("reading /proc/net/tcp");
    let (local, remote) = (format!("0100007F:{local:04X}"), format!("0100007F:{remote:04X}"));
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() > 3 && fields[1] == local && fields[2] == remote).then(|| fields[3].to_string())
    })
}

fn in_time_wait(local: u16, remote: u16) -> bool {
    state_of(local, remote).as_deref() == Some(TIME_WAIT)
}

/// Waits (bounded) until the server's side of the connection is in TIME_WAIT.
fn wait_for_time_wait(local: u16, remote: u16) {
    let deadline = Instant::now() + STATE_DEADLINE;
    while !in_time_wait(local, remote) {
        assert!(
            Instant::now() < deadline,
            "127.0.0.1:{local} -> 127.0.0.1:{remote} never reached TIME_WAIT; state: {:?}",
            state_of(local, remote)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A server on a kernel-chosen port accepts one client and closes that connection first; the
/// client sees end of file and closes; then the server stops. Returns (server port, client port).
fn server_closes_first_then_stops(listener_reuse: bool) -> (u16, u16) {
    let listener = tcp_socket();
    if listener_reuse {
        setsockopt(&listener, sockopt::ReuseAddr, &true).expect("SO_REUSEADDR on the first server");
    }
    bind(listener.as_raw_fd(), &loopback(0)).expect("bind port 0");
    listen(&listener, Backlog::new(1).expect("backlog")).expect("listen");
    let port = local_port(&listener);

    let client = tcp_socket();
    connect(client.as_raw_fd(), &loopback(port)).expect("connect");
    setsockopt(&client, sockopt::ReceiveTimeout, &TimeVal::milliseconds(RECV_LIMIT_MS)).expect("SO_RCVTIMEO");
    let raw = accept(listener.as_raw_fd()).expect("accept");
    // SAFETY: accept succeeded, so `raw` is a new descriptor nothing else owns.
    let conn = unsafe { OwnedFd::from_raw_fd(raw) };
    let client_port = local_port(&client);

    drop(conn); // the server's active close: its FIN goes first
    let mut buf = [0u8; 8];
    let n = recv(client.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("client recv");
    assert_eq!(n, 0, "the client should see end of file from the server's close");
    drop(client); // the client's FIN answers; the server's side moves to TIME_WAIT
    drop(listener); // the server stops, as Ctrl-C would stop it
    wait_for_time_wait(port, client_port);
    (port, client_port)
}

fn restart(port: u16, reuse: bool) -> (OwnedFd, nix::Result<()>) {
    let sock = tcp_socket();
    if reuse {
        setsockopt(&sock, sockopt::ReuseAddr, &true).expect("SO_REUSEADDR on the restart");
    }
    let result = bind(sock.as_raw_fd(), &loopback(port));
    (sock, result)
}

/// The time left on the TIME_WAIT timer of the socket from `local` to `remote`, in seconds:
/// /proc/net/tcp's `tr:tm->when` column is `03:` (the TIME_WAIT timer) and clock ticks left.
fn time_wait_left(local: u16, remote: u16) -> Option<f64> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("reading /proc/net/tcp");
    let (local, remote) = (format!("0100007F:{local:04X}"), format!("0100007F:{remote:04X}"));
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() > 5 && fields[1] == local && fields[2] == remote && fields[3] == TIME_WAIT {
            let (timer, ticks) = fields[5].split_once(':')?;
            let ticks = u64::from_str_radix(ticks, 16).ok()?;
            (timer == "03").then(|| ticks as f64 / ticks_per_second)
        } else {
            None
        }
    })
}

/// TIME_WAIT lasts a minute on Linux (TCP_TIMEWAIT_LEN, 60 s): the kernel's own timer says so.
#[test]
fn time_wait_lasts_a_minute() {
    let (server_port, client_port) = server_closes_first_then_stops(true);
    let left = time_wait_left(server_port, client_port).expect("a TIME_WAIT timer");
    // Read moments after the connection entered TIME_WAIT; a loaded machine may take seconds.
    assert!((50.0..=60.0).contains(&left), "{left} s left");
}

#[test]
fn only_the_side_that_closed_first_is_in_time_wait() {
    let (server_port, client_port) = server_closes_first_then_stops(true);
    assert!(in_time_wait(server_port, client_port));
    assert!(
        !in_time_wait(client_port, server_port),
        "the client closed second; its side should not be in TIME_WAIT: {:?}",
        state_of(client_port, server_port)
    );
}

#[test]
fn restart_without_reuseaddr_gets_eaddrinuse_while_time_wait_holds_the_port() {
    let (port, client_port) = server_closes_first_then_stops(true);
    let (_sock, result) = restart(port, false);
    assert_eq!(result, Err(Errno::EADDRINUSE));
    assert!(
        in_time_wait(port, client_port),
        "the refusal happened while the port was held by TIME_WAIT"
    );
}

#[test]
fn restart_with_reuseaddr_binds_and_listens_beside_the_time_wait() {
    let (port, client_port) = server_closes_first_then_stops(true);
    let (sock, result) = restart(port, true);
    assert_eq!(result, Ok(()));
    listen(&sock, Backlog::new(5).expect("backlog")).expect("listen after the restart");
    assert_eq!(local_port(&sock), port);
    assert!(
        in_time_wait(port, client_port),
        "the TIME_WAIT connection is still there; the new listener shares the port with it"
    );
}

#[test]
fn reuseaddr_on_the_restart_alone_is_not_enough() {
    // The TIME_WAIT socket keeps the flag of the socket it came from (accept copies the
    // listener's), so the old server must have set SO_REUSEADDR too.
    let (port, _) = server_closes_first_then_stops(false);
    let (_sock, result) = restart(port, true);
    assert_eq!(result, Err(Errno::EADDRINUSE));
}

#[test]
fn reuseaddr_never_shares_a_port_with_a_listening_socket() {
    let first = tcp_socket();
    setsockopt(&first, sockopt::ReuseAddr, &true).expect("SO_REUSEADDR");
    bind(first.as_raw_fd(), &loopback(0)).expect("bind");
    listen(&first, Backlog::new(1).expect("backlog")).expect("listen");
    let port = local_port(&first);
    let (_second, result) = restart(port, true);
    assert_eq!(result, Err(Errno::EADDRINUSE));
}
