//! What close does depends on where the socket is (what the trace's close note must say):
//! - a normal TCP close sends FIN: the peer reads end of file, and our side goes through
//!   FIN_WAIT (ss shows FIN-WAIT-2) to TIME_WAIT once the peer closes too;
//! - after shutdown(SHUT_WR) the FIN has already gone: the peer read end of file at the
//!   shutdown, before the close, and the close sends nothing more;
//! - after the peer's RST (our recv got ECONNRESET) the socket is already CLOSED: the close
//!   sends nothing and leaves nothing behind, no FIN_WAIT, no TIME_WAIT;
//! - closing a listener resets the connections still in its accept queue: such a client's
//!   next recv fails with ECONNRESET, not end of file;
//! - AF_UNIX has no FIN: the peer reads end of file; but if the closing end left bytes unread,
//!   the peer's recv fails with ECONNRESET, as TCP's reset does.
//!
//! "Sends nothing" is seen from the peer: `tcpi_segs_in` in its TCP_INFO counts every segment
//! that reaches it, and does not move.
//!
//! Cost: about 0.1 s for each test that waits to see that nothing arrives.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::util::tcp;
use nix::sys::socket::{setsockopt, sockopt};

/// A bound on every wait: each of these takes microseconds on loopback (a hang guard).
const PATIENCE: Duration = Duration::from_secs(5);
/// How long to watch for a segment that must not come. On loopback a segment a close sends
/// arrives before the close returns or a moment after; this is many times that moment.
const QUIET: Duration = Duration::from_millis(100);

/// A connected pair on loopback, (client, server), reads bounded by [`PATIENCE`].
fn connected_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("its address")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    for end in [&client, &server] {
        end.set_read_timeout(Some(PATIENCE)).expect("SO_RCVTIMEO");
    }
    (client, server)
}

fn ports(stream: &TcpStream) -> (u16, u16) {
    (
        stream.local_addr().expect("getsockname").port(),
        stream.peer_addr().expect("getpeername").port(),
    )
}

/// The state ss shows for the socket from `local` to `peer`, if the kernel still has one.
fn ss_state(local: u16, peer: u16) -> Option<String> {
    tcp::row(local, peer).map(|row| row.state)
}

fn wait_for_ss_state(local: u16, peer: u16, wanted: &[&str]) {
    assert!(
        tcp::wait_until(PATIENCE, || ss_state(local, peer)
            .is_some_and(|s| wanted.contains(&s.as_str()))),
        "127.0.0.1:{local} -> {peer} never reached {wanted:?}; ss shows {:?}",
        ss_state(local, peer)
    );
}

/// Segments that reached `stream` so far (`tcpi_segs_in`).
fn segments_in(stream: &TcpStream) -> u32 {
    tcp::info(stream).tcpi_segs_in
}

#[test]
fn a_normal_close_sends_fin_then_fin_wait_then_time_wait() {
    let (mut peer, closer) = connected_pair();
    let (local, remote) = ports(&closer);
    drop(closer);

    let mut byte = [0u8; 1];
    assert_eq!(peer.read(&mut byte).expect("read"), 0, "the FIN: end of file");
    assert_eq!(tcp::state(&peer), tcp::CLOSE_WAIT);
    // The closed end has no descriptor any more, but the kernel still has the connection.
    wait_for_ss_state(local, remote, &["FIN-WAIT-1", "FIN-WAIT-2"]);

    drop(peer);
    wait_for_ss_state(local, remote, &["TIME-WAIT"]);
}

#[test]
fn after_shutdown_wr_the_peer_had_end_of_file_before_the_close_and_close_sends_nothing() {
    let (mut peer, mut closer) = connected_pair();
    let (local, remote) = ports(&closer);

    closer.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
    let mut buf = [0u8; 16];
    assert_eq!(peer.read(&mut buf).expect("read"), 0, "end of file at the shutdown");
    // The descriptor is still open, and the other direction still works: a half-close.
    peer.write_all(b"still here").expect("send");
    assert_eq!(closer.read(&mut buf).expect("read"), 10);
    wait_for_ss_state(local, remote, &["FIN-WAIT-2"]);
    // Nothing owed to the peer either: its bytes are acknowledged (no delayed ACK to come).
    assert!(
        tcp::wait_until(PATIENCE, || tcp::info(&peer).tcpi_unacked == 0),
        "the peer's bytes were never acknowledged"
    );

    let before = segments_in(&peer);
    drop(closer);
    std::thread::sleep(QUIET);
    assert_eq!(segments_in(&peer), before, "the close after shutdown sent a segment");
    assert_eq!(ss_state(local, remote).as_deref(), Some("FIN-WAIT-2"));

    // The same count does see a segment when one comes: the peer's own FIN is answered by an ACK.
    peer.shutdown(Shutdown::Write).expect("the peer's shutdown(SHUT_WR)");
    assert!(
        tcp::wait_until(PATIENCE, || segments_in(&peer) > before),
        "the ACK of the peer's FIN never arrived"
    );
    wait_for_ss_state(local, remote, &["TIME-WAIT"]);
}

#[test]
fn close_after_the_peers_reset_sends_nothing_and_leaves_nothing() {
    let (client, mut server) = connected_pair();
    let (local, remote) = ports(&server);
    let client = OwnedFd::from(client);
    let abort = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&client, sockopt::Linger, &abort).expect("SO_LINGER {1, 0}");
    drop(client);

    let mut buf = [0u8; 16];
    let error = server.read(&mut buf).expect_err("recv after the RST");
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    assert_eq!(tcp::state(&server), tcp::CLOSE, "already CLOSED, descriptor still open");
    assert_eq!(ss_state(local, remote), None, "the kernel has let the connection go");

    drop(server);
    std::thread::sleep(QUIET);
    assert_eq!(
        ss_state(local, remote),
        None,
        "no FIN_WAIT and no TIME_WAIT after closing a reset socket"
    );
    assert_eq!(ss_state(remote, local), None, "nor on the side that reset");
}

#[test]
fn closing_a_listener_resets_a_connection_still_in_its_queue() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().expect("its address")).expect("connect");
    client.set_read_timeout(Some(PATIENCE)).expect("SO_RCVTIMEO");
    assert!(
        tcp::wait_until(PATIENCE, || tcp::info(&listener).tcpi_unacked == 1),
        "the connection never reached the accept queue"
    );
    drop(listener);

    let mut buf = [0u8; 16];
    let error = client.read(&mut buf).expect_err("recv after the listener closed");
    assert_eq!(
        error.kind(),
        ErrorKind::ConnectionReset,
        "an RST, not a FIN (which would read as end of file)"
    );
    assert_eq!(tcp::state(&client), tcp::CLOSE);
}

#[test]
fn af_unix_close_gives_the_peer_end_of_file() {
    let (mut reader, closer) = UnixStream::pair().expect("socketpair");
    reader.set_read_timeout(Some(PATIENCE)).expect("SO_RCVTIMEO");
    drop(closer);
    let mut buf = [0u8; 16];
    assert_eq!(reader.read(&mut buf).expect("read"), 0);
}

#[test]
fn af_unix_close_with_bytes_left_unread_gives_the_peer_econnreset() {
    let (mut peer, closer) = UnixStream::pair().expect("socketpair");
    peer.set_read_timeout(Some(PATIENCE)).expect("SO_RCVTIMEO");
    peer.write_all(b"never read").expect("send");
    drop(closer);
    let mut buf = [0u8; 16];
    let error = peer.read(&mut buf).expect_err("recv after the close");
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
}
