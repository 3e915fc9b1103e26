//! What epoll reports, and when (lessons 14 and 15).
//!
//! - level-triggered: a socket with unread bytes is reported on every wait until drained;
//! - edge-triggered (EPOLLET): reported once; the bytes left make no new event, new bytes do;
//! - EPOLLONESHOT: reported once, then silent (even for new bytes) until EPOLL_CTL_MOD re-arms;
//! - the entry belongs to the open file: after `dup` and `close` of the registered descriptor it
//!   is still reported, under the closed number; DEL by either number fails; DEL before the
//!   close, or closing the dup too, removes it;
//! - EPOLL_CTL_ADD twice gives EEXIST; EPOLL_CTL_DEL of a descriptor never added gives ENOENT;
//! - the kernel adds EPOLLERR and EPOLLHUP to every entry, and reports a hang-up unasked;
//! - a level-triggered EPOLLOUT is reported on every wait while the send buffer has room;
//! - a one-shot entry, once fired, listens for nothing (`/proc/self/fdinfo` shows it), not even
//!   the peer's end of file;
//! - an edge-triggered listener reports connections that wait together once;
//! - an edge-triggered reader that stops at a short read does not hear of an end of file that
//!   came with the bytes;
//! - an epoll descriptor cannot be mapped: epoll_wait copies the events into the caller's array.
//!
//! The sockets are AF_UNIX stream pairs: a write has put its bytes in the peer's receive queue
//! by the time it returns, so "the bytes are there" needs no waiting and every `epoll_wait`
//! here uses timeout 0. (Over TCP loopback the kernel does the same, a moment later; the
//! lessons' demos show it.)

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use socklab::lessons::stage::epoll_interest;
use socklab::trace::{self, Mode};

/// Two tests close descriptors and then name the closed number; with the tests of this file
/// running one at a time, no other test of this process can take that number meanwhile.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A connected pair: (the end epoll watches, the end that writes to it).
fn pair() -> (OwnedFd, OwnedFd) {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )
    .expect("socketpair")
}

fn epoll() -> Epoll {
    Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll_create1")
}

fn watch(ep: &Epoll, fd: &OwnedFd, flags: EpollFlags) {
    ep.add(fd.as_fd(), EpollEvent::new(flags, fd.as_raw_fd() as u64))
        .expect("EPOLL_CTL_ADD");
}

/// One epoll_wait with timeout 0: the `data` of each event returned (the registered number).
fn ready(ep: &Epoll) -> Vec<u64> {
    let mut events = [EpollEvent::empty(); 8];
    let n = ep.wait(&mut events, EpollTimeout::ZERO).expect("epoll_wait");
    events[..n].iter().map(EpollEvent::data).collect()
}

fn write(fd: &OwnedFd, bytes: &[u8]) {
    assert_eq!(send(fd.as_raw_fd(), bytes, MsgFlags::empty()), Ok(bytes.len()));
}

