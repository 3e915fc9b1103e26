//! Linux's accept after a reset (lesson 11's pitfall): a client that connects and then resets
//! (SO_LINGER {1, 0} and close) while its connection still waits in the accept queue. UNP 16.6
//! describes Berkeley kernels, which take such a connection off the queue, so that a blocking
//! accept after select can block. Linux leaves it there: the listener stays readable, accept
//! returns it (blocking or not) with the client's address, and the first recv on it fails with
//! ECONNRESET; after that recv reads end of file, and getpeername says ENOTCONN.
//!
//! Cost: a few milliseconds.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use crate::util::tcp;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MsgFlags, SockaddrIn, getpeername, recv, setsockopt, sockopt};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// A bound on every wait: all of this takes microseconds on loopback (a hang guard).
const PATIENCE: Duration = Duration::from_secs(5);

/// A listener on 127.0.0.1, blocking or not, with a client connected and then reset while its
/// connection waited in the accept queue. Returns the listener and the client's port.
fn listener_with_a_reset_connection_queued(nonblocking: bool) -> (Socket, u16) {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    listener
        .bind(&SockAddr::from(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .expect("bind");
    listener.listen(8).expect("listen");
    listener.set_nonblocking(nonblocking).expect("O_NONBLOCK");
    // A blocking accept that found nothing would wait forever: SO_RCVTIMEO bounds it (Linux's
    // accept honours it), so a kernel that dropped the connection fails the test instead.
    listener.set_read_timeout(Some(PATIENCE)).expect("SO_RCVTIMEO");
    let port = listener
        .local_addr()
        .expect("getsockname")
        .as_socket()
        .expect("an IP address")
        .port();

    let client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    let client_port = client.local_addr().expect("getsockname").port();
    assert!(
        tcp::wait_until(PATIENCE, || tcp::info(&listener).tcpi_unacked == 1),
        "the connection never reached the accept queue"
    );
    assert!(readable(&listener), "select/poll says: a connection waits");

    let client = OwnedFd::from(client);
    let abort = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&client, sockopt::Linger, &abort).expect("SO_LINGER {1, 0}");
    drop(client);
    // The RST moves the queued connection to CLOSED, which takes it out of the kernel's
    // table of connections: ss no longer shows the server's end.
    assert!(
        tcp::wait_until(PATIENCE, || tcp::row(port, client_port).is_none()),
        "the server's end never saw the reset: {:?}",
        tcp::row(port, client_port)
    );
    (listener, client_port)
}

fn readable(sock: &Socket) -> bool {
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).expect("poll") == 1
}

fn recv_once(fd: &impl AsRawFd) -> nix::Result<usize> {
    let mut buf = [0u8; 16];
    recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())
}

fn accept_returns_the_reset_connection(nonblocking: bool) {
    let (listener, client_port) = listener_with_a_reset_connection_queued(nonblocking);

    assert_eq!(
        tcp::info(&listener).tcpi_unacked,
        1,
        "the reset connection is still in the accept queue"
    );
    assert!(readable(&listener), "the listener is still readable after the reset");

    let (conn, peer) = listener.accept().expect("accept returns the reset connection");
    assert_eq!(
        peer.as_socket().map(|a| a.port()),
        Some(client_port),
        "accept gives the client's address"
    );
    assert_eq!(tcp::state(&conn), tcp::CLOSE, "the accepted socket is already CLOSED");
    assert_eq!(tcp::info(&listener).tcpi_unacked, 0);

    assert_eq!(
        recv_once(&conn),
        Err(Errno::ECONNRESET),
        "the first recv reports the reset"
    );
    assert_eq!(recv_once(&conn), Ok(0), "after that: end of file");
    assert_eq!(getpeername::<SockaddrIn>(conn.as_raw_fd()).err(), Some(Errno::ENOTCONN));
}

#[test]
fn a_blocking_accept_returns_a_connection_reset_in_the_queue() {
    accept_returns_the_reset_connection(false);
}

#[test]
fn a_nonblocking_accept_returns_it_too_not_eagain() {
    accept_returns_the_reset_connection(true);
}
