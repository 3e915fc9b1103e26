//! What epoll reports, and when (lessons 14 and 15).
//!
//! - level-triggered: a socket with unread bytes is reported on every wait until drained;
//! - edge-triggered (EPOLLET): reported once; the bytes left make no new event, new bytes do;
//! - EPOLLONESHOT: reported once, then silent (even for new bytes) until EPOLL_CTL_MOD re-arms;
//! - the entry belongs to the open file: after `dup` and `close` of the registered descriptor it
//!   is still reported, under the closed number; DEL by either number fails; DEL before the
//!   close, or closing the dup too, removes it;
//! - EPOLL_CTL_ADD twice gives EEXIST; EPOLL_CTL_DEL of a descriptor never added gives ENOENT.
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
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
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
