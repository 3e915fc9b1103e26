//! What lesson 11's select loop relies on the kernel for, each made to happen on real TCP over
//! loopback, with socklab's own select (the raw pselect6 the lessons use):
//! - level-triggered: a socket with unread bytes is reported readable by every select until
//!   they are read, so one recv per ready client per select loses nothing;
//! - the write set: an idle connected socket is writable, every time select asks (a loop that
//!   always asked would never sleep); once the peer stops reading and send meets EAGAIN, select
//!   no longer reports it writable, until the peer reads again;
//! - the exceptional set, on TCP: urgent (MSG_OOB) data;
//! - a reset: the socket is reported readable, and recv fails with ECONNRESET.
//!
//! Cost: well under a second.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::thread;

use nix::sys::socket::{MsgFlags, sockopt};
use socklab::sys::select::{self, FdSet};
use socklab::sys::{self, Errno};
use socklab::trace::{self, Mode};

/// A connected pair on loopback: (the side the test writes, the side that reads).
fn connected() -> (OwnedFd, TcpStream) {
    trace::set_mode(Mode::Off);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let writer = TcpStream::connect(listener.local_addr().expect("its address")).expect("connect");
    let (reader, _) = listener.accept().expect("accept");
    writer.set_nonblocking(true).expect("O_NONBLOCK");
    (OwnedFd::from(writer), reader)
}

/// Which of read, write and except one select found `fd` in, waiting at most `ms`.
fn ready_within(fd: &OwnedFd, read: bool, write: bool, except: bool, ms: i64) -> [bool; 3] {
    let mut sets = [read, write, except].map(|asked| {
        let mut set = FdSet::new();
        if asked {
            set.insert(fd.as_raw_fd());
        }
        asked.then_some(set)
    });
    let [r, w, e] = &mut sets;
    let mut timeout = select::timeout_ms(ms);
    select::select(r.as_mut(), w.as_mut(), e.as_mut(), Some(&mut timeout)).expect("select");
    sets.map(|set| set.is_some_and(|set| set.contains(fd.as_raw_fd())))
}

fn writable_within(fd: &OwnedFd, ms: i64) -> bool {
    ready_within(fd, false, true, false, ms)[1]
}

/// The accepted side of a connection, as a server's loop holds it, and the client.
fn accepted() -> (OwnedFd, TcpStream) {
    let (client, server_side) = connected();
    (OwnedFd::from(server_side), TcpStream::from(client))
}

#[test]
fn unread_bytes_are_reported_by_every_select_until_read() {
    let (server_side, mut client) = accepted();
    client.write_all(b"one line\ntwo lines\n").expect("send");
    for round in 0..3 {
        assert_eq!(
            ready_within(&server_side, true, false, false, 5000),
            [true, false, false],
            "round {round}: still readable"
        );
    }
    let mut buf = [0u8; 9];
    assert_eq!(
        sys::recv(&server_side, &mut buf, MsgFlags::empty()),
        Ok(9),
        "one recv, part of it"
    );
    assert!(
        ready_within(&server_side, true, false, false, 5000)[0],
        "the rest is reported"
    );
    let mut rest = [0u8; 64];
    assert_eq!(sys::recv(&server_side, &mut rest, MsgFlags::empty()), Ok(10));
    assert_eq!(
        ready_within(&server_side, true, false, false, 100),
        [false, false, false],
        "all read: not readable"
    );
}

#[test]
fn urgent_data_lands_in_the_exceptional_set() {
    let (server_side, client) = accepted();
    assert_eq!(
        ready_within(&server_side, false, false, true, 100),
        [false, false, false]
    );
    let client = OwnedFd::from(client);
    assert_eq!(sys::send(&client, b"!", MsgFlags::MSG_OOB), Ok(1));
    assert!(ready_within(&server_side, false, false, true, 5000)[2], "except [fd]");
}

#[test]
fn a_reset_is_readable_and_recv_says_econnreset() {
    let (server_side, client) = accepted();
    let client = OwnedFd::from(client);
    let abort = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    sys::setsockopt(&client, sockopt::Linger, &abort).expect("SO_LINGER");
    sys::close(client).expect("close: RST");
    assert!(ready_within(&server_side, true, false, false, 5000)[0], "readable");
    let mut buf = [0u8; 16];
    assert_eq!(
        sys::recv(&server_side, &mut buf, MsgFlags::empty()),
        Err(Errno::ECONNRESET)
    );
}

#[test]
fn an_idle_connection_is_writable_every_time_select_asks() {
    let (writer, _reader) = connected();
    for round in 0..100 {
        assert!(
            writable_within(&writer, 5000),
            "round {round}: select did not report an idle connection writable"
        );
    }
}

#[test]
fn a_connection_whose_peer_stops_reading_leaves_the_write_set_until_it_reads() {
    let (writer, mut reader) = connected();
    let chunk = vec![b'x'; 64 * 1024];
    let mut queued = 0usize;
    // Fill the sender's and the receiver's buffers (a few MB at most on loopback).
    let full = (0..1000).any(|_| match sys::send(writer.as_fd(), &chunk, MsgFlags::MSG_NOSIGNAL) {
        Ok(n) => {
            queued += n;
            false
        }
        Err(Errno::EAGAIN) => true,
        Err(error) => panic!("send: {error}"),
    });
    assert!(full, "send never met EAGAIN after {queued} bytes");
    assert!(
        !writable_within(&writer, 200),
        "select reported writable a connection whose send just met EAGAIN ({queued} bytes queued)"
    );

    // The peer reads everything: room again, and select says so.
    let draining = thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut read = 0usize;
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            read += n;
        }
        read
    });
    assert!(writable_within(&writer, 5000), "not writable again once the peer read");
    drop(writer);
    assert_eq!(draining.join().expect("the reader"), queued, "every byte arrived");
}