/// Reads at most `max` bytes; returns how many came.
fn read(fd: &OwnedFd, max: usize) -> usize {
    let mut buf = vec![0u8; max];
    recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("recv")
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    // The interest list is read with the lessons' own /proc reader, which traces nothing here.
    trace::set_mode(Mode::Off);
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// One epoll_wait with timeout 0: `(data, events)` of each event returned.
fn ready_events(ep: &Epoll) -> Vec<(u64, EpollFlags)> {
    let mut events = [EpollEvent::empty(); 8];
    let n = ep.wait(&mut events, EpollTimeout::ZERO).expect("epoll_wait");
    events[..n].iter().map(|e| (e.data(), e.events())).collect()
}

/// The kernel's interest list entry for `fd`, as `/proc/self/fdinfo` shows it (strace's names).
fn entry(ep: &Epoll, fd: &impl AsRawFd) -> Option<String> {
    epoll_interest(&ep.0)
        .into_iter()
        .find(|(number, _)| *number == fd.as_raw_fd())
        .map(|(_, events)| events)
}

#[test]
fn level_triggered_reports_on_every_wait_while_bytes_remain() {
    let _guard = lock();
    let (watched, peer) = pair();
    let ep = epoll();
    watch(&ep, &watched, EpollFlags::EPOLLIN);
    let me = watched.as_raw_fd() as u64;
    assert_eq!(ready(&ep), Vec::<u64>::new(), "nothing written yet");
    write(&peer, b"abc");
    // One byte per wait: three waits report it, and reading nothing in between changes nothing.
    assert_eq!(ready(&ep), [me]);
    assert_eq!(ready(&ep), [me], "reported again with no read in between");
    for left in [2, 1, 0] {
        assert_eq!(read(&watched, 1), 1);
        let want: &[u64] = if left > 0 { &[me] } else { &[] };
        assert_eq!(ready(&ep), want, "{left} byte(s) left unread");
    }
}

#[test]
fn edge_triggered_reports_once_until_new_bytes_arrive() {
    let _guard = lock();
    let (watched, peer) = pair();
    let ep = epoll();
    watch(&ep, &watched, EpollFlags::EPOLLIN | EpollFlags::EPOLLET);
    let me = watched.as_raw_fd() as u64;
    write(&peer, b"abc");
    assert_eq!(ready(&ep), [me], "new bytes: one event");
    assert_eq!(ready(&ep), Vec::<u64>::new(), "the same bytes, unread: no second event");
    assert_eq!(read(&watched, 1), 1);
    assert_eq!(
        ready(&ep),
        Vec::<u64>::new(),
        "two bytes wait, yet nothing: no new edge"
    );
    write(&peer, b"d");
    assert_eq!(ready(&ep), [me], "new bytes: a new edge");
    assert_eq!(ready(&ep), Vec::<u64>::new());
    // Drained to EAGAIN: three bytes were left, they all come now, then the kernel says EAGAIN.
    assert_eq!(read(&watched, 64), 3);
    let mut buf = [0u8; 8];
    assert_eq!(
        recv(watched.as_raw_fd(), &mut buf, MsgFlags::empty()),
        Err(Errno::EAGAIN)
    );
    assert_eq!(ready(&ep), Vec::<u64>::new());
}

#[test]
fn oneshot_is_silent_until_rearmed_with_mod() {
    let _guard = lock();
    let (watched, peer) = pair();
    let ep = epoll();
    let oneshot = EpollFlags::EPOLLIN | EpollFlags::EPOLLONESHOT;
    watch(&ep, &watched, oneshot);
    let me = watched.as_raw_fd() as u64;
    write(&peer, b"abc");
    assert_eq!(ready(&ep), [me], "armed: reported");
    assert_eq!(
        ready(&ep),
        Vec::<u64>::new(),
        "disarmed: bytes wait, nothing is reported"
    );
    write(&peer, b"more");
    assert_eq!(
        ready(&ep),
        Vec::<u64>::new(),
        "disarmed: not even new bytes are reported"
    );
    let mut rearm = EpollEvent::new(oneshot, me);
    ep.modify(watched.as_fd(), &mut rearm).expect("EPOLL_CTL_MOD");
    assert_eq!(ready(&ep), [me], "re-armed with bytes waiting: reported at once");
    assert_eq!(ready(&ep), Vec::<u64>::new(), "and disarmed again");
    // The entry stayed in the interest list all along: ADD says so.
    assert_eq!(
        ep.add(watched.as_fd(), EpollEvent::new(oneshot, me)),
        Err(Errno::EEXIST)
    );
}

/// epoll_ctl(DEL) by a bare number, which may be closed: what nix's `delete` cannot express,
/// since it takes a live descriptor.
fn del_raw(ep: &Epoll, fd: RawFd) -> Result<(), Errno> {
    // SAFETY: EPOLL_CTL_DEL ignores the event pointer (NULL is allowed since Linux 2.6.9); the
    // kernel checks `fd` itself and answers EBADF if it is not open.
    let r = unsafe { libc::epoll_ctl(ep.0.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    Errno::result(r).map(drop)
}

#[test]
fn a_dup_keeps_a_closed_descriptors_entry_alive() {
    let _guard = lock();
    let (watched, peer) = pair();
    let ep = epoll();
    watch(&ep, &watched, EpollFlags::EPOLLIN);
    let original = watched.as_raw_fd();
    let copy = watched.try_clone().expect("dup");
    drop(watched); // close(original)

    write(&peer, b"x");
    assert_eq!(
        ready(&ep),
        [original as u64],
        "reported, under the number that was closed"
    );
    assert_eq!(
        del_raw(&ep, original),
        Err(Errno::EBADF),
        "the closed number names nothing"
    );
    assert_eq!(
        ep.delete(copy.as_fd()),
        Err(Errno::ENOENT),
        "the entry is keyed by (open file, original number): the dup's number finds nothing"
    );
    assert_eq!(ready(&ep), [original as u64], "still there");

    // Closing the last descriptor of the open file removes the entry at last, unread byte and all.
    drop(copy);
    assert_eq!(
        ready(&ep),
        Vec::<u64>::new(),
        "the open file is gone, and its entry with it"
    );
}

#[test]
fn del_before_close_removes_the_entry_even_with_a_dup_open() {
    let _guard = lock();
    let (watched, peer) = pair();
    let ep = epoll();
    watch(&ep, &watched, EpollFlags::EPOLLIN);
    ep.delete(watched.as_fd()).expect("EPOLL_CTL_DEL");
    let copy = watched.try_clone().expect("dup");
    drop(watched);
    write(&peer, b"x");
    assert_eq!(
        ready(&ep),
        Vec::<u64>::new(),
        "removed before the close: the dup's bytes are not reported"
    );
    assert_eq!(read(&copy, 8), 1, "the bytes were there all the same");
}

#[test]
fn closing_the_only_descriptor_removes_the_entry() {
    let _guard = lock();
    let (watched, peer) = pair();
    let ep = epoll();
    watch(&ep, &watched, EpollFlags::EPOLLIN);
    write(&peer, b"x");
    assert_eq!(ready(&ep).len(), 1);
    drop(watched);
    assert_eq!(ready(&ep), Vec::<u64>::new(), "closed: no longer in the interest list");
}

#[test]
fn adding_twice_is_eexist_and_deleting_a_stranger_is_enoent() {
    let _guard = lock();
    let (watched, stranger) = pair();
    let ep = epoll();
    watch(&ep, &watched, EpollFlags::EPOLLIN);
    let event = EpollEvent::new(EpollFlags::EPOLLIN, watched.as_raw_fd() as u64);
    assert_eq!(ep.add(watched.as_fd(), event), Err(Errno::EEXIST));
    assert_eq!(ep.delete(stranger.as_fd()), Err(Errno::ENOENT));
    let mut event = EpollEvent::new(EpollFlags::EPOLLIN, 0);
    assert_eq!(
        ep.modify(stranger.as_fd(), &mut event),
        Err(Errno::ENOENT),
        "MOD, too, needs an entry"
    );
    assert_eq!(ep.delete(watched.as_fd()), Ok(()));
    assert_eq!(ep.delete(watched.as_fd()), Err(Errno::ENOENT), "deleted once already");
}

#[test]
fn maxevents_limits_one_wait_not_what_is_watched() {
    let _guard = lock();
    let (first, first_peer) = pair();
    let (second, second_peer) = pair();
    let ep = epoll();
    watch(&ep, &first, EpollFlags::EPOLLIN);
    watch(&ep, &second, EpollFlags::EPOLLIN);
    write(&first_peer, b"1");
    write(&second_peer, b"2");
    let mut one = [EpollEvent::empty(); 1];
    let mut seen = Vec::new();
    for _ in 0..2 {
        assert_eq!(
            ep.wait(&mut one, EpollTimeout::ZERO),
            Ok(1),
            "room for one event per call"
        );
        seen.push(one[0].data());
        // Read it, so that a level-triggered entry is not simply reported again.
        let fd = if one[0].data() == first.as_raw_fd() as u64 {
            &first
        } else {
            &second
        };
        assert_eq!(read(fd, 8), 1);
    }
    seen.sort_unstable();
    let mut want = vec![first.as_raw_fd() as u64, second.as_raw_fd() as u64];
    want.sort_unstable();
    assert_eq!(seen, want, "the second ready descriptor came with the next call");
}

#[test]
fn the_kernel_adds_epollerr_and_epollhup_and_reports_a_hang_up_unasked() {
    let _guard = lock();
    let (asked_in, peer_in) = pair();
    let (asked_nothing, peer_nothing) = pair();
    let ep = epoll();
    watch(&ep, &asked_in, EpollFlags::EPOLLIN);
    watch(&ep, &asked_nothing, EpollFlags::empty());
    assert_eq!(entry(&ep, &asked_in).as_deref(), Some("EPOLLIN|EPOLLERR|EPOLLHUP"));
    assert_eq!(entry(&ep, &asked_nothing).as_deref(), Some("EPOLLERR|EPOLLHUP"));
    drop(peer_in);
    drop(peer_nothing);
    let mut got = ready_events(&ep);
    got.sort_by_key(|(data, _)| *data);
    let mut want = vec![
        (asked_in.as_raw_fd() as u64, EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP),
        (asked_nothing.as_raw_fd() as u64, EpollFlags::EPOLLHUP),
    ];
    want.sort_by_key(|(data, _)| *data);
    assert_eq!(
        got, want,
        "the peer gone: a hang-up for both, asked for or not; EPOLLIN only where asked"
    );
}

#[test]
fn level_triggered_epollout_is_reported_on_every_wait_while_there_is_room() {
    let _guard = lock();
    let (watched, _peer) = pair();
    let ep = epoll();
    watch(&ep, &watched, EpollFlags::EPOLLOUT);
    let me = watched.as_raw_fd() as u64;
    for wait in 1..=3 {
        assert_eq!(ready(&ep), [me], "wait {wait}: nothing written, room all the same");
    }
    // Fill it: the peer reads nothing, so the buffers fill up until the kernel says EAGAIN.
    let chunk = [0u8; 4096];
    let mut filled = false;
    for _ in 0..100_000 {
        match send(watched.as_raw_fd(), &chunk, MsgFlags::empty()) {
            Ok(_) => {}
            Err(Errno::EAGAIN) => {
                filled = true;
                break;
            }
            Err(error) => panic!("send: {error}"),
        }
    }
    assert!(filled, "the send buffer never filled");
    assert_eq!(ready(&ep), Vec::<u64>::new(), "no room: no EPOLLOUT");
}

#[test]
fn oneshot_disarms_the_entry_in_the_kernel() {
    let _guard = lock();
    let (watched, peer) = pair();
    let ep = epoll();
    let oneshot = EpollFlags::EPOLLIN | EpollFlags::EPOLLONESHOT;
    watch(&ep, &watched, oneshot);
    let me = watched.as_raw_fd() as u64;
    assert_eq!(
        entry(&ep, &watched).as_deref(),
        Some("EPOLLIN|EPOLLERR|EPOLLHUP|EPOLLONESHOT")
    );
    write(&peer, b"abc");
    assert_eq!(ready(&ep), [me]);
    assert_eq!(
        entry(&ep, &watched).as_deref(),
        Some("EPOLLONESHOT"),
        "fired: the entry stays, listening for nothing"
    );
    drop(peer);
    assert_eq!(
        ready(&ep),
        Vec::<u64>::new(),
        "disarmed: not even the peer's end of file is reported"
    );
    let mut rearm = EpollEvent::new(oneshot, me);
    ep.modify(watched.as_fd(), &mut rearm).expect("EPOLL_CTL_MOD");
    assert_eq!(
        ready_events(&ep),
        [(me, EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP)],
        "re-armed: the bytes and the hang-up, at once"
    );
}

/// A TCP listener on loopback, non-blocking, and its port.
fn tcp_listener() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("O_NONBLOCK");
    let port = listener.local_addr().expect("local_addr").port();
    (listener, port)
}

/// How many finished connections wait in `listener`'s accept queue: a listener's `tcp_info`
/// gives it as `tcpi_unacked` (what `ss -lnt` shows as Recv-Q).
fn accept_queue(listener: &impl AsRawFd) -> u32 {
    // SAFETY: tcp_info is plain data; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "getsockopt TCP_INFO");
    info.tcpi_unacked
}

/// Waits (a bounded number of short naps) until `done` holds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..5000 {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("{what} did not happen within 5 s");
}

#[test]
fn an_edge_triggered_listener_reports_waiting_connections_once() {
    let _guard = lock();
    let (listener, port) = tcp_listener();
    let ep = epoll();
    let me = listener.as_raw_fd() as u64;
    ep.add(
        listener.as_fd(),
        EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, me),
    )
    .expect("EPOLL_CTL_ADD");
    let _first = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let _second = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    eventually("two connections in the accept queue", || accept_queue(&listener) == 2);
    assert_eq!(ready(&ep), [me], "two connections wait: one event");
    assert_eq!(ready(&ep), Vec::<u64>::new());
    listener.accept().expect("the first accept");
    assert_eq!(
        ready(&ep),
        Vec::<u64>::new(),
        "one connection still waits, and nothing says so"
    );
    listener.accept().expect("the second accept: it was there all along");
    assert_eq!(
        listener.accept().map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::WouldBlock),
        "drained: EAGAIN"
    );
}

