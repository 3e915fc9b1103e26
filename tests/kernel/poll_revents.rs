//! What poll(2) reports in `revents`, each bit made to happen on real descriptors: POLLIN on
//! data, POLLOUT with room, POLLHUP when a pipe's writer closes or a socket is shut both ways,
//! POLLERR on a refused non-blocking connect (and a pipe with no reader), POLLHUP and POLLERR
//! after a reset, POLLNVAL for a closed number, POLLRDHUP after the peer's shutdown(SHUT_WR);
//! revents never holds a bit that was not asked for except POLLERR, POLLHUP and POLLNVAL; a
//! timeout returns 0.
//!
//! Lesson 13 claims each of these. The calls go straight to libc's `poll` on a raw `pollfd`
//! array, so a closed number and POLLRDHUP (which nix's `PollFlags` lacks) are easy to pass.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::poll::PollTimeout;

/// Long enough for anything that happens on loopback; the tests never wait this long unless
/// the kernel failed to report what it should (then the assertion says so).
const WAIT_MS: i32 = 5000;

/// The bits poll may report whether or not they were asked for (poll(2): "ignored in events").
const ALWAYS: i16 = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;

/// Polls one descriptor number for `events`; returns (poll's result, revents).
fn poll_one(fd: RawFd, events: i16, timeout_ms: i32) -> (i32, i16) {
    let mut entry = [libc::pollfd { fd, events, revents: 0 }];
    // SAFETY: `entry` is a valid array of one pollfd, alive and writable for the whole call;
    // poll only writes its revents field. `fd` need not be open: that is a legal question.
    let ready = unsafe { libc::poll(entry.as_mut_ptr(), 1, timeout_ms) };
    assert!(ready >= 0, "poll failed: {}", std::io::Error::last_os_error());
    (ready, entry[0].revents)
}

/// A connected pair on loopback: (the client's end, the server's accepted end).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let client = TcpStream::connect(listener.local_addr().expect("local_addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

/// A pipe: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2")
}

fn names(bits: i16) -> String {
    let table = [
        (libc::POLLIN, "POLLIN"),
        (libc::POLLPRI, "POLLPRI"),
        (libc::POLLOUT, "POLLOUT"),
        (libc::POLLERR, "POLLERR"),
        (libc::POLLHUP, "POLLHUP"),
        (libc::POLLNVAL, "POLLNVAL"),
        (libc::POLLRDNORM, "POLLRDNORM"),
        (libc::POLLWRNORM, "POLLWRNORM"),
        (libc::POLLRDHUP, "POLLRDHUP"),
    ];
    let shown: Vec<&str> = table.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| *n).collect();
    format!("{bits:#x} ({})", shown.join("|"))
}

#[test]
fn pollin_when_data_waits_and_again_until_it_is_read() {
    let (mut client, server) = tcp_pair();
    let (ready, revents) = poll_one(server.as_raw_fd(), libc::POLLIN, 0);
    assert_eq!((ready, revents), (0, 0), "nothing sent yet: no POLLIN");

    client.write_all(b"hello\n").expect("write");
    let (ready, revents) = poll_one(server.as_raw_fd(), libc::POLLIN, WAIT_MS);
    assert_eq!((ready, revents), (1, libc::POLLIN), "data waiting: {}", names(revents));
    // Level-triggered: not read, so reported again.
    let (ready, revents) = poll_one(server.as_raw_fd(), libc::POLLIN, 0);
    assert_eq!((ready, revents), (1, libc::POLLIN), "still unread: {}", names(revents));
}

#[test]
fn pollout_on_a_connected_socket_with_room() {
    let (client, server) = tcp_pair();
    let (ready, revents) = poll_one(server.as_raw_fd(), libc::POLLIN | libc::POLLOUT, 0);
    assert_eq!(
        (ready, revents),
        (1, libc::POLLOUT),
        "asked IN|OUT with nothing to read: {}",
        names(revents)
    );
    drop(client);
}

