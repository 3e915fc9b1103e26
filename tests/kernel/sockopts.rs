//! Socket options (lesson 04) do what the lesson says, as the kernel reports it:
//! SO_RCVBUF and SO_SNDBUF read back doubled (capped by net.core.rmem_max/wmem_max);
//! SO_KEEPALIVE arms the kernel's keepalive timer for TCP_KEEPIDLE seconds;
//! SO_RCVTIMEO makes a recv with nothing to read fail with EAGAIN, and the connection still
//! works afterwards; SO_LINGER {on, 0} makes close send RST, so the peer's recv fails with
//! ECONNRESET and neither side is left in TIME_WAIT; a plain close gives the peer end of file.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, accept, bind, connect, getsockname,
    getsockopt, listen, recv, send, setsockopt, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};

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

/// A connected pair on loopback: (client, server side). The listener is closed before returning.
/// `configure` runs on the client before connect, as the lesson sets options.
fn connected_pair(configure: impl FnOnce(&OwnedFd)) -> (OwnedFd, OwnedFd) {
    let listener = tcp_socket();
    bind(listener.as_raw_fd(), &loopback(0)).expect("bind port 0");
    listen(&listener, Backlog::new(1).expect("backlog")).expect("listen");
    let client = tcp_socket();
    configure(&client);
    connect(client.as_raw_fd(), &loopback(local_port(&listener))).expect("connect");
    let raw = accept(listener.as_raw_fd()).expect("accept");
    // SAFETY: accept succeeded, so `raw` is a new descriptor nothing else owns.
    let server_side = unsafe { OwnedFd::from_raw_fd(raw) };
    setsockopt(
        &server_side,
        sockopt::ReceiveTimeout,
        &TimeVal::milliseconds(RECV_LIMIT_MS),
    )
    .expect("SO_RCVTIMEO");
    (client, server_side)
}

fn sysctl(name: &str) -> usize {
    let path = format!("/proc/sys/net/core/{name}");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path} is not a number: {e}"))
}

/// Whether the kernel lists a TIME_WAIT socket from 127.0.0.1:`local` to 127.0.0.1:`remote`.
fn in_time_wait(local: u16, remote: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("reading /proc/net/tcp");
    let (local, remote) = (format!("0100007F:{local:04X}"), format!("0100007F:{remote:04X}"));
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 3 && fields[1] == local && fields[2] == remote && fields[3] == "06"
    })
}

#[test]
fn buffer_sizes_read_back_doubled() {
    let (rmem_max, wmem_max) = (sysctl("rmem_max"), sysctl("wmem_max"));
    for asked in [16 * 1024, 32 * 1024, 64 * 1024] {
        let sock = tcp_socket();
        setsockopt(&sock, sockopt::RcvBuf, &asked).expect("SO_RCVBUF");
        setsockopt(&sock, sockopt::SndBuf, &asked).expect("SO_SNDBUF");
        // socket(7): "the kernel doubles this value"; it first caps the request at the maximum.
        assert_eq!(getsockopt(&sock, sockopt::RcvBuf), Ok(2 * asked.min(rmem_max)));
        assert_eq!(getsockopt(&sock, sockopt::SndBuf), Ok(2 * asked.min(wmem_max)));
    }
}

#[test]
fn buffer_sizes_above_the_maximum_are_capped_silently() {
    let rmem_max = sysctl("rmem_max");
    let asked = rmem_max.saturating_mul(4);
    if asked > i32::MAX as usize {
        return; // the request would not fit in setsockopt's int; nothing to show
    }
    let sock = tcp_socket();
    assert_eq!(
        setsockopt(&sock, sockopt::RcvBuf, &asked),
        Ok(()),
        "no error for too much"
    );
    assert_eq!(getsockopt(&sock, sockopt::RcvBuf), Ok(2 * rmem_max));
}

#[test]
fn new_sockets_have_reuseaddr_off() {
    let sock = tcp_socket();
    assert_eq!(getsockopt(&sock, sockopt::ReuseAddr), Ok(false));
}

#[test]
fn keepalive_and_nodelay_settings_are_held() {
    let sock = tcp_socket();
    setsockopt(&sock, sockopt::KeepAlive, &true).expect("SO_KEEPALIVE");
    setsockopt(&sock, sockopt::TcpKeepIdle, &10).expect("TCP_KEEPIDLE");
    setsockopt(&sock, sockopt::TcpKeepInterval, &5).expect("TCP_KEEPINTVL");
    setsockopt(&sock, sockopt::TcpKeepCount, &3).expect("TCP_KEEPCNT");
    setsockopt(&sock, sockopt::TcpNoDelay, &true).expect("TCP_NODELAY");
    assert_eq!(getsockopt(&sock, sockopt::KeepAlive), Ok(true));
    assert_eq!(getsockopt(&sock, sockopt::TcpKeepIdle), Ok(10));
    assert_eq!(getsockopt(&sock, sockopt::TcpKeepInterval), Ok(5));
    assert_eq!(getsockopt(&sock, sockopt::TcpKeepCount), Ok(3));
    assert_eq!(getsockopt(&sock, sockopt::TcpNoDelay), Ok(true));
}

