//! Lesson 02's claims about UDP, checked against the kernel: datagrams keep their boundaries; a
//! buffer smaller than a datagram cuts it and the rest is lost; `connect` sends nothing, and
//! lets in only the peer; a datagram to a port nobody holds is lost silently, unless the socket
//! is connected, when the ICMP "port unreachable" comes back as ECONNREFUSED; an empty datagram
//! is not end of file;
//! the largest IPv4 datagram is 65507 bytes; and the lesson's server mode echoes for real peers
//! (Python's socket module, socat, nc -u).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use crate::util;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, SockaddrIn, bind, connect, getsockname, getsockopt, recv, recvfrom,
    send, sendto, setsockopt, socket, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};

/// A bound on every blocking receive, so a lost datagram fails a test instead of hanging it.
const RECEIVE_LIMIT_MS: i64 = 2000;

fn udp_socket() -> OwnedFd {
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    setsockopt(&sock, sockopt::ReceiveTimeout, &TimeVal::milliseconds(RECEIVE_LIMIT_MS)).expect("SO_RCVTIMEO");
    sock
}

/// A UDP socket bound to 127.0.0.1 on a port the kernel picked, and that address.
fn bound_socket() -> (OwnedFd, SockaddrIn) {
    let sock = udp_socket();
    bind_to(&sock, 0);
    let addr = getsockname::<SockaddrIn>(raw(&sock)).expect("getsockname");
    (sock, addr)
}

fn bind_to(sock: &OwnedFd, port: u16) {
    bind(
        raw(sock),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
    )
    .expect("bind");
}

fn raw(sock: &OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    sock.as_raw_fd()
}

/// A UDP port on 127.0.0.1 that nobody holds: the kernel picked it for a socket we then closed.
fn closed_port() -> SockaddrIn {
    let (sock, addr) = bound_socket();
    drop(sock);
    addr
}

fn receive(sock: &OwnedFd, size: usize) -> Vec<u8> {
    let mut buf = vec![0u8; size];
    let n = recv(raw(sock), &mut buf, MsgFlags::empty()).expect("recv");
    buf.truncate(n);
    buf
}

fn nothing_waiting(sock: &OwnedFd) -> bool {
    let mut buf = [0u8; 64];
    recv(raw(sock), &mut buf, MsgFlags::MSG_DONTWAIT) == Err(Errno::EAGAIN)
}

#[test]
fn two_sends_arrive_as_two_datagrams() {
    let (receiver, addr) = bound_socket();
    let sender = udp_socket();
    sendto(raw(&sender), b"short\n", &addr, MsgFlags::empty()).expect("sendto");
    sendto(raw(&sender), b"a longer second datagram\n", &addr, MsgFlags::empty()).expect("sendto");
    // A buffer big enough for both: each recv still returns exactly one datagram.
    assert_eq!(receive(&receiver, 100), b"short\n");
    assert_eq!(receive(&receiver, 100), b"a longer second datagram\n");
    assert!(nothing_waiting(&receiver));
}

#[test]
fn a_datagram_longer_than_the_buffer_is_cut_and_the_rest_is_lost() {
    let (receiver, addr) = bound_socket();
    let sender = udp_socket();
    let long: Vec<u8> = (0..150u8).collect();
    assert_eq!(sendto(raw(&sender), &long, &addr, MsgFlags::empty()), Ok(150));
    sendto(raw(&sender), b"after\n", &addr, MsgFlags::empty()).expect("sendto");
    assert_eq!(receive(&receiver, 100), &long[..100], "the first 100 bytes, cut there");
    assert_eq!(
        receive(&receiver, 100),
        b"after\n",
        "the next datagram: bytes 100..150 are gone"
    );

    // MSG_TRUNC makes recv return the datagram's real length, though it still copies only 100.
    sendto(raw(&sender), &long, &addr, MsgFlags::empty()).expect("sendto");
    let mut buf = [0u8; 100];
    assert_eq!(recv(raw(&receiver), &mut buf, MsgFlags::MSG_TRUNC), Ok(150));
    assert_eq!(&buf[..], &long[..100]);
}

/// How long to watch for a datagram (or an ICMP answer) that must not come: on loopback either
/// arrives within microseconds of the call that caused it.
const QUIET_MS: u16 = 100;

