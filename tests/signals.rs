//! What lesson 19 says the kernel does with a signal that comes while a program waits, each
//! claim made to happen (signal(7), "Interruption of system calls and library functions by
//! signal handlers"):
//!
//! - a handler installed with SA_RESTART: accept, and recv with no timeout, are restarted (the
//!   handler ran while they waited, and they return what they waited for); without it they fail
//!   with EINTR; select, poll and epoll_wait fail with EINTR either way, and so does recv on a
//!   socket with SO_RCVTIMEO;
//! - the race: block, check, unblock, select: a signal that came in between is handled before
//!   select starts, which then sleeps its whole timeout; pselect, ppoll and epoll_pwait, whose
//!   mask opens only for the wait, fail with EINTR instead;
//! - the self-pipe: a signal before the wait leaves its byte, and select returns at once;
//! - signalfd: a blocked signal makes it readable, in an epoll set too, and read says who sent it;
//! - masks: kill() goes to a thread that does not block the signal; a new thread starts with
//!   its creator's mask; the mask survives exec.
//!
//! A test process has other threads (the harness's), so signals here are sent to one thread
//! (tgkill), except where which thread takes a process's signal is the point; the tests take a
//! lock so that one runs at a time. A signal is sent once the thread is seen blocked in the call
//! (/proc/self/task/TID/syscall), so every interruption happens in the call, never before it.

mod util;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::SfdFlags;
use nix::sys::socket::{MsgFlags, SockFlag, sockopt};
use nix::sys::time::{TimeSpec, TimeVal};
use socklab::sys::{self, Errno, epoll, poll, select};
use socklab::trace;

/// One test at a time: handlers and the counter are the process's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// How many times `count` ran, and on which thread last.
static HANDLED: AtomicUsize = AtomicUsize::new(0);
static HANDLED_ON: AtomicI32 = AtomicI32::new(0);

extern "C" fn count(_signal: libc::c_int) {
    // SAFETY: gettid(2) is a system call with no arguments; async-signal-safe.
    let tid = unsafe { libc::gettid() };
    HANDLED_ON.store(tid, Ordering::SeqCst);
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    trace::set_mode(trace::Mode::Off);
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn install(signal: Signal, flags: SaFlags) {
    let action = SigAction::new(SigHandler::Handler(count), flags, SigSet::empty());
    // SAFETY: `count` only calls gettid and stores to atomics: async-signal-safe.
    unsafe { sys::sigaction_with(signal, &action) }.expect("sigaction");
}

fn this_thread() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Sends `signal` to thread `tid` of this process.
fn tgkill(tid: i32, signal: Signal) {
    // SAFETY: tgkill takes three integers; the thread is one of ours.
    let ret = unsafe { libc::syscall(libc::SYS_tgkill, std::process::id(), tid, signal as libc::c_int) };
    assert_eq!(ret, 0, "tgkill: {}", std::io::Error::last_os_error());
}

/// Waits (10 s at most) until `ready()`.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until thread `tid` is blocked in system call `number`.
fn blocked_in(tid: i32, number: libc::c_long) {
    let path = format!("/proc/self/task/{tid}/syscall");
    wait_until(&format!("thread {tid} blocked in system call {number}"), || {
        std::fs::read_to_string(&path).is_ok_and(|text| text.split_whitespace().next() == Some(&number.to_string()))
    });
}

/// On another thread: once this thread waits in `number`, `signal` to it, then `then()`.
fn signal_when_blocked(
    number: libc::c_long,
    signal: Signal,
    then: impl FnOnce() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let target = this_thread();
    std::thread::spawn(move || {
        blocked_in(target, number);
        tgkill(target, signal);
        then();
    })
}

fn listener() -> (OwnedFd, SocketAddr) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("its address");
    (OwnedFd::from(listener), addr)
}

#[test]
fn with_sa_restart_accept_is_restarted_and_without_it_fails_with_eintr() {
    let _one = lock();
    let (listener, addr) = listener();

    install(Signal::SIGUSR1, SaFlags::SA_RESTART);
    let before = HANDLED.load(Ordering::SeqCst);
    let me = this_thread();
    let helper = signal_when_blocked(libc::SYS_accept4, Signal::SIGUSR1, move || {
        // The client comes after the handler ran and the call is waiting again.
        wait_until("the handler", || HANDLED.load(Ordering::SeqCst) > before);
        blocked_in(me, libc::SYS_accept4);
        TcpStream::connect(addr).expect("connect");
    });
    let accepted = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC);
    helper.join().expect("the helper");
    assert!(accepted.is_ok(), "with SA_RESTART: {accepted:?}");
    assert_eq!(
        HANDLED.load(Ordering::SeqCst),
        before + 1,
        "the handler ran while it waited"
    );

    install(Signal::SIGUSR1, SaFlags::empty());
    let helper = signal_when_blocked(libc::SYS_accept4, Signal::SIGUSR1, || {});
    let interrupted = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC).map(drop);
    helper.join().expect("the helper");
    assert_eq!(interrupted, Err(Errno::EINTR), "without SA_RESTART");
}

