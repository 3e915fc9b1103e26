//! select(2) rewrites its arguments in place (lesson 09): the read set comes back holding only
//! the ready descriptors, or nothing after a timeout; the timeval comes back holding the time
//! that was left, so a second call reusing it waits only for the rest, and a zeroed one does
//! not wait at all. Also: nfds is the highest descriptor plus one, end of file stays readable,
//! and glibc's select arrives in the kernel as pselect6 (the timeval as a timespec, no signal
//! mask, the time left turned back into a timeval), which socklab's select does itself.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use crate::util;
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

/// Calls glibc's own `select()` through ctypes on a pipe with a byte waiting, once per
/// timeval given on the command line, and prints `FD READY TV_SEC TV_USEC` after each: the
/// timeval as select left it.
const GLIBC_SELECT: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
class timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]
r, w = os.pipe()
os.write(w, b"x")
for arg in sys.argv[1:]:
    sec, usec = map(int, arg.split(","))
    fdset = (ctypes.c_ulong * 16)()
    fdset[r // 64] |= 1 << (r % 64)
    tv = timeval(sec, usec)
    ready = libc.select(r + 1, ctypes.byref(fdset), None, None, ctypes.byref(tv))
    print(r, ready, tv.tv_sec, tv.tv_usec, flush=True)
"#;

/// `{tv_sec=2, tv_nsec=499996265}` after `key` in a strace line -> (2, 499996265).
fn timespec_after(line: &str, key: &str) -> Option<(i64, i64)> {
    let rest = &line[line.find(key)? + key.len()..];
    let number = |name: &str| -> Option<i64> {
        let digits = &rest[rest.find(name)? + name.len()..];
        digits
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    };
    Some((number("tv_sec=")?, number("tv_nsec=")?))
}

/// What lesson 09 says glibc's wrapper does, seen on glibc itself (the C library every
/// program here links): Python calls its `select()` through ctypes, under strace. The call
/// arrives as pselect6, the timeval passed as a timespec (and normalised: 1,500,000 us is
/// 1 s and 500,000,000 ns), NULL for the sixth argument, pselect's signal mask; the kernel's
/// time left comes back into the caller's timeval cut to whole microseconds.
#[test]
fn glibcs_select_is_pselect6_with_a_timespec_and_no_signal_mask() {
    util::require("strace");
    util::require("python3");
    let log = std::env::temp_dir().join(format!("socklab-glibc-select-{}.txt", std::process::id()));
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-e", "trace=select,pselect6", "-o"])
        .arg(&log)
        .args(["python3", "-c", GLIBC_SELECT, "2,500000", "0,1500000"]);
    let output = util::run_with_deadline(command, Duration::from_secs(60));
    let strace_text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let asked = [(2, 500_000_000), (1, 500_000_000)];
    let printed: Vec<Vec<i64>> = stdout
        .lines()
        .map(|l| l.split_whitespace().filter_map(|w| w.parse().ok()).collect())
        .collect();
    assert_eq!(printed.len(), asked.len(), "{stdout}");
    let fd = printed[0][0];
    let calls: Vec<&str> = strace_text
        .lines()
        .filter(|l| l.contains(&format!("select6({}, [{fd}], NULL, NULL, {{", fd + 1)) || l.contains(" select("))
        .collect();
    assert_eq!(calls.len(), asked.len(), "one kernel call per select(): {strace_text}");
    for ((call, printed), (sec, nsec)) in calls.iter().zip(&printed).zip(asked) {
        assert!(call.contains(" pselect6("), "select() is the pselect6 syscall: {call}");
        assert_eq!(
            timespec_after(call, "NULL, NULL, "),
            Some((sec, nsec)),
            "the timeval passed as a timespec: {call}"
        );
        assert!(
            call.contains("}, NULL) = 1"),
            "NULL for the signal mask, and one ready: {call}"
        );
        let (left_sec, left_nsec) = timespec_after(call, "left ").expect("the time left");
        assert_eq!(
            (printed[2], printed[3]),
            (left_sec, left_nsec / 1000),
            "the caller's timeval is the kernel's time left, cut to microseconds: {call}"
        );
    }
}

/// Why glibc normalises the timeval: the old select syscall takes 1,500,000 microseconds as
/// 1.5 s, but pselect6 refuses a timespec with a second or more in tv_nsec (EINVAL).
#[test]
fn pselect6_refuses_a_timespec_the_select_syscall_takes() {
    let (sock, peer) = pair();
    send(peer.as_raw_fd(), b"x", MsgFlags::empty()).expect("send");
    let fd = sock.as_raw_fd();
    let one_bit = || {
        let mut set = [0u64; 16];
        set[fd as usize / 64] |= 1 << (fd as usize % 64);
        set
    };

    let mut set = one_bit();
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 1_500_000,
    };
    // SAFETY: a 1024-bit set and a timeval, both valid for the call; nfds = fd + 1 < 1024.
    let ready = unsafe { libc::syscall(libc::SYS_select, fd + 1, set.as_mut_ptr(), 0usize, 0usize, &raw mut tv) };
    assert_eq!(
        ready,
        1,
        "the select syscall takes tv_usec = 1,500,000: {}",
        std::io::Error::last_os_error()
    );

    let mut set = one_bit();
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 1_500_000_000,
    };
    // SAFETY: as above, with a timespec and a null signal mask.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pselect6,
            fd + 1,
            set.as_mut_ptr(),
            0usize,
            0usize,
            &raw mut ts,
            0usize,
        )
    };
    assert_eq!(
        (ret, std::io::Error::last_os_error().raw_os_error()),
        (-1, Some(libc::EINVAL)),
        "pselect6 refuses tv_nsec = 1,500,000,000"
    );
}

extern "C" fn note_the_signal(_: libc::c_int) {}

/// signal(7): select is never restarted after a signal handler runs, SA_RESTART or not. A
/// thread sends SIGUSR1 (handled, with SA_RESTART) to one waiting in select with nothing to
/// read: select fails with EINTR long before its timeout.
#[test]
fn a_signal_interrupts_select_even_with_sa_restart() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(note_the_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing at all; no other test in this binary uses SIGUSR1.
    unsafe { sigaction(Signal::SIGUSR1, &action) }.expect("sigaction");

    let (sock, _peer) = pair();
    let (started, waiting) = mpsc::channel();
    let selecting = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        let me = (unsafe { libc::pthread_self() }, nix::unistd::gettid());
        started.send(me).expect("send the thread's ids");
        let mut readfds = FdSet::new();
        readfds.insert(sock.as_fd());
        let mut timeout = TimeVal::seconds(10);
        select(None, &mut readfds, None, None, &mut timeout)
    });
    let (thread, tid) = waiting.recv().expect("the selecting thread's ids");
    // Send the signal only once the thread sleeps in pselect6 (/proc says which syscall a
    // sleeping thread is in): sent earlier, select would wait its 10 s and return 0.
    let asleep_in_select = || {
        let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).unwrap_or_default();
        text.split_whitespace().next() == Some(libc::SYS_pselect6.to_string().as_str())
    };
    let since = std::time::Instant::now();
    while !asleep_in_select() {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the thread never slept in pselect6"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: `thread` is a live thread of this process: it is joined below.
    let sent = unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
    assert_eq!(sent, 0, "pthread_kill");
    let result = selecting.join().expect("the selecting thread");
    assert_eq!(
        result,
        Err(nix::errno::Errno::EINTR),
        "select was interrupted, not restarted"
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
