//! select(2) rewrites its arguments in place (lesson 09): the read set comes back holding only
//! the ready descriptors, or nothing after a timeout; the timeval comes back holding the time
//! that was left, so a second call reusing it waits only for the rest, and a zeroed one does
//! not wait at all. Also: nfds is the highest descriptor plus one, end of file stays readable,
//! and glibc's select arrives in the kernel as pselect6.

mod util;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::select::{FdSet, select};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use nix::sys::time::{TimeVal, TimeValLike};

/// Two connected stream sockets: what is sent on one is readable on the other.
fn pair() -> (OwnedFd, OwnedFd) {
    socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).expect("socketpair")
}

fn members(set: &FdSet<'_>) -> Vec<i32> {
    set.fds(None).map(|fd| fd.as_raw_fd()).collect()
}

/// Runs `body` on a thread and fails the test if it has not returned within 10 s: a guard
/// against a select that blocks for ever, not a measurement.
fn within_ten_seconds<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(body());
    });
    result
        .recv_timeout(Duration::from_secs(10))
        .expect("select did not return: it blocked instead")
}

#[test]
fn the_read_set_comes_back_holding_only_the_ready_descriptors() {
    let (quiet, _quiet_peer) = pair();
    let (busy, busy_peer) = pair();
    send(busy_peer.as_raw_fd(), b"x", MsgFlags::empty()).expect("send");

    let mut readfds = FdSet::new();
    readfds.insert(quiet.as_fd());
    readfds.insert(busy.as_fd());
    let before = members(&readfds);
    let mut timeout = TimeVal::seconds(5);
    let ready = select(None, &mut readfds, None, None, &mut timeout).expect("select");

    assert_eq!(before.len(), 2);
    assert_eq!(ready, 1, "one descriptor was ready");
    assert!(readfds.contains(busy.as_fd()), "the ready descriptor stays in the set");
    assert!(
        !readfds.contains(quiet.as_fd()),
        "the descriptor that was not ready was removed"
    );
    assert_eq!(members(&readfds), vec![busy.as_raw_fd()]);
}

#[test]
fn after_a_timeout_the_set_is_empty_and_the_timeval_zero() {
    let (a, _a_peer) = pair();
    let (b, _b_peer) = pair();
    let mut readfds = FdSet::new();
    readfds.insert(a.as_fd());
    readfds.insert(b.as_fd());
    let mut timeout = TimeVal::milliseconds(50);
    let ready = select(None, &mut readfds, None, None, &mut timeout).expect("select");
    assert_eq!(ready, 0, "nothing was ready: a timeout");
    assert!(members(&readfds).is_empty(), "a timed-out set comes back empty");
    assert_eq!(timeout.num_microseconds(), 0, "no time left");
}

#[test]
fn the_timeval_holds_the_time_left_and_a_second_call_gets_only_that() {
    let (sock, peer) = pair();
    let armed = TimeVal::milliseconds(300);
    let mut timeout = armed;
    send(peer.as_raw_fd(), b"x", MsgFlags::empty()).expect("send");
    {
        let mut readfds = FdSet::new();
        readfds.insert(sock.as_fd());
        assert_eq!(select(None, &mut readfds, None, None, &mut timeout).expect("select"), 1);
    }
    let left = timeout.num_microseconds();
    assert!(
        left < armed.num_microseconds(),
        "select wrote back less than it was given: {left} us"
    );
    assert!(
        left > 0,
        "it returned early (data was waiting), so some time is left: {left} us"
    );

    // Drain the byte, then wait again with the same timeval: it waits for the rest, runs out,
    // and leaves 0.
    let mut buf = [0u8; 1];
    assert_eq!(recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("recv"), 1);
    let mut readfds = FdSet::new();
    readfds.insert(sock.as_fd());
    assert_eq!(select(None, &mut readfds, None, None, &mut timeout).expect("select"), 0);
    assert_eq!(timeout.num_microseconds(), 0, "the rest ran out too");
    assert!(members(&readfds).is_empty());
}