#[test]
fn select_poll_and_epoll_wait_fail_with_eintr_even_with_sa_restart() {
    let _one = lock();
    let (listener, _) = listener();
    install(Signal::SIGUSR1, SaFlags::SA_RESTART);
    let long = Duration::from_secs(30);

    let helper = signal_when_blocked(libc::SYS_pselect6, Signal::SIGUSR1, || {});
    let mut readable = select::FdSet::new();
    readable.insert(listener.as_raw_fd());
    let mut timeout = TimeVal::new(long.as_secs() as i64, 0);
    let selected = select::select(Some(&mut readable), None, None, Some(&mut timeout));
    helper.join().expect("the helper");
    assert_eq!(selected, Err(Errno::EINTR), "select");
    // Linux's select leaves the time it did not sleep, EINTR or not.
    let left = Duration::from_micros(timeout.tv_sec() as u64 * 1_000_000 + timeout.tv_usec() as u64);
    assert!(left > Duration::ZERO && left < long, "select left {left:?} of {long:?}");

    let helper = signal_when_blocked(libc::SYS_poll, Signal::SIGUSR1, || {});
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let polled = poll::poll(&mut fds, PollTimeout::try_from(long).unwrap());
    helper.join().expect("the helper");
    assert_eq!(polled, Err(Errno::EINTR), "poll");

    let ep = epoll::epoll_create1(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll_create1");
    epoll::epoll_ctl_add(&ep, &listener, EpollEvent::new(EpollFlags::EPOLLIN, 0)).expect("epoll_ctl");
    let helper = signal_when_blocked(libc::SYS_epoll_wait, Signal::SIGUSR1, || {});
    let mut events = [EpollEvent::empty(); 4];
    let waited = epoll::epoll_wait(&ep, &mut events, EpollTimeout::try_from(long).unwrap());
    helper.join().expect("the helper");
    assert_eq!(waited, Err(Errno::EINTR), "epoll_wait");
}

#[test]
fn sa_restart_restarts_recv_but_not_on_a_socket_with_a_receive_timeout() {
    let _one = lock();
    let (listener, addr) = listener();
    let mut client = Some(TcpStream::connect(addr).expect("connect"));
    let (conn, _) = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC).expect("accept4");
    install(Signal::SIGUSR1, SaFlags::SA_RESTART);
    let mut buf = [0u8; 16];

    // No timeout: restarted; the recv returns the bytes that came after the signal.
    let before = HANDLED.load(Ordering::SeqCst);
    let me = this_thread();
    let mut writer = client.take().expect("the client");
    let helper = signal_when_blocked(libc::SYS_recvfrom, Signal::SIGUSR1, move || {
        wait_until("the handler", || HANDLED.load(Ordering::SeqCst) > before);
        blocked_in(me, libc::SYS_recvfrom);
        std::io::Write::write_all(&mut writer, b"late").expect("send");
        std::mem::forget(writer); // kept open: no FIN
    });
    let got = sys::recv(&conn, &mut buf, MsgFlags::empty());
    helper.join().expect("the helper");
    assert_eq!(got, Ok(4), "recv with SA_RESTART and no timeout");
    assert_eq!(HANDLED.load(Ordering::SeqCst), before + 1);

    // SO_RCVTIMEO set: never restarted (signal(7)).
    sys::setsockopt(&conn, sockopt::ReceiveTimeout, &TimeVal::new(30, 0)).expect("SO_RCVTIMEO");
    let helper = signal_when_blocked(libc::SYS_recvfrom, Signal::SIGUSR1, || {});
    let got = sys::recv(&conn, &mut buf, MsgFlags::empty());
    helper.join().expect("the helper");
    assert_eq!(got, Err(Errno::EINTR), "recv with SA_RESTART and SO_RCVTIMEO");
}

