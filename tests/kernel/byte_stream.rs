//! Claims of lesson 05: TCP carries bytes, not messages. Several sends coalesce into one recv
//! when the reader waits; one send can take several recvs of a small buffer; a socket that
//! called shutdown(SHUT_WR) can no longer send (EPIPE) but still receives; recv returns 0 once
//! the peer's FIN has arrived, and keeps returning 0. And what the lesson says of the chat
//! room's compromise with seed 003's client, which sends lines without newlines: its quiet rule.
//!
//! "The reader waits" is real synchronisation, not a sleep: the reader polls for POLLRDHUP,
//! which the kernel reports only once the peer's FIN has been taken in, and TCP takes segments
//! in order, so every byte sent before the FIN is queued by then.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

use nix::sys::socket::{AddressFamily, MsgFlags, Shutdown, SockFlag, SockProtocol, SockType, sockopt};
use nix::sys::time::TimeVal;
use socklab::chat::{QUIET, Room, Service};
use socklab::sys::{self, Errno};
use socklab::trace::{self, Mode};

/// A blocking call that waits longer than this fails with EAGAIN instead of hanging the test.
const RECV_TIMEOUT_SECS: i64 = 5;
/// How long `wait_for_fin` waits before failing.
const FIN_TIMEOUT_MS: i32 = 5000;

/// A connected TCP pair on loopback: (client, server's accepted socket).
fn connected_pair() -> (OwnedFd, OwnedFd) {
    trace::set_mode(Mode::Off);
    let listener = tcp_socket();
    let any_port: SocketAddr = "127.0.0.1:0".parse().expect("a literal address");
    sys::bind(&listener, any_port).expect("bind");
    sys::listen(&listener, 1).expect("listen");
    let bound = sys::getsockname(&listener).expect("getsockname");
    let port = bound.as_sockaddr_in().expect("an IPv4 address").port();
    let client = tcp_socket();
    sys::connect(&client, SocketAddr::from(([127, 0, 0, 1], port))).expect("connect");
    let (server, _) = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC).expect("accept4");
    for fd in [&client, &server] {
        let timeout = TimeVal::new(RECV_TIMEOUT_SECS, 0);
        sys::setsockopt(fd, sockopt::ReceiveTimeout, &timeout).expect("SO_RCVTIMEO");
    }
    sys::close(listener).expect("close");
    (client, server)
}

fn tcp_socket() -> OwnedFd {
    sys::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .expect("socket")
}

/// Waits until the peer's FIN has arrived on `fd` (poll for POLLRDHUP; nix's PollFlags lacks it).
fn wait_for_fin(fd: &OwnedFd) {
    let mut entry = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `entry` is one valid pollfd and we pass a count of 1; `fd` stays open meanwhile.
    let ready = unsafe { libc::poll(&mut entry, 1, FIN_TIMEOUT_MS) };
    assert_eq!(ready, 1, "the peer's FIN did not arrive within {FIN_TIMEOUT_MS} ms");
    assert_ne!(
        entry.revents & libc::POLLRDHUP,
        0,
        "revents {:#x} lack POLLRDHUP",
        entry.revents
    );
}

fn send_whole(fd: &OwnedFd, bytes: &[u8]) {
    let sent = sys::send(fd, bytes, MsgFlags::MSG_NOSIGNAL).expect("send");
    assert_eq!(sent, bytes.len(), "a small blocking send takes everything");
}

#[test]
fn several_sends_coalesce_into_one_recv_when_the_reader_waits() {
    let (client, server) = connected_pair();
    for message in [&b"one\n"[..], b"two\n", b"three\n"] {
        send_whole(&client, message);
    }
    sys::shutdown(&client, Shutdown::Write).expect("shutdown");
    wait_for_fin(&server);

    let mut buf = [0u8; 1024];
    let n = sys::recv(&server, &mut buf, MsgFlags::empty()).expect("recv");
    assert_eq!(&buf[..n], b"one\ntwo\nthree\n", "three sends, one recv");
    assert_eq!(
        sys::recv(&server, &mut buf, MsgFlags::empty()),
        Ok(0),
        "then end of file"
    );
}

#[test]
fn one_send_takes_several_recvs_of_a_small_buffer() {
    let (client, server) = connected_pair();
    let message = b"first line\nsecond line\nbyebye\n";
    send_whole(&client, message);
    sys::shutdown(&client, Shutdown::Write).expect("shutdown");
    wait_for_fin(&server);

    let mut buf = [0u8; 16];
    let first = sys::recv(&server, &mut buf, MsgFlags::empty()).expect("recv");
    assert_eq!(
        &buf[..first],
        b"first line\nsecon",
        "the buffer's 16 bytes, cutting a line"
    );
    let second = sys::recv(&server, &mut buf, MsgFlags::empty()).expect("recv");
    assert_eq!(&buf[..second], b"d line\nbyebye\n", "the rest waited in the kernel");
    assert_eq!(first + second, message.len());
    assert_eq!(sys::recv(&server, &mut buf, MsgFlags::empty()), Ok(0));
}