/// `connect` on UDP sends nothing: a socket bound at the address receives nothing, and connected
/// to a port nobody holds, no ICMP "port unreachable" comes back (it would wait as the socket's
/// error, ECONNREFUSED). It only records the peer, and binds our end: a port is picked now.
#[test]
fn connect_on_udp_sends_nothing_and_picks_our_port() {
    let (receiver, addr) = bound_socket();
    let sock = udp_socket();
    assert_eq!(connect(raw(&sock), &addr), Ok(()));
    let mut fds = [PollFd::new(receiver.as_fd(), PollFlags::POLLIN)];
    assert_eq!(poll(&mut fds, PollTimeout::from(QUIET_MS)), Ok(0), "nothing arrived");
    let ours = getsockname::<SockaddrIn>(raw(&sock)).expect("getsockname");
    assert_ne!(ours.port(), 0, "connect picked our port (an implicit bind)");

    let lonely = udp_socket();
    assert_eq!(connect(raw(&lonely), &closed_port()), Ok(()));
    let mut fds = [PollFd::new(lonely.as_fd(), PollFlags::empty())];
    assert_eq!(
        poll(&mut fds, PollTimeout::from(QUIET_MS)),
        Ok(0),
        "no ICMP came back: no packet left"
    );
    assert_eq!(getsockopt(&lonely, sockopt::SocketError), Ok(0));
}

#[test]
fn a_connected_socket_to_a_closed_port_gets_econnrefused() {
    let nobody = closed_port();
    let sock = udp_socket();
    // connect sends nothing, so it succeeds with nobody there; so does the send.
    assert_eq!(connect(raw(&sock), &nobody), Ok(()));
    assert_eq!(send(raw(&sock), b"hello?\n", MsgFlags::empty()), Ok(7));
    let mut buf = [0u8; 100];
    assert_eq!(
        recv(raw(&sock), &mut buf, MsgFlags::empty()),
        Err(Errno::ECONNREFUSED),
        "the ICMP port unreachable, reported on the next call"
    );
    // Reported once: the error is cleared by that call.
    assert_eq!(getsockopt(&sock, sockopt::SocketError), Ok(0));

    // Whichever call comes next reports it: here a second send, once poll says an error waits.
    assert_eq!(send(raw(&sock), b"again?\n", MsgFlags::empty()), Ok(7));
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::empty())];
    assert_eq!(
        poll(&mut fds, PollTimeout::from(2000u16)),
        Ok(1),
        "POLLERR is always reported"
    );
    assert_eq!(fds[0].revents(), Some(PollFlags::POLLERR));
    assert_eq!(
        send(raw(&sock), b"and again?\n", MsgFlags::empty()),
        Err(Errno::ECONNREFUSED),
        "the error from the second datagram's ICMP, reported by the send after it"
    );
}

#[test]
fn an_unconnected_socket_is_not_told_about_a_closed_port() {
    let nobody = closed_port();
    let unconnected = udp_socket();
    assert_eq!(
        sendto(raw(&unconnected), b"anyone there?\n", &nobody, MsgFlags::empty()),
        Ok(14)
    );
    // The same datagram from a connected socket, after it: once that one's ICMP has come back
    // as ECONNREFUSED, the ICMP for the first datagram has long been handled.
    let connected = udp_socket();
    connect(raw(&connected), &nobody).expect("connect");
    send(raw(&connected), b"anyone there?\n", MsgFlags::empty()).expect("send");
    let mut buf = [0u8; 100];
    assert_eq!(
        recv(raw(&connected), &mut buf, MsgFlags::empty()),
        Err(Errno::ECONNREFUSED)
    );
    assert!(nothing_waiting(&unconnected), "no reply and no error");
    assert_eq!(
        getsockopt(&unconnected, sockopt::SocketError),
        Ok(0),
        "no pending error"
    );
}