#[test]
fn pollhup_when_the_pipe_writer_closes() {
    let (reader, writer) = pipe();
    let (ready, _) = poll_one(reader.as_raw_fd(), libc::POLLIN, 0);
    assert_eq!(ready, 0, "a writer exists and wrote nothing: nothing to report");
    drop(writer);
    let (ready, revents) = poll_one(reader.as_raw_fd(), libc::POLLIN, WAIT_MS);
    assert_eq!(
        (ready, revents),
        (1, libc::POLLHUP),
        "no writer left, no data: {}",
        names(revents)
    );
}

#[test]
fn tcp_peer_close_gives_pollin_and_rdhup_but_hup_only_when_both_directions_are_shut() {
    let (client, server) = tcp_pair();
    drop(client); // FIN from the peer: our reading side is finished.
    let asked = libc::POLLIN | libc::POLLRDHUP;
    let (ready, revents) = poll_one(server.as_raw_fd(), asked, WAIT_MS);
    assert_eq!(
        (ready, revents),
        (1, libc::POLLIN | libc::POLLRDHUP),
        "peer closed, we did not: {}",
        names(revents)
    );
    server.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
    let (ready, revents) = poll_one(server.as_raw_fd(), asked, 0);
    assert_eq!(
        (ready, revents),
        (1, libc::POLLIN | libc::POLLRDHUP | libc::POLLHUP),
        "both directions shut: {}",
        names(revents)
    );
}

#[test]
fn a_reset_gives_pollhup_and_pollerr_with_pollin() {
    let (client, server) = tcp_pair();
    // SO_LINGER 0: the close sends RST instead of FIN.
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(client);
    let (ready, revents) = poll_one(server.as_raw_fd(), libc::POLLIN, WAIT_MS);
    assert_eq!(
        (ready, revents),
        (1, libc::POLLIN | libc::POLLERR | libc::POLLHUP),
        "reset by the peer: {}",
        names(revents)
    );
}

#[test]
fn pollrdhup_after_the_peers_shutdown_wr_and_recv_returns_0() {
    let (client, mut server) = tcp_pair();
    client.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
    let (ready, revents) = poll_one(server.as_raw_fd(), libc::POLLIN | libc::POLLRDHUP, WAIT_MS);
    assert_eq!(
        (ready, revents),
        (1, libc::POLLIN | libc::POLLRDHUP),
        "{}",
        names(revents)
    );
    let mut buf = [0u8; 16];
    assert_eq!(
        server.read(&mut buf).expect("read"),
        0,
        "POLLIN after a FIN is end of file"
    );
    // Not asked for, not reported: POLLRDHUP is a bit you request.
    let (_, revents) = poll_one(server.as_raw_fd(), libc::POLLIN, 0);
    assert_eq!(revents, libc::POLLIN, "{}", names(revents));
    // Our writing side is still open: no POLLHUP, and we can still send.
    let (_, revents) = poll_one(server.as_raw_fd(), libc::POLLOUT, 0);
    assert_eq!(
        revents,
        libc::POLLOUT,
        "half-closed by the peer only: {}",
        names(revents)
    );
    server.write_all(b"bye\n").expect("writing after the peer's FIN");
}

/// A non-blocking connect to a port where a socket is bound but not listening: the SYN gets
/// an RST. Returns the connecting socket.
fn refused_connect() -> OwnedFd {
    let dead_end = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = dead_end.local_addr().expect("local_addr").port();
    // A bound socket that never listened: std's TcpListener listens, so build it by hand.
    drop(dead_end);
    let holder = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    holder
        .bind(&target.into())
        .expect("bind the port again, without listen");

    let dialer = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    dialer.set_nonblocking(true).expect("O_NONBLOCK");
    let err = dialer.connect(&target.into()).expect_err("nothing listens there");
    assert_eq!(err.raw_os_error(), Some(libc::EINPROGRESS), "loopback connect: {err}");
    let (ready, revents) = poll_one(dialer.as_raw_fd(), libc::POLLOUT, WAIT_MS);
    assert_eq!(ready, 1, "the RST must end the wait");
    assert_ne!(revents & libc::POLLERR, 0, "refused: {}", names(revents));
    drop(holder);
    OwnedFd::from(dialer)
}