#[test]
fn a_half_closed_socket_cannot_send_but_still_receives() {
    let (client, server) = connected_pair();
    send_whole(&client, b"hello\nworld\n");
    sys::shutdown(&client, Shutdown::Write).expect("shutdown");

    // Our own sending side is shut: EPIPE (MSG_NOSIGNAL, so no SIGPIPE).
    assert_eq!(
        sys::send(&client, b"one more line\n", MsgFlags::MSG_NOSIGNAL),
        Err(Errno::EPIPE)
    );

    // The server reads everything, then end of file...
    let mut buf = [0u8; 64];
    let n = sys::recv(&server, &mut buf, MsgFlags::empty()).expect("recv");
    assert_eq!(&buf[..n], b"hello\nworld\n");
    assert_eq!(sys::recv(&server, &mut buf, MsgFlags::empty()), Ok(0));

    // ...and its reply still reaches the half-closed client.
    let reply = b"server received 2 lines (12 bytes), good bye.\n";
    send_whole(&server, reply);
    let n = sys::recv(&client, &mut buf, MsgFlags::empty()).expect("recv on a half-closed socket");
    assert_eq!(&buf[..n], reply);

    sys::close(server).expect("close");
    assert_eq!(
        sys::recv(&client, &mut buf, MsgFlags::empty()),
        Ok(0),
        "the server's FIN"
    );
}

#[test]
fn recv_returns_0_after_the_peers_fin_and_keeps_returning_0() {
    let (client, server) = connected_pair();
    sys::close(client).expect("close");
    let mut buf = [0u8; 16];
    for attempt in 1..=3 {
        assert_eq!(
            sys::recv(&server, &mut buf, MsgFlags::empty()),
            Ok(0),
            "recv number {attempt} after the FIN"
        );
    }
}

/// What a loop does when `bytes` arrive from client `id`: put them in the inbox the room lends.
fn arrive(room: &mut Room, id: usize, bytes: &[u8]) {
    let buf = room.read_buffer(id);
    assert!(buf.len() >= bytes.len(), "the room lends room for a few bytes");
    buf[..bytes.len()].copy_from_slice(bytes);
    room.received(id, bytes.len());
    room.changed(&mut Vec::new());
}

/// Everything the room has for client `id`, taken as a loop takes it.
fn heard(room: &mut Room, id: usize) -> String {
    room.changed(&mut Vec::new());
    let text = String::from_utf8_lossy(room.output(id)).into_owned();
    room.wrote(id, text.len());
    text
}

/// A room with clients 1 and 2 (127.0.0.1:40001 and :40002), welcomes already read, its clock
/// at `start`.
fn room_of_two(start: Instant) -> Room {
    let mut room = Room::new(|| "12:00:00".to_string());
    room.tick(start);
    for id in [1, 2] {
        room.join(id, SocketAddr::from(([127, 0, 0, 1], 40000 + id as u16)));
    }
    for id in [1, 2] {
        heard(&mut room, id);
    }
    room
}

/// Lesson 05's account of the chat room's one timing rule (`src/chat`, `QUIET`), held to the
/// room itself, driven as a loop drives it, on a clock the test sets: for a client that has
/// never sent a newline (seed 003's client), `QUIET` of silence ends its line; two such lines
/// less than `QUIET` apart become one; one cut off by end-of-file before the quiet is lost;
/// once a client has sent a newline, only newlines end its lines.
#[test]
fn the_rooms_quiet_rule_frames_bare_lines_by_timing_until_a_newline() {
    let start = Instant::now();
    let mut room = room_of_two(start);
    arrive(&mut room, 1, b"hello");
    room.tick(start + QUIET / 2);
    arrive(&mut room, 1, b"world");
    room.tick(start + QUIET);
    assert_eq!(heard(&mut room, 2), "", "the quiet counts from the last bytes");
    room.tick(start + QUIET / 2 + QUIET);
    assert_eq!(
        heard(&mut room, 2),
        "12:00:00 127.0.0.1:40001 say: helloworld\n",
        "two bare lines less than QUIET apart are one line"
    );

    let mut room = room_of_two(start);
    arrive(&mut room, 1, b"bye for now");
    room.eof(1);
    let told = heard(&mut room, 2);
    assert!(told.contains("127.0.0.1:40001 left (end of file)"), "{told}");
    assert!(!told.contains("say:"), "the half line before the quiet is lost: {told}");

    let mut room = room_of_two(start);
    arrive(&mut room, 1, b"a line\nhalf a ");
    room.tick(start + 10 * QUIET);
    assert_eq!(
        heard(&mut room, 2),
        "12:00:00 127.0.0.1:40001 say: a line\n",
        "after a newline, a pause ends nothing"
    );
}