#[test]
fn reusing_a_zeroed_timeval_returns_at_once() {
    let (sock, peer) = pair();
    let ready = within_ten_seconds(move || {
        let mut timeout = TimeVal::milliseconds(20);
        let mut readfds = FdSet::new();
        readfds.insert(sock.as_fd());
        let first = select(None, &mut readfds, None, None, &mut timeout).expect("select");
        assert_eq!((first, timeout.num_microseconds()), (0, 0));
        // Nothing will ever arrive (the peer stays open and silent); with time to wait this
        // call would never return. A zero timeval makes it look and return: a poll.
        let mut readfds = FdSet::new();
        readfds.insert(sock.as_fd());
        let second = select(None, &mut readfds, None, None, &mut timeout).expect("select");
        drop(sock);
        second
    });
    drop(peer);
    assert_eq!(ready, 0);
}

#[test]
fn nfds_is_the_highest_descriptor_plus_one() {
    let (sock, peer) = pair();
    send(peer.as_raw_fd(), b"x", MsgFlags::empty()).expect("send");
    let highest = sock.as_raw_fd();

    // nfds = highest: the kernel looks at descriptors 0..highest-1 and never sees ours.
    let mut readfds = FdSet::new();
    readfds.insert(sock.as_fd());
    let mut timeout = TimeVal::milliseconds(20);
    let short = select(highest, &mut readfds, None, None, &mut timeout).expect("select");
    assert_eq!(short, 0, "with nfds = {highest}, fd {highest} is not looked at");

    // nfds = highest + 1: now it is.
    let mut readfds = FdSet::new();
    readfds.insert(sock.as_fd());
    let mut timeout = TimeVal::seconds(5);
    let right = select(highest + 1, &mut readfds, None, None, &mut timeout).expect("select");
    assert_eq!(right, 1);
    assert!(readfds.contains(sock.as_fd()));
}

/// `left {tv_sec=4, tv_nsec=999996000}` -> 999996000.
fn left_nanos(line: &str) -> Option<u64> {
    let rest = &line[line.find("left {")?..];
    let digits = &rest[rest.find("tv_nsec=")? + "tv_nsec=".len()..];
    digits
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

#[test]
fn select_arrives_in_the_kernel_as_pselect6() {
    util::require("strace");
    let log = std::env::temp_dir().join(format!("socklab-select-{}.txt", std::process::id()));
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-e", "trace=select,pselect6", "-o"])
        .arg(&log)
        .arg(util::lesson_program(9))
        // json: the values as printed (plain replaces the time left with `{…}`).
        .env("SOCKLAB_TRACE", "json");
    let output = util::run_with_deadline(command, Duration::from_secs(60));
    let strace_text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(output.status.success(), "lesson 09 under strace failed");

    let kernel: Vec<&str> = strace_text.lines().filter(|l| l.contains("select")).collect();
    assert!(kernel.len() >= 5, "strace saw the demo's select calls: {kernel:?}");
    assert!(
        kernel.iter().all(|l| l.contains(" pselect6(")),
        "every select(3) is the pselect6 syscall: {kernel:?}"
    );

    // socklab makes the pselect6 call itself, as glibc does, so its trace prints the timespec
    // the kernel wrote back: the same nanoseconds strace shows, not a timeval's microseconds.
    let ours = String::from_utf8_lossy(&output.stdout);
    // (Sorted: the demo's processes print in their own order, strace in the kernel's.)
    let mut our_left: Vec<u64> = ours.lines().filter_map(left_nanos).collect();
    let mut their_left: Vec<u64> = kernel.iter().filter_map(|l| left_nanos(l)).collect();
    our_left.sort_unstable();
    their_left.sort_unstable();
    assert!(our_left.len() >= 4, "ours: {our_left:?}");
    assert_eq!(our_left, their_left, "the time left, ours and strace's");
    assert!(
        their_left.iter().any(|ns| ns % 1000 != 0),
        "nanoseconds: {their_left:?}"
    );
}

#[test]
fn end_of_file_stays_readable_on_every_call() {
    let (sock, peer) = pair();
    drop(peer);
    for _ in 0..3 {
        let mut readfds = FdSet::new();
        readfds.insert(sock.as_fd());
        let mut timeout = TimeVal::seconds(5);
        assert_eq!(select(None, &mut readfds, None, None, &mut timeout).expect("select"), 1);
        let mut buf = [0u8; 8];
        assert_eq!(
            recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("recv"),
            0,
            "end of file"
        );
    }
}