#[test]
fn a_short_read_leaves_an_end_of_file_that_came_with_the_bytes_unreported() {
    let _guard = lock();
    let (listener, port) = tcp_listener();
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    eventually("the connection in the accept queue", || accept_queue(&listener) == 1);
    let (conn, _) = listener.accept().expect("accept");
    conn.set_nonblocking(true).expect("O_NONBLOCK");
    let ep = epoll();
    let me = conn.as_raw_fd() as u64;
    let edge = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
    ep.add(conn.as_fd(), EpollEvent::new(edge, me)).expect("EPOLL_CTL_ADD");
    std::io::Write::write_all(&mut client, b"abc").expect("write");
    client.shutdown(std::net::Shutdown::Write).expect("shutdown");
    // Wait until the FIN is there too (poll looks without touching epoll's edge).
    eventually("the FIN after the bytes", || {
        let mut fds = [libc::pollfd {
            fd: conn.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        }];
        // SAFETY: one valid pollfd, for one call.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) == 1 }
    });
    assert_eq!(
        ready_events(&ep),
        [(me, EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP)],
        "the bytes and the FIN: one event"
    );
    let mut buf = [0u8; 64];
    assert_eq!(
        recv(conn.as_raw_fd(), &mut buf, MsgFlags::empty()),
        Ok(3),
        "a short read: the bytes are gone"
    );
    assert_eq!(
        ready(&ep),
        Vec::<u64>::new(),
        "no new edge: nothing tells of the end of file"
    );
    assert_eq!(
        recv(conn.as_raw_fd(), &mut buf, MsgFlags::empty()),
        Ok(0),
        "yet it was there: the next read returns 0"
    );
}

#[test]
fn an_epoll_descriptor_cannot_be_mapped() {
    let _guard = lock();
    let (watched, peer) = pair();
    let ep = epoll();
    watch(&ep, &watched, EpollFlags::EPOLLIN);
    // SAFETY: a request to map the epoll descriptor; the kernel refuses it, nothing is mapped.
    let mapped = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            ep.0.as_raw_fd(),
            0,
        )
    };
    assert_eq!(mapped, libc::MAP_FAILED, "an epoll instance has no memory to map");
    assert_eq!(Errno::last(), Errno::ENODEV);
    // What epoll_wait does instead: it writes the ready events into the array it was given.
    write(&peer, b"x");
    let mut events = [EpollEvent::new(EpollFlags::empty(), u64::MAX); 4];
    assert_eq!(ep.wait(&mut events, EpollTimeout::ZERO), Ok(1));
    assert_eq!(
        events[0].data(),
        watched.as_raw_fd() as u64,
        "copied into our own array"
    );
    assert_eq!(events[1].data(), u64::MAX, "and only as many as were ready");
}
