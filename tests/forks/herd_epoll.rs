//! The thundering herd on epoll, and EPOLLEXCLUSIVE (lesson 15).
//!
//! N processes share one non-blocking listening socket, each with an epoll instance of its own
//! that watches it, each asleep in epoll_wait. One connection:
//! - without EPOLLEXCLUSIVE wakes several of them (every instance's entry is on the listener's
//!   wait queue, and the kernel wakes them all); one accept wins, the others get EAGAIN or,
//!   finding the listener no longer readable, go back to sleep;
//! - with EPOLLEXCLUSIVE wakes at least one; epoll(7) promises no more than "one or more", so
//!   the test asserts only that, and that the connection is accepted exactly once.
//!
//! Wake-ups are counted by the kernel's own numbers: a child that left epoll_wait reports so on
//! a pipe, and a child that was woken but went back to sleep has a higher
//! `voluntary_ctxt_switches` in /proc/PID/status than before the connection.
//!
//! The children are forked from this multi-threaded test process, so they only make raw
//! syscalls (epoll_create1, epoll_ctl, epoll_wait, accept, read, write, _exit) and never return
//! into Rust code.
//! The plumbing on both sides (forking, the report pipe, /proc) is shared with herd.rs, in
//! util/herd.rs.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use crate::util::herd::{
    ACCEPTED, AGAIN, Children, FORKING, WOKE, context_switches, exit_now, no_report_waiting, read_report,
    woke_then_accept,
};

/// How many processes share the listener.
const SLEEPERS: usize = 4;

/// What one connection did to the herd.
struct Outcome {
    woke: usize,
    accepted: usize,
    again: usize,
    left_epoll_wait: usize,
}

#[test]
fn without_epollexclusive_one_connection_wakes_several() {
    let outcome = one_connection(false);
    assert!(
        outcome.woke >= 2,
        "one connection woke only {} of {SLEEPERS} epoll_waits",
        outcome.woke
    );
    assert_eq!(outcome.accepted, 1, "exactly one accept gets the connection");
    assert_eq!(outcome.again, outcome.left_epoll_wait - 1);
}

#[test]
fn with_epollexclusive_at_least_one_wakes_and_one_accepts() {
    let outcome = one_connection(true);
    assert!(outcome.woke >= 1, "nobody woke for the connection");
    assert_eq!(outcome.accepted, 1, "the connection is accepted exactly once");
    assert_eq!(outcome.again, outcome.left_epoll_wait - 1);
}

#[test]
fn epollexclusive_is_for_add_only() {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll_create1");
    let exclusive = EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE;
    ep.add(listener.as_fd(), EpollEvent::new(exclusive, 0))
        .expect("ADD with EPOLLEXCLUSIVE");
    let mut event = EpollEvent::new(exclusive, 0);
    assert_eq!(
        ep.modify(listener.as_fd(), &mut event),
        Err(nix::errno::Errno::EINVAL),
        "MOD may not set EPOLLEXCLUSIVE"
    );
}

fn one_connection(exclusive: bool) -> Outcome {
    let _one_at_a_time = FORKING.lock().unwrap_or_else(|e| e.into_inner());
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    listener.set_nonblocking(true).expect("O_NONBLOCK");
    let port = listener.local_addr().expect("local_addr").port();
    let (reports, report_end) = nix::unistd::pipe().expect("pipe");
    let children = Children::fork(SLEEPERS, |index| {
        epoll_wait_then_accept(listener.as_raw_fd(), report_end.as_raw_fd(), index, exclusive)
    });
    drop(report_end);

    let waits = epoll_wait_syscalls();
    children.wait_until_all_blocked_in(&waits);
    let before: Vec<u64> = children.pids.iter().map(|&p| context_switches(p)).collect();

    let client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    let mut events = vec![read_report(&reports)];
    children.wait_until_settled(&waits);
    while !no_report_waiting(&reports) {
        events.push(read_report(&reports));
    }

    let returned: Vec<usize> = events.iter().filter(|e| e.0 == WOKE).map(|e| e.1).collect();
    let woke = children.woken(&returned, &waits, &before);
    let outcome = Outcome {
        woke,
        accepted: events.iter().filter(|e| e.0 == ACCEPTED).count(),
        again: events.iter().filter(|e| e.0 == AGAIN).count(),
        left_epoll_wait: returned.len(),
    };
    eprintln!(
        "EPOLLEXCLUSIVE {}: {} of {SLEEPERS} woke ({} left epoll_wait), {} accepted, {} got EAGAIN",
        if exclusive { "on" } else { "off" },
        outcome.woke,
        outcome.left_epoll_wait,
        outcome.accepted,
        outcome.again
    );
    drop(client);
    children.kill_and_reap();
    outcome
}

// ---------------------------------------------------------------------------------------------
// The children. Only raw syscalls from here to _exit.
// ---------------------------------------------------------------------------------------------

/// An epoll instance of its own watching the shared listener; sleep in epoll_wait; report the
/// wake-up; try accept once (the listener is non-blocking); the winner holds its connection.
fn epoll_wait_then_accept(listener: RawFd, reports: RawFd, index: usize, exclusive: bool) -> ! {
    // SAFETY: epoll_create1 takes only flags.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        exit_now(2);
    }
    let mut flags = libc::EPOLLIN as u32;
    if exclusive {
        flags |= libc::EPOLLEXCLUSIVE as u32;
    }
    let mut interest = libc::epoll_event {
        events: flags,
        u64: listener as u64,
    };
    // SAFETY: a valid epoll instance, an open listener, and a valid event to copy.
    if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, listener, &mut interest) } != 0 {
        exit_now(2);
    }
    let mut ready = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: room for one event; a negative timeout waits until the listener is readable.
    if unsafe { libc::epoll_wait(ep, &mut ready, 1, -1) } != 1 {
        exit_now(2);
    }
    woke_then_accept(listener, reports, index)
}

/// glibc's epoll_wait may arrive as epoll_wait, epoll_pwait or epoll_pwait2.
fn epoll_wait_syscalls() -> Vec<i64> {
    vec![
        #[cfg(target_arch = "x86_64")]
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
    ]
}