/// The timer /proc/net/tcp shows for the socket from 127.0.0.1:`local` to 127.0.0.1:`remote`:
/// its `tr` code (2 is the keepalive timer, 0 none) and the seconds left.
fn timer_of(local: u16, remote: u16) -> (String, f64) {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("reading /proc/net/tcp");
    let (local, remote) = (format!("0100007F:{local:04X}"), format!("0100007F:{remote:04X}"));
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    table
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 5 && fields[1] == local && fields[2] == remote {
                let (code, ticks) = fields[5].split_once(':')?;
                let ticks = u64::from_str_radix(ticks, 16).ok()?;
                Some((code.to_string(), ticks as f64 / ticks_per_second))
            } else {
                None
            }
        })
        .expect("the connection in /proc/net/tcp")
}

/// SO_KEEPALIVE with TCP_KEEPIDLE 10 arms the kernel's keepalive timer on a silent connection:
/// /proc/net/tcp shows it (timer 2) with at most 10 seconds to go. Without SO_KEEPALIVE no
/// timer runs on it: a peer that vanished would go unnoticed while we only wait for data.
#[test]
fn keepalive_arms_a_timer_for_the_idle_time() {
    let (client, server_side) = connected_pair(|sock| {
        setsockopt(sock, sockopt::KeepAlive, &true).expect("SO_KEEPALIVE");
        setsockopt(sock, sockopt::TcpKeepIdle, &10).expect("TCP_KEEPIDLE");
    });
    let (code, left) = timer_of(local_port(&client), local_port(&server_side));
    assert_eq!(code, "02", "the keepalive timer");
    assert!(left > 0.0 && left <= 10.0, "{left} s to the first probe");
    assert_eq!(
        timer_of(local_port(&server_side), local_port(&client)).0,
        "00",
        "no timer on the other end, which did not ask for keepalive"
    );
}

#[test]
fn rcvtimeo_makes_recv_give_up_with_eagain_and_the_connection_survives() {
    let (client, server_side) = connected_pair(|sock| {
        setsockopt(sock, sockopt::ReceiveTimeout, &TimeVal::milliseconds(50)).expect("SO_RCVTIMEO");
    });
    let mut buf = [0u8; 16];
    // Nothing was sent: a blocking recv would wait for ever; this one returns.
    assert_eq!(
        recv(client.as_raw_fd(), &mut buf, MsgFlags::empty()),
        Err(Errno::EAGAIN)
    );
    // Only the wait ended: data sent afterwards arrives on the same connection.
    assert_eq!(send(server_side.as_raw_fd(), b"late", MsgFlags::MSG_NOSIGNAL), Ok(4));
    let n = recv(client.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("recv after the timeout");
    assert_eq!(&buf[..n], b"late");
}

#[test]
fn linger_zero_makes_the_peer_see_econnreset_and_leaves_no_time_wait() {
    let (client, server_side) = connected_pair(|_| {});
    let (client_port, server_port) = (local_port(&client), local_port(&server_side));
    let abort = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&client, sockopt::Linger, &abort).expect("SO_LINGER");
    drop(client); // close: RST instead of FIN
    let mut buf = [0u8; 16];
    assert_eq!(
        recv(server_side.as_raw_fd(), &mut buf, MsgFlags::empty()),
        Err(Errno::ECONNRESET)
    );
    assert!(
        !in_time_wait(client_port, server_port),
        "the aborting side is not in TIME_WAIT"
    );
    assert!(
        !in_time_wait(server_port, client_port),
        "the reset side is not in TIME_WAIT"
    );
}

#[test]
fn a_plain_close_gives_the_peer_end_of_file_instead() {
    let (client, server_side) = connected_pair(|_| {});
    drop(client); // close: FIN
    let mut buf = [0u8; 16];
    assert_eq!(recv(server_side.as_raw_fd(), &mut buf, MsgFlags::empty()), Ok(0));
}

#[test]
fn rusts_own_tcp_listener_turns_reuseaddr_on() {
    // std's TcpListener::bind (like Python's socket.create_server) sets SO_REUSEADDR on Unix.
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("TcpListener::bind");
    assert_eq!(getsockopt(&listener, sockopt::ReuseAddr), Ok(true));
}