#[test]
fn a_signal_between_the_check_and_select_is_lost_but_not_by_pselect_ppoll_or_epoll_pwait() {
    let _one = lock();
    let (listener, _) = listener();
    install(Signal::SIGUSR1, SaFlags::SA_RESTART);
    let usr1 = SigSet::from(Signal::SIGUSR1);
    let me = this_thread();
    let mut open = SigSet::empty();

    // The naive loop: blocked, checked, unblocked, and then select.
    sys::sigprocmask(SigmaskHow::SIG_BLOCK, &usr1, Some(&mut open)).expect("block");
    let before = HANDLED.load(Ordering::SeqCst);
    tgkill(me, Signal::SIGUSR1);
    assert_eq!(HANDLED.load(Ordering::SeqCst), before, "blocked: the handler waits");
    sys::sigprocmask(SigmaskHow::SIG_UNBLOCK, &usr1, None).expect("unblock");
    assert_eq!(HANDLED.load(Ordering::SeqCst), before + 1, "handled as the mask opened");
    let wait = Duration::from_millis(300);
    let mut readable = select::FdSet::new();
    readable.insert(listener.as_raw_fd());
    let mut timeout = TimeVal::new(0, wait.as_micros() as i64);
    let started = Instant::now();
    let slept = select::select(Some(&mut readable), None, None, Some(&mut timeout));
    assert_eq!(slept, Ok(0), "select slept to its timeout");
    assert!(started.elapsed() >= wait, "and for all of it");

    // The same order, the mask opened by the wait itself: EINTR, not a 30 s timeout.
    let long = Duration::from_secs(30);
    sys::sigprocmask(SigmaskHow::SIG_BLOCK, &usr1, None).expect("block");
    tgkill(me, Signal::SIGUSR1);
    let mut readable = select::FdSet::new();
    readable.insert(listener.as_raw_fd());
    let pselected = select::pselect(
        Some(&mut readable),
        None,
        None,
        Some(&TimeSpec::from(long)),
        Some(&open),
    );
    tgkill(me, Signal::SIGUSR1);
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let ppolled = poll::ppoll(&mut fds, Some(&TimeSpec::from(long)), Some(&open));
    tgkill(me, Signal::SIGUSR1);
    let ep = epoll::epoll_create1(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll_create1");
    epoll::epoll_ctl_add(&ep, &listener, EpollEvent::new(EpollFlags::EPOLLIN, 0)).expect("epoll_ctl");
    let mut events = [EpollEvent::empty(); 4];
    let pwaited = epoll::epoll_pwait(&ep, &mut events, EpollTimeout::try_from(long).unwrap(), Some(&open));
    sys::sigprocmask(SigmaskHow::SIG_SETMASK, &open, None).expect("restore");
    assert_eq!(pselected, Err(Errno::EINTR), "pselect");
    assert_eq!(ppolled, Err(Errno::EINTR), "ppoll");
    assert_eq!(pwaited, Err(Errno::EINTR), "epoll_pwait");
    assert_eq!(HANDLED.load(Ordering::SeqCst), before + 4, "each wait ran the handler");
}

/// The self-pipe's write end, for `wake`.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn wake(signal: libc::c_int) {
    let byte = signal as u8;
    // SAFETY: write(2) of one byte from a local to a descriptor this test owns.
    unsafe { libc::write(WAKE_FD.load(Ordering::SeqCst), (&raw const byte).cast(), 1) };
}

#[test]
fn with_a_self_pipe_a_signal_before_the_wait_still_ends_it_at_once() {
    let _one = lock();
    let (listener, _) = listener();
    let (read_end, write_end) = sys::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).expect("pipe2");
    WAKE_FD.store(write_end.as_raw_fd(), Ordering::SeqCst);
    let action = SigAction::new(SigHandler::Handler(wake), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: `wake` only writes one byte: async-signal-safe.
    unsafe { sys::sigaction_with(Signal::SIGUSR2, &action) }.expect("sigaction");
    tgkill(this_thread(), Signal::SIGUSR2); // handled now, before any wait
    let mut readable = select::FdSet::new();
    readable.insert(listener.as_raw_fd());
    readable.insert(read_end.as_raw_fd());
    let mut timeout = TimeVal::new(30, 0);
    let ready = select::select(Some(&mut readable), None, None, Some(&mut timeout));
    assert_eq!(ready, Ok(1), "not a 30 s timeout: the byte was waiting");
    assert!(readable.contains(read_end.as_raw_fd()));
    let mut byte = [0u8; 8];
    assert_eq!(sys::read(&read_end, &mut byte), Ok(1));
    assert_eq!(byte[0], Signal::SIGUSR2 as u8, "the byte is the signal's number");
    let restore = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default action runs no code here.
    unsafe { sys::sigaction_with(Signal::SIGUSR2, &restore) }.expect("sigaction");
    WAKE_FD.store(-1, Ordering::SeqCst);
    drop(write_end);
}

