//! Lesson 06's claims about resets: a close with SO_LINGER {1, 0} sends RST, and the peer's
//! recv fails with ECONNRESET (a plain close sends FIN: recv returns 0); the error is reported
//! once, after which recv reads end of file and send fails with EPIPE; a send is the call that
//! meets the RST, it fails with ECONNRESET, not EPIPE; and closing a socket with unread data
//! resets the connection too.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use crate::util;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MsgFlags, recv, send, setsockopt, sockopt};

/// Bounds every blocking recv here: the RST or FIN comes back within microseconds on loopback.
const LIMIT: Duration = Duration::from_secs(5);

/// A connected pair on loopback: (client, server).
fn connected_pair() -> (OwnedFd, OwnedFd) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0");
    let client = TcpStream::connect(listener.local_addr().expect("its address")).expect("connecting");
    client.set_read_timeout(Some(LIMIT)).expect("SO_RCVTIMEO");
    let (server, _) = listener.accept().expect("accepting");
    (OwnedFd::from(client), OwnedFd::from(server))
}

/// Closes `fd` with SO_LINGER {1, 0}: an abortive close.
fn close_with_linger_zero(fd: OwnedFd) {
    let abort = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&fd, sockopt::Linger, &abort).expect("setsockopt SO_LINGER");
    nix::unistd::close(fd).expect("close");
}

fn recv_once(fd: &OwnedFd) -> nix::Result<usize> {
    let mut buf = [0u8; 64];
    recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())
}

/// Waits, with events=0, for POLLERR or POLLHUP on `fd`.
fn wait_for_error(fd: &OwnedFd) -> Option<PollFlags> {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::empty())];
    match poll(&mut fds, PollTimeout::from(5000u16)) {
        Ok(1) => fds[0].revents(),
        _ => None,
    }
}

#[test]
fn linger_zero_close_gives_the_peer_econnreset_on_recv() {
    let (client, server) = connected_pair();
    close_with_linger_zero(server);
    assert_eq!(recv_once(&client), Err(Errno::ECONNRESET));
}

#[test]
fn a_plain_close_gives_the_peer_end_of_file_instead() {
    let (client, server) = connected_pair();
    nix::unistd::close(server).expect("close");
    assert_eq!(recv_once(&client), Ok(0));
}

#[test]
fn the_reset_is_reported_once_then_eof_and_epipe() {
    let (client, server) = connected_pair();
    close_with_linger_zero(server);
    assert_eq!(recv_once(&client), Err(Errno::ECONNRESET));
    assert_eq!(recv_once(&client), Ok(0), "after the error, recv reads end of file");
    assert_eq!(
        send(client.as_raw_fd(), b"x", MsgFlags::MSG_NOSIGNAL),
        Err(Errno::EPIPE),
        "and send fails with EPIPE"
    );
}

#[test]
fn a_send_that_meets_the_reset_fails_with_econnreset_then_epipe() {
    let (client, server) = connected_pair();
    close_with_linger_zero(server);
    assert!(
        wait_for_error(&client).is_some_and(|r| r.contains(PollFlags::POLLERR)),
        "the RST shows as POLLERR"
    );
    assert_eq!(
        send(client.as_raw_fd(), b"x", MsgFlags::MSG_NOSIGNAL),
        Err(Errno::ECONNRESET),
        "a connection reset while established: the pending error is ECONNRESET"
    );
    assert_eq!(
        send(client.as_raw_fd(), b"x", MsgFlags::MSG_NOSIGNAL),
        Err(Errno::EPIPE)
    );
}

#[test]
fn closing_with_unread_data_resets_the_connection() {
    let (client, server) = connected_pair();
    assert_eq!(send(client.as_raw_fd(), b"unread\n", MsgFlags::MSG_NOSIGNAL), Ok(7));
    let mut fds = [PollFd::new(server.as_fd(), PollFlags::POLLIN)];
    assert_eq!(
        poll(&mut fds, PollTimeout::from(5000u16)),
        Ok(1),
        "the bytes reach the server"
    );
    nix::unistd::close(server).expect("close");
    assert_eq!(
        recv_once(&client),
        Err(Errno::ECONNRESET),
        "the unread bytes are thrown away and the peer gets RST, not FIN"
    );
}

#[test]
fn python_raises_connection_reset_error() {
    util::require("python3");
    let script = r#"
import socket, struct
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
client = socket.create_connection(listener.getsockname())
client.settimeout(5)
conn, _ = listener.accept()
conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
conn.close()
try:
    client.recv(100)
    print("no error")
except ConnectionResetError as error:
    print(type(error).__name__, error.errno, isinstance(error, socket.error))
"#;
    let mut command = std::process::Command::new("python3");
    command.args(["-c", script]);
    let output = util::run_with_deadline(command, Duration::from_secs(30));
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "ConnectionResetError 104 True\n"
    );
}
