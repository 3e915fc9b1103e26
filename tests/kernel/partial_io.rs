//! Claim of lesson 05: with a small SO_SNDBUF on the sender, a small SO_RCVBUF on the receiver
//! and a receiver that does not read, a non-blocking send of a large buffer returns a short
//! count (0 < n < len), and the sends after it end in EAGAIN; poll then reports the socket not
//! writable. Once the receiver reads, a loop of poll(POLLOUT) and send delivers every byte, in
//! order: what Python's `sendall` has to do on a non-blocking socket.
//!
//! The exact counts (6144, then 2048...) depend on the kernel's accounting, so this test
//! asserts only what every Linux guarantees.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, sockopt};
use nix::sys::time::TimeVal;
use socklab::sys::{self, Errno};
use socklab::trace::{self, Mode};

/// What both sides ask for; Linux doubles it. The defaults would absorb far more.
const SMALL_BUFFER: usize = 4096;
/// Far more than the two small buffers hold together.
const PAYLOAD_SIZE: usize = 1 << 20;
/// The sends before EAGAIN are few (three here); this bounds the loop all the same.
const MAX_SENDS_BEFORE_EAGAIN: usize = 1000;
/// The send loop's bound once the reader reads: each round moves at least one byte.
const MAX_ROUNDS: usize = 100_000;
/// How long poll may wait for room before the test fails.
const POLL_PATIENCE_MS: u16 = 5000;
/// A blocking recv that waits longer than this fails instead of hanging the test.
const RECV_TIMEOUT_SECS: i64 = 5;

const DONTWAIT: MsgFlags = MsgFlags::MSG_DONTWAIT.union(MsgFlags::MSG_NOSIGNAL);

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
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

/// (sender, receiver): the receiver set SO_RCVBUF before connecting, so the window it offers
/// in the handshake is small; the sender set SO_SNDBUF.
fn small_buffered_pair() -> (OwnedFd, OwnedFd) {
    trace::set_mode(Mode::Off);
    let listener = tcp_socket();
    let any_port: SocketAddr = "127.0.0.1:0".parse().expect("a literal address");
    sys::bind(&listener, any_port).expect("bind");
    sys::listen(&listener, 1).expect("listen");
    let port = sys::getsockname(&listener)
        .expect("getsockname")
        .as_sockaddr_in()
        .expect("an IPv4 address")
        .port();
    let receiver = tcp_socket();
    sys::setsockopt(&receiver, sockopt::RcvBuf, &SMALL_BUFFER).expect("SO_RCVBUF");
    let timeout = TimeVal::new(RECV_TIMEOUT_SECS, 0);
    sys::setsockopt(&receiver, sockopt::ReceiveTimeout, &timeout).expect("SO_RCVTIMEO");
    sys::connect(&receiver, SocketAddr::from(([127, 0, 0, 1], port))).expect("connect");
    let (sender, _) = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC).expect("accept4");
    sys::setsockopt(&sender, sockopt::SndBuf, &SMALL_BUFFER).expect("SO_SNDBUF");
    sys::close(listener).expect("close");
    (sender, receiver)
}

/// Sends non-blocking until EAGAIN, checking every count on the way; returns how much was taken.
fn send_until_eagain(sender: &OwnedFd, payload: &[u8]) -> usize {
    let first = sys::send(sender, payload, DONTWAIT).expect("the first send takes something");
    assert!(
        first > 0 && first < payload.len(),
        "a short send: 0 < {first} < {}",
        payload.len()
    );
    let mut taken = first;
    for _ in 0..MAX_SENDS_BEFORE_EAGAIN {
        match sys::send(sender, &payload[taken..], DONTWAIT) {
            Ok(n) => {
                assert!(n > 0 && n < payload.len() - taken, "each send is short too: {n}");
                taken += n;
            }
            Err(Errno::EAGAIN) => return taken,
            Err(other) => panic!("send failed with {other}, not EAGAIN"),
        }
    }
    panic!("no EAGAIN after {MAX_SENDS_BEFORE_EAGAIN} sends ({taken} bytes taken)");
}

fn writable_now(sender: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(sender.as_fd(), PollFlags::POLLOUT)];
    sys::poll::poll(&mut fds, PollTimeout::ZERO).expect("poll") == 1
}

#[test]
fn a_nonblocking_send_to_a_peer_that_does_not_read_is_short_then_eagain() {
    let (sender, receiver) = small_buffered_pair();
    let payload = pattern(PAYLOAD_SIZE);
    let taken = send_until_eagain(&sender, &payload);
    assert!(
        taken < payload.len(),
        "the kernel took {taken} of {} bytes",
        payload.len()
    );

    // Nobody reads, so nothing changes: still EAGAIN, and poll says not writable.
    assert_eq!(sys::send(&sender, &payload[taken..], DONTWAIT), Err(Errno::EAGAIN));
    assert!(
        !writable_now(&sender),
        "poll reported POLLOUT while the peer reads nothing"
    );
    drop(receiver);
}

#[test]
fn poll_and_send_deliver_everything_once_the_peer_reads() {
    let (sender, receiver) = small_buffered_pair();
    let payload = pattern(PAYLOAD_SIZE);
    let mut taken = send_until_eagain(&sender, &payload);

    // The reader starts only now; it reads until it has every byte (MSG_WAITALL loops in the kernel).
    let reader = std::thread::spawn(move || {
        let mut everything = vec![0u8; PAYLOAD_SIZE];
        let n = sys::recv(&receiver, &mut everything, MsgFlags::MSG_WAITALL).expect("recv");
        everything.truncate(n);
        everything
    });

    for _ in 0..MAX_ROUNDS {
        if taken == payload.len() {
            break;
        }
        match sys::send(&sender, &payload[taken..], DONTWAIT) {
            Ok(n) => taken += n,
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(sender.as_fd(), PollFlags::POLLOUT)];
                let ready = sys::poll::poll(&mut fds, PollTimeout::from(POLL_PATIENCE_MS)).expect("poll");
                assert_eq!(
                    ready, 1,
                    "no room to send within {POLL_PATIENCE_MS} ms while the peer reads"
                );
            }
            Err(other) => panic!("send failed with {other}"),
        }
    }
    assert_eq!(taken, payload.len(), "the loop sent everything");

    let received = reader.join().expect("the reader thread");
    assert_eq!(received.len(), payload.len(), "every byte arrived");
    assert!(received == payload, "in the order sent");
}