#[test]
fn a_blocked_signal_is_read_from_a_signalfd_in_an_epoll_set_and_no_handler_runs() {
    let _one = lock();
    install(Signal::SIGUSR1, SaFlags::SA_RESTART);
    let usr1 = SigSet::from(Signal::SIGUSR1);
    let mut open = SigSet::empty();
    sys::sigprocmask(SigmaskHow::SIG_BLOCK, &usr1, Some(&mut open)).expect("block");
    let signals = sys::signalfd(&usr1, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).expect("signalfd");
    let ep = epoll::epoll_create1(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll_create1");
    epoll::epoll_ctl_add(&ep, &signals, EpollEvent::new(EpollFlags::EPOLLIN, 7)).expect("epoll_ctl");
    let before = HANDLED.load(Ordering::SeqCst);
    let me = this_thread();
    let sender = std::thread::spawn(move || {
        blocked_in(me, libc::SYS_epoll_wait);
        tgkill(me, Signal::SIGUSR1);
    });
    let mut events = [EpollEvent::empty(); 4];
    let ready = epoll::epoll_wait(
        &ep,
        &mut events,
        EpollTimeout::try_from(Duration::from_secs(30)).unwrap(),
    );
    sender.join().expect("the sender");
    assert_eq!(ready, Ok(1), "the signalfd is readable");
    assert_eq!(events[0].data(), 7);
    let info = sys::read_siginfo(&signals).expect("read");
    assert_eq!(info.ssi_signo, Signal::SIGUSR1 as u32);
    assert_eq!(info.ssi_code, libc::SI_TKILL, "sent by tgkill");
    assert_eq!(info.ssi_pid, std::process::id(), "by this process");
    assert_eq!(
        sys::read_siginfo(&signals).map(drop),
        Err(Errno::EAGAIN),
        "taken: nothing pending"
    );
    sys::sigprocmask(SigmaskHow::SIG_SETMASK, &open, None).expect("restore");
    assert_eq!(
        HANDLED.load(Ordering::SeqCst),
        before,
        "no handler ran, even unblocked again"
    );
}

#[test]
fn kill_gives_the_signal_to_a_thread_that_does_not_block_it() {
    let _one = lock();
    install(Signal::SIGUSR1, SaFlags::SA_RESTART);
    let usr1 = SigSet::from(Signal::SIGUSR1);
    let mut open = SigSet::empty();
    sys::sigprocmask(SigmaskHow::SIG_BLOCK, &usr1, Some(&mut open)).expect("block");
    let before = HANDLED.load(Ordering::SeqCst);
    sys::kill(nix::unistd::Pid::this(), Signal::SIGUSR1).expect("kill");
    wait_until("another thread's handler", || HANDLED.load(Ordering::SeqCst) > before);
    assert_ne!(
        HANDLED_ON.load(Ordering::SeqCst),
        this_thread(),
        "not the thread that blocks it"
    );
    sys::sigprocmask(SigmaskHow::SIG_SETMASK, &open, None).expect("restore");
    assert_eq!(
        HANDLED.load(Ordering::SeqCst),
        before + 1,
        "and only once: nothing left pending here"
    );
}

/// `SigBlk` of /proc/.../status: the blocked signals, bit N-1 for signal N.
fn blocked_bits(status: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with("SigBlk:"))
        .expect("a SigBlk line");
    u64::from_str_radix(line["SigBlk:".len()..].trim(), 16).expect("hex")
}

#[test]
fn a_new_thread_starts_with_its_creators_mask_and_the_mask_survives_exec() {
    let _one = lock();
    let usr2 = SigSet::from(Signal::SIGUSR2);
    let mut open = SigSet::empty();
    sys::sigprocmask(SigmaskHow::SIG_BLOCK, &usr2, Some(&mut open)).expect("block");
    let child = std::thread::spawn(|| std::fs::read_to_string("/proc/thread-self/status").expect("status"));
    let status = child.join().expect("the thread");
    sys::sigprocmask(SigmaskHow::SIG_SETMASK, &open, None).expect("restore");
    assert_ne!(
        blocked_bits(&status) & (1 << (Signal::SIGUSR2 as u64 - 1)),
        0,
        "{status}"
    );

    // Python's subprocess, unlike Rust's Command, leaves the mask as it is across fork and exec.
    util::require("python3");
    let output = Command::new("python3")
        .args([
            "-c",
            "import signal, subprocess\n\
             signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})\n\
             subprocess.run(['grep', 'SigBlk', '/proc/self/status'])\n",
        ])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_ne!(
        blocked_bits(&text) & (1 << (Signal::SIGTERM as u64 - 1)),
        0,
        "grep's own mask: {text}"
    );
}
