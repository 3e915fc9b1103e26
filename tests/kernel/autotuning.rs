//! Buffer autotuning (lesson 04; seed 000 recommends bigger buffers for speed). Left alone, Linux
//! sizes a TCP socket's buffers itself: SO_RCVBUF grows while a bulk transfer is read promptly
//! (net.ipv4.tcp_moderate_rcvbuf), SO_SNDBUF grows from net.ipv4.tcp_wmem's default as the
//! connection opens and sends. Setting SO_RCVBUF or SO_SNDBUF turns that off for the socket:
//! the value stays at what was set, doubled, for the whole transfer (socket(7): "the kernel
//! doubles this value"; tcp(7): setting them "disables the automatic tuning").
//!
//! Cost: two 32 MiB transfers over loopback, about 0.1 s each in a debug build here.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use crate::util::tcp;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// How much the sender sends: enough for the kernel to see a sustained transfer.
const TOTAL: usize = 32 << 20;
/// What the application reads at a time.
const CHUNK: usize = 64 << 10;
/// What the "set" case asks for; the kernel holds twice as much.
const ASKED: usize = 32 << 10;
/// A bound on every read and write (a hang guard).
const PATIENCE: Duration = Duration::from_secs(20);

/// SO_RCVBUF of the receiver and SO_SNDBUF of the sender, before and after the transfer.
#[derive(Debug)]
struct Sizes {
    receive_before: usize,
    receive_after: usize,
    send_before: usize,
    send_after: usize,
}

fn tcp_socket() -> Socket {
    Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket")
}

/// A connection whose client sends TOTAL bytes and whose accepted end reads them all, CHUNK at a
/// time, as fast as it can. With `asked`, the receiver's SO_RCVBUF (set on the listener, which
/// the accepted socket inherits) and the sender's SO_SNDBUF are set before listen and connect.
fn bulk_transfer(asked: Option<usize>) -> Sizes {
    let listener = tcp_socket();
    if let Some(size) = asked {
        listener.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    listener
        .bind(&SockAddr::from(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .expect("bind");
    listener.listen(1).expect("listen");
    let address = listener.local_addr().expect("getsockname");

    let sender = tcp_socket();
    if let Some(size) = asked {
        sender.set_send_buffer_size(size).expect("SO_SNDBUF");
    }
    let send_before = sender.send_buffer_size().expect("SO_SNDBUF");
    sender.connect(&address).expect("connect");
    let (receiver, _) = listener.accept().expect("accept");
    let receive_before = receiver.recv_buffer_size().expect("SO_RCVBUF");

    let mut sender = TcpStream::from(sender);
    sender.set_write_timeout(Some(PATIENCE)).expect("SO_SNDTIMEO");
    let writer = std::thread::spawn(move || {
        let block = vec![b'x'; 1 << 20];
        for _ in 0..TOTAL / block.len() {
            sender.write_all(&block).expect("send");
        }
        let send_after = Socket::from(sender.try_clone().expect("dup"))
            .send_buffer_size()
            .expect("SO_SNDBUF");
        sender.shutdown(Shutdown::Write).expect("shutdown");
        send_after
    });

    let mut receiver = TcpStream::from(receiver);
    receiver.set_read_timeout(Some(PATIENCE)).expect("SO_RCVTIMEO");
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0;
    loop {
        // SO_RCVTIMEO makes an interrupted wait fail with EINTR instead of restarting it.
        let n = match receiver.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("recv: {e}"),
        };
        if n == 0 {
            break;
        }
        received += n;
        assert!(received <= TOTAL, "more bytes than were sent");
    }
    assert_eq!(received, TOTAL);
    let receive_after = Socket::from(receiver).recv_buffer_size().expect("SO_RCVBUF");
    let send_after = writer.join().expect("the sending thread");
    Sizes {
        receive_before,
        receive_after,
        send_before,
        send_after,
    }
}

/// The middle number of a sysctl that holds three (min, default, max).
fn default_of(name: &str) -> usize {
    tcp::sysctl(name)
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name} has three numbers"))
}

#[test]
fn left_alone_the_kernel_grows_both_buffers() {
    let moderate = tcp::sysctl("net/ipv4/tcp_moderate_rcvbuf");
    assert_eq!(
        moderate, "1",
        "net.ipv4.tcp_moderate_rcvbuf is off: no receive autotuning here"
    );
    let sizes = bulk_transfer(None);
    println!("left alone: {sizes:?}");
    assert_eq!(
        sizes.receive_before,
        default_of("net/ipv4/tcp_rmem"),
        "SO_RCVBUF starts at tcp_rmem's default"
    );
    assert!(
        sizes.receive_after >= 2 * sizes.receive_before,
        "SO_RCVBUF grew while the transfer was read: {sizes:?}"
    );
    assert_eq!(
        sizes.send_before,
        default_of("net/ipv4/tcp_wmem"),
        "SO_SNDBUF starts at tcp_wmem's default"
    );
    assert!(sizes.send_after >= 2 * sizes.send_before, "SO_SNDBUF grew: {sizes:?}");
}

#[test]
fn set_by_the_application_both_stay_at_twice_what_was_asked() {
    let sizes = bulk_transfer(Some(ASKED));
    println!("set to {ASKED}: {sizes:?}");
    let doubled = 2 * ASKED;
    assert_eq!(
        (sizes.receive_before, sizes.receive_after),
        (doubled, doubled),
        "SO_RCVBUF stayed at the doubled value"
    );
    assert_eq!(
        (sizes.send_before, sizes.send_after),
        (doubled, doubled),
        "SO_SNDBUF stayed at the doubled value"
    );
}