#[test]
fn pollerr_on_a_refused_nonblocking_connect() {
    let dialer = refused_connect();
    let (_, revents) = poll_one(dialer.as_raw_fd(), libc::POLLOUT, 0);
    assert_eq!(
        revents,
        libc::POLLOUT | libc::POLLERR | libc::POLLHUP,
        "asked POLLOUT only: {}",
        names(revents)
    );
    let sock = socket2::SockRef::from(&dialer);
    let pending = sock.take_error().expect("getsockopt SO_ERROR");
    assert_eq!(pending.and_then(|e| e.raw_os_error()), Some(libc::ECONNREFUSED));
    // Reading SO_ERROR cleared it, and POLLERR goes with it.
    let (_, revents) = poll_one(dialer.as_raw_fd(), libc::POLLOUT, 0);
    assert_eq!(
        revents & libc::POLLERR,
        0,
        "after SO_ERROR was read: {}",
        names(revents)
    );
}

#[test]
fn pollerr_on_a_pipe_whose_reader_closed() {
    let (reader, writer) = pipe();
    drop(reader);
    let (ready, revents) = poll_one(writer.as_raw_fd(), libc::POLLOUT, WAIT_MS);
    assert_eq!(
        (ready, revents),
        (1, libc::POLLOUT | libc::POLLERR),
        "{}",
        names(revents)
    );
}

/// A number that is certainly not open: made with F_DUPFD at or above `floor`, far above the
/// numbers tests use at the same time, then closed. (Closing a low number could race another
/// test thread's open; each caller passes its own floor so they cannot race each other.)
fn closed_number(floor: RawFd) -> RawFd {
    let (reader, _writer) = pipe();
    // SAFETY: F_DUPFD_CLOEXEC takes an int and returns a new descriptor we then own.
    let high = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_DUPFD_CLOEXEC, floor) };
    assert!(high >= floor, "F_DUPFD: {}", std::io::Error::last_os_error());
    // SAFETY: `high` was just returned by fcntl and nothing else owns it.
    drop(unsafe { OwnedFd::from_raw_fd(high) });
    high
}