#[test]
fn a_connected_socket_only_hears_its_peer() {
    let (peer, peer_addr) = bound_socket();
    let stranger = udp_socket();

    let (connected, connected_addr) = bound_socket();
    connect(raw(&connected), &peer_addr).expect("connect");
    sendto(raw(&stranger), b"stranger\n", &connected_addr, MsgFlags::empty()).expect("sendto");
    sendto(raw(&peer), b"peer\n", &connected_addr, MsgFlags::empty()).expect("sendto");
    assert_eq!(receive(&connected, 100), b"peer\n");
    assert!(nothing_waiting(&connected), "the stranger's datagram was dropped");

    // The same two datagrams to an unconnected socket: both arrive, the stranger's first.
    let (open, open_addr) = bound_socket();
    sendto(raw(&stranger), b"stranger\n", &open_addr, MsgFlags::empty()).expect("sendto");
    sendto(raw(&peer), b"peer\n", &open_addr, MsgFlags::empty()).expect("sendto");
    assert_eq!(receive(&open, 100), b"stranger\n");
    assert_eq!(receive(&open, 100), b"peer\n");
}

#[test]
fn a_datagram_sent_before_the_server_binds_is_lost() {
    let port = closed_port();
    let client = udp_socket();
    assert_eq!(sendto(raw(&client), b"early\n", &port, MsgFlags::empty()), Ok(6));
    let server = udp_socket();
    bind_to(&server, port.port());
    sendto(raw(&client), b"late\n", &port, MsgFlags::empty()).expect("sendto");
    let (n, from) = {
        let mut buf = [0u8; 100];
        let (n, from) = recvfrom::<SockaddrIn>(raw(&server), &mut buf).expect("recvfrom");
        (buf[..n].to_vec(), from)
    };
    assert_eq!(n, b"late\n", "the early datagram found nobody and was dropped");
    assert!(nothing_waiting(&server));
    // The implicit bind on the first sendto gave the client a port (on 0.0.0.0, any address).
    let client_port = getsockname::<SockaddrIn>(raw(&client)).expect("getsockname").port();
    assert_eq!(from.map(|a| a.port()), Some(client_port), "recvfrom names the sender");
}

#[test]
fn an_empty_datagram_is_not_end_of_file() {
    let (receiver, addr) = bound_socket();
    let sender = udp_socket();
    assert_eq!(sendto(raw(&sender), b"", &addr, MsgFlags::empty()), Ok(0));
    sendto(raw(&sender), b"still here\n", &addr, MsgFlags::empty()).expect("sendto");
    assert_eq!(receive(&receiver, 100), b"", "recv returns 0 for an empty datagram");
    assert_eq!(
        receive(&receiver, 100),
        b"still here\n",
        "and the socket goes on working"
    );
}

fn peer_output(script: &str) -> String {
    let mut command = Command::new("sh");
    command.args(["-c", script]);
    let output = util::run_with_deadline(command, Duration::from_secs(10));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn server_mode_echoes_python_socat_and_nc() {
    util::require("python3");
    util::require("socat");
    util::require("nc");
    let port = closed_port().port();
    let mut server = util::start_lesson_server(2, port, "waiting for datagrams");
    let python = peer_output(&format!(
        "python3 -c \"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5); \
         s.sendto(b'Hello World\\n', ('127.0.0.1', {port})); print(s.recvfrom(100)[0])\""
    ));
    let socat = peer_output(&format!("printf 'via socat\\n' | socat -t 1 - UDP:127.0.0.1:{port}"));
    // -w 1: after stdin ends, wait a second for the echo (OpenBSD nc).
    let nc = peer_output(&format!("printf 'via nc\\n' | nc -u -w 1 127.0.0.1 {port}"));
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(python, "b'Hello World\\n'\n");
    assert_eq!(socat, "via socat\n");
    assert_eq!(nc, "via nc\n");
}

#[test]
fn the_largest_ipv4_datagram_is_65507_bytes() {
    let (receiver, addr) = bound_socket();
    let sender = udp_socket();
    // 65535 (the IPv4 length field) - 20 (IP header) - 8 (UDP header).
    let largest = vec![7u8; 65507];
    assert_eq!(sendto(raw(&sender), &largest, &addr, MsgFlags::empty()), Ok(65507));
    assert_eq!(
        sendto(raw(&sender), &[7u8; 65508], &addr, MsgFlags::empty()),
        Err(Errno::EMSGSIZE)
    );
    assert_eq!(receive(&receiver, 70000).len(), 65507);
}
