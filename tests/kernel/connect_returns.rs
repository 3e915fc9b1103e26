//! When connect returns (the trace's connect note, lessons 01, 03 and 07): when the server's
//! SYN-ACK arrives. The client's final ACK is what completes the server's side and puts the
//! connection in the accept queue, so with a listener that never accepts, connect still returns
//! 0 and ss shows both ends ESTABLISHED, the server's waiting in the queue.
//!
//! That the SYN-ACK is enough, and the server's side need not be complete, shows with
//! TCP_DEFER_ACCEPT: such a listener ignores a final ACK that carries no data. connect returns 0
//! all the same, the client is ESTABLISHED, and the server's end is still SYN-RECV with nothing
//! in the accept queue; the client's first bytes complete it.
//!
//! Cost: a few milliseconds.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::util::tcp;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// A bound on every wait: each of these takes microseconds on loopback (a hang guard).
const PATIENCE: Duration = Duration::from_secs(5);
/// TCP_DEFER_ACCEPT's value, in seconds: how long the listener may ignore a bare final ACK.
const DEFER_SECONDS: libc::c_int = 5;

fn listener(defer_accept: bool) -> (Socket, u16) {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    if defer_accept {
        let seconds: libc::c_int = DEFER_SECONDS;
        // SAFETY: setsockopt reads one c_int from a valid pointer, on a socket we own.
        let ret = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&raw const seconds).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(ret, 0, "TCP_DEFER_ACCEPT: {}", std::io::Error::last_os_error());
    }
    sock.bind(&SockAddr::from(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .expect("bind");
    sock.listen(8).expect("listen");
    let port = sock
        .local_addr()
        .expect("getsockname")
        .as_socket()
        .expect("an IP address")
        .port();
    (sock, port)
}

/// A blocking connect, as a user's client makes it. The listener exists, so the SYN-ACK comes
/// back at once: connect returns 0 or fails, it does not hang.
fn connect(port: u16) -> TcpStream {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect returns 0")
}

#[test]
fn with_nobody_accepting_connect_returns_0_and_both_ends_are_established() {
    let (listener, port) = listener(false);
    let client = connect(port);
    let client_port = client.local_addr().expect("getsockname").port();

    assert_eq!(tcp::state(&client), tcp::ESTABLISHED);
    assert!(
        tcp::wait_until(PATIENCE, || tcp::info(&listener).tcpi_unacked == 1),
        "the connection never reached the accept queue"
    );
    let server_end = tcp::row(port, client_port).map(|r| r.state);
    assert_eq!(server_end.as_deref(), Some("ESTAB"), "ss: the server's end, unaccepted");
    let client_end = tcp::row(client_port, port).map(|r| r.state);
    assert_eq!(client_end.as_deref(), Some("ESTAB"), "ss: the client's end");
    assert_eq!(
        tcp::listen_row(port).recv_q,
        1,
        "ss -lnt: one connection waits for accept"
    );
}

#[test]
fn connect_returns_on_the_syn_ack_before_the_servers_side_is_complete() {
    let (listener, port) = listener(true);
    let mut client = connect(port);
    let client_port = client.local_addr().expect("getsockname").port();

    // connect returned 0: the SYN-ACK arrived. The final ACK went out and the listener ignored it.
    assert_eq!(tcp::state(&client), tcp::ESTABLISHED);
    let server_end = tcp::row(port, client_port).map(|r| r.state);
    assert_eq!(
        server_end.as_deref(),
        Some("SYN-RECV"),
        "ss: the server's end is still half-open"
    );
    assert_eq!(tcp::info(&listener).tcpi_unacked, 0, "nothing in the accept queue");
    listener.set_nonblocking(true).expect("O_NONBLOCK");
    let nothing = listener.accept().map(drop).expect_err("nothing to accept");
    assert_eq!(nothing.kind(), ErrorKind::WouldBlock);

    // The client's first bytes carry the ACK the listener was waiting for.
    client.write_all(b"hi").expect("send");
    assert!(
        tcp::wait_until(PATIENCE, || tcp::info(&listener).tcpi_unacked == 1),
        "the data never completed the connection"
    );
    let (server, peer) = listener.accept().expect("accept");
    assert_eq!(peer.as_socket().map(|a| a.port()), Some(client_port));
    let mut server = TcpStream::from(server);
    server.set_read_timeout(Some(PATIENCE)).expect("SO_RCVTIMEO");
    let mut buf = [0u8; 2];
    server.read_exact(&mut buf).expect("the bytes that completed it");
    assert_eq!(&buf, b"hi");
}