#[test]
fn pollnval_for_a_closed_number_is_counted_and_returns_at_once() {
    let closed = closed_number(900);
    let (idle, _writer) = pipe(); // a reader whose writer is alive but silent: nothing to report
    let mut entries = [
        libc::pollfd {
            fd: idle.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: closed,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: a valid array of two pollfds, alive and writable for the call.
    let ready = unsafe { libc::poll(entries.as_mut_ptr(), 2, WAIT_MS) };
    assert_eq!(ready, 1, "the closed number counts as ready, so poll does not wait");
    assert_eq!(entries[0].revents, 0);
    assert_eq!(entries[1].revents, libc::POLLNVAL, "{}", names(entries[1].revents));
    // Asking nothing at all still gets POLLNVAL.
    assert_eq!(poll_one(closed, 0, 0), (1, libc::POLLNVAL));
}

#[test]
fn a_negative_fd_is_skipped_not_invalid() {
    // The C idiom for "ignore this slot" (nix's PollFd cannot express it: nix#2254).
    assert_eq!(poll_one(-1, libc::POLLIN, 0), (0, 0));
}

#[test]
fn revents_holds_only_asked_bits_plus_err_hup_nval() {
    let asks = [
        0,
        libc::POLLIN,
        libc::POLLOUT,
        libc::POLLPRI,
        libc::POLLIN | libc::POLLRDHUP,
        libc::POLLIN | libc::POLLOUT,
        libc::POLLRDNORM | libc::POLLWRNORM,
    ];
    // Situations that make many bits true at once.
    let (mut client, data_waiting) = tcp_pair();
    client.write_all(b"x").expect("write");
    client.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(
        poll_one(data_waiting.as_raw_fd(), libc::POLLIN | libc::POLLRDHUP, WAIT_MS).0,
        1
    );
    let (_peer, fully_shut) = {
        let (peer, ours) = tcp_pair();
        peer.shutdown(Shutdown::Write).expect("shutdown");
        ours.shutdown(Shutdown::Write).expect("shutdown");
        assert_eq!(poll_one(ours.as_raw_fd(), libc::POLLRDHUP, WAIT_MS).0, 1);
        (peer, ours)
    };
    let refused = refused_connect();
    let (reader, writer) = pipe();
    drop(reader);
    let closed = closed_number(950);
    let situations: [(&str, RawFd); 5] = [
        ("data and FIN waiting", data_waiting.as_raw_fd()),
        ("both directions shut", fully_shut.as_raw_fd()),
        ("refused connect", refused.as_raw_fd()),
        ("pipe with no reader", writer.as_raw_fd()),
        ("closed number", closed),
    ];
    for (what, fd) in situations {
        // What the descriptor would report if asked everything.
        let everything = libc::POLLIN
            | libc::POLLPRI
            | libc::POLLOUT
            | libc::POLLRDNORM
            | libc::POLLWRNORM
            | libc::POLLRDBAND
            | libc::POLLWRBAND
            | libc::POLLRDHUP;
        let (_, all) = poll_one(fd, everything, 0);
        assert_ne!(all, 0, "{what}: something must be true");
        for events in asks {
            let (_, revents) = poll_one(fd, events, 0);
            assert_eq!(
                revents & !(events | ALWAYS),
                0,
                "{what}: asked {}, got {}",
                names(events),
                names(revents)
            );
            // ... and exactly the asked part of the full answer, plus the unmaskable bits.
            assert_eq!(
                revents,
                all & (events | ALWAYS),
                "{what}: asked {}, got {}",
                names(events),
                names(revents)
            );
        }
    }
    // POLLHUP and POLLERR come even with events = 0.
    assert_eq!(poll_one(fully_shut.as_raw_fd(), 0, 0), (1, libc::POLLHUP));
    assert_eq!(poll_one(writer.as_raw_fd(), 0, 0), (1, libc::POLLERR));
}

#[test]
fn a_timeout_returns_0_and_clears_revents() {
    let (_client, server) = tcp_pair();
    let mut entry = [libc::pollfd {
        fd: server.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0x7fff, // garbage in: the kernel overwrites it
    }];
    // SAFETY: a valid array of one pollfd, alive and writable for the call.
    let ready = unsafe { libc::poll(entry.as_mut_ptr(), 1, 20) };
    assert_eq!(ready, 0, "nobody sent anything: the timeout ran out");
    assert_eq!(entry[0].revents, 0, "revents is an output only");
}

#[test]
fn a_sub_millisecond_timeout_becomes_0() {
    let timeout = PollTimeout::try_from(Duration::from_micros(900)).expect("fits");
    assert_eq!(
        i32::from(timeout),
        0,
        "900 µs rounds down to 0 ms: poll returns at once"
    );
    let timeout = PollTimeout::try_from(Duration::from_micros(1999)).expect("fits");
    assert_eq!(i32::from(timeout), 1, "rounds down, never up");
}

#[test]
fn poll_has_no_fd_setsize_limit() {
    // select's bitmaps stop at FD_SETSIZE (1024); a pollfd names its descriptor as a plain int.
    const PAST_FD_SETSIZE: RawFd = 1100;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we pass, which lives for the call.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    let needed = PAST_FD_SETSIZE as libc::rlim_t + 16;
    if limit.rlim_cur < needed {
        assert!(
            limit.rlim_max >= needed,
            "RLIMIT_NOFILE hard limit {} is below {needed}: cannot hold a descriptor past 1024 here",
            limit.rlim_max
        );
        limit.rlim_cur = needed;
        // SAFETY: setrlimit reads one valid rlimit; raising the soft limit up to the hard one is
        // always allowed and harms no other test.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    }
    let (reader, writer) = pipe();
    // SAFETY: F_DUPFD_CLOEXEC takes an int and returns a new descriptor, which we then own.
    let high = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_DUPFD_CLOEXEC, PAST_FD_SETSIZE) };
    assert!(high >= PAST_FD_SETSIZE, "F_DUPFD: {}", std::io::Error::last_os_error());
    // SAFETY: `high` was just returned by fcntl and nothing else owns it.
    let high = unsafe { OwnedFd::from_raw_fd(high) };
    nix::unistd::write(&writer, b"x").expect("write");
    let (ready, revents) = poll_one(high.as_raw_fd(), libc::POLLIN, WAIT_MS);
    assert_eq!(
        (ready, revents),
        (1, libc::POLLIN),
        "fd {}: {}",
        high.as_raw_fd(),
        names(revents)
    );
}
