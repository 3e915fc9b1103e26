//! The thundering herd, counted by the kernel itself (lesson 07).
//!
//! N processes share one listening socket. If they sleep in a blocking accept, one connection
//! wakes exactly one of them: the others are not even scheduled (their voluntary context-switch
//! count in /proc does not move), and each takes one of the later connections, in the order
//! they went to sleep. If they sleep in
//! poll on a non-blocking listener instead, one connection wakes several of them, one accept
//! wins, and the others get EAGAIN.
//!
//! The children are forked from this (multi-threaded) test process, so they only make
//! async-signal-safe calls (accept, poll, read, write, _exit) and never return into Rust code.
//! They report to the test through a pipe: one record per event.
//! The plumbing on both sides (forking, the report pipe, /proc) is shared with herd_epoll.rs, in
//! util/herd.rs.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

use crate::util::herd::{
    ACCEPTED, AGAIN, Children, FORKING, WOKE, context_switches, exit_now, no_report_waiting, read_report, report,
    woke_then_accept,
};

/// How many processes share the listener.
const SLEEPERS: usize = 4;

#[test]
fn blocking_accept_wakes_exactly_one_sleeper_per_connection() {
    let _one_at_a_time = FORKING.lock().unwrap_or_else(|e| e.into_inner());
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("local_addr").port();
    let (reports, report_end) = nix::unistd::pipe().expect("pipe");
    let children = Children::fork(SLEEPERS, |index| {
        accept_once_then_hold(listener.as_raw_fd(), report_end.as_raw_fd(), index)
    });
    drop(report_end);

    let accepts = accept_syscalls();
    children.wait_until_all_blocked_in(&accepts);
    let before: Vec<u64> = children.pids.iter().map(|&p| context_switches(p)).collect();

    let first = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    let (event, winner) = read_report(&reports);
    assert_eq!(event, ACCEPTED);
    let others: Vec<usize> = (0..SLEEPERS).filter(|&i| i != winner).collect();

    // The winner left accept and now sleeps in read on its connection: it was woken.
    children.wait_until_blocked_in(winner, &[libc::SYS_read]);
    assert!(context_switches(children.pids[winner]) > before[winner]);
    // The others are still in accept and were never scheduled: exclusive wake-up.
    for &i in &others {
        children.wait_until_blocked_in(i, &accepts);
        assert_eq!(
            context_switches(children.pids[i]),
            before[i],
            "child {i} was woken by a connection that child {winner} accepted"
        );
    }
    assert!(
        no_report_waiting(&reports),
        "a second accept returned for one connection"
    );

    // Each of the others is still there, and takes exactly one of the next connections.
    let mut later = Vec::new();
    let mut takers = Vec::new();
    for _ in &others {
        later.push(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect"));
        let (event, who) = read_report(&reports);
        assert_eq!(event, ACCEPTED);
        takers.push(who);
    }
    takers.sort_unstable();
    assert_eq!(takers, others, "every other sleeper took exactly one later connection");

    drop(first);
    drop(later);
    children.reap_all_exited_zero();
}

/// The sleepers in accept queue up in the order they went to sleep, and each connection wakes
/// the one at the head: the one that has waited longest. Here they are forked one at a time,
/// each asleep before the next starts, so the queue's order is known.
#[test]
fn blocking_accept_wakes_the_longest_sleeper_first() {
    let _one_at_a_time = FORKING.lock().unwrap_or_else(|e| e.into_inner());
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("local_addr").port();
    let (reports, report_end) = nix::unistd::pipe().expect("pipe");
    let accepts = accept_syscalls();
    let mut pids = Vec::new();
    for index in 0..SLEEPERS {
        let mut child = Children::fork(1, |_| {
            accept_once_then_hold(listener.as_raw_fd(), report_end.as_raw_fd(), index)
        });
        child.wait_until_blocked_in(0, &accepts);
        pids.append(&mut child.pids);
    }
    let children = Children { pids };
    drop(report_end);

    let mut clients = Vec::new();
    let mut takers = Vec::new();
    for _ in 0..SLEEPERS {
        clients.push(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect"));
        let (event, who) = read_report(&reports);
        assert_eq!(event, ACCEPTED);
        takers.push(who);
    }
    assert_eq!(
        takers,
        (0..SLEEPERS).collect::<Vec<_>>(),
        "each connection went to the sleeper that had waited longest"
    );
    drop(clients);
    children.reap_all_exited_zero();
}

#[test]
fn poll_on_a_shared_listener_wakes_many_for_one_connection() {
    let _one_at_a_time = FORKING.lock().unwrap_or_else(|e| e.into_inner());
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    listener.set_nonblocking(true).expect("O_NONBLOCK");
    let port = listener.local_addr().expect("local_addr").port();
    let (reports, report_end) = nix::unistd::pipe().expect("pipe");
    let children = Children::fork(SLEEPERS, |index| {
        poll_then_accept(listener.as_raw_fd(), report_end.as_raw_fd(), index)
    });
    drop(report_end);

    let polls = poll_syscalls();
    children.wait_until_all_blocked_in(&polls);
    let before: Vec<u64> = children.pids.iter().map(|&p| context_switches(p)).collect();

    let client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    let mut events = vec![read_report(&reports)];
    children.wait_until_settled(&polls);
    while !no_report_waiting(&reports) {
        events.push(read_report(&reports));
    }

    let returned: Vec<usize> = events.iter().filter(|e| e.0 == WOKE).map(|e| e.1).collect();
    let woke = children.woken(&returned, &polls, &before);
    let accepted = events.iter().filter(|e| e.0 == ACCEPTED).count();
    let again = events.iter().filter(|e| e.0 == AGAIN).count();
    eprintln!(
        "{woke} of {SLEEPERS} woke ({} left poll), {accepted} accepted, {again} got EAGAIN",
        returned.len()
    );
    assert!(woke >= 2, "one connection woke only {woke} of {SLEEPERS} pollers");
    assert_eq!(accepted, 1, "exactly one accept gets the connection");
    assert_eq!(again, returned.len() - 1, "every other child that left poll got EAGAIN");

    drop(client);
    children.kill_and_reap();
}

// ---------------------------------------------------------------------------------------------
// The children. Only async-signal-safe calls from here to _exit.
// ---------------------------------------------------------------------------------------------

/// Sleep in a blocking accept; report; then sleep in read on the connection until it closes.
fn accept_once_then_hold(listener: RawFd, reports: RawFd, index: usize) -> ! {
    // SAFETY: accept with NULL address pointers is valid; the listener is open in this child.
    let conn = unsafe { libc::accept(listener, std::ptr::null_mut(), std::ptr::null_mut()) };
    if conn < 0 {
        exit_now(2);
    }
    report(reports, ACCEPTED, index);
    let mut buf = [0u8; 64];
    // SAFETY: `buf` is valid for 64 bytes; conn is the descriptor accept returned.
    while unsafe { libc::read(conn, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    exit_now(0)
}

/// Sleep in poll on the (non-blocking) listener; report the wake-up; try accept once.
fn poll_then_accept(listener: RawFd, reports: RawFd, index: usize) -> ! {
    let mut ready = libc::pollfd {
        fd: listener,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; a negative timeout waits until the listener is readable.
    if unsafe { libc::poll(&mut ready, 1, -1) } != 1 {
        exit_now(2);
    }
    woke_then_accept(listener, reports, index)
}

/// glibc's accept may arrive as accept or accept4; poll as poll or ppoll.
fn accept_syscalls() -> Vec<i64> {
    vec![libc::SYS_accept, libc::SYS_accept4]
}

fn poll_syscalls() -> Vec<i64> {
    vec![
        #[cfg(target_arch = "x86_64")]
        libc::SYS_poll,
        libc::SYS_ppoll,
    ]
}
