//! The FD_SETSIZE wall (lesson 12): an fd_set holds descriptors 0 to 1023. socklab's
//! `select::fits` says so; nix's `FdSet::insert(1024)` panics; libc's raw `FD_SET` past it
//! aborts the process; select on 1023 works; poll and epoll report readiness for 1024 and far
//! beyond. And the descriptor limit: anyone may lower the hard limit, nobody may raise it past
//! fs.nr_open, and without privilege nobody may raise it at all.
//!
//! The tests in this file share one process, so descriptors at fixed numbers are made one
//! test at a time (a lock) with `fcntl(F_DUPFD_CLOEXEC, n)`, which returns the lowest free
//! number at or above n, and each test checks it got exactly n.

mod util;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use nix::fcntl::{FcntlArg, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::select::FdSet;
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, send, socketpair};
use nix::sys::time::{TimeVal, TimeValLike};
use socklab::sys::select as sel;

/// The highest descriptor number these tests use when the hard limit allows it.
const FAR: RawFd = 5000;
/// How long a wait may take: the descriptor is readable before the call, so it returns at once.
const WAIT_MS: u16 = 5000;
/// Set in the environment of the copy of this test program that runs the raw FD_SET.
const CHILD_ENV: &str = "SOCKLAB_FD_SET_CHILD";
/// Set in the environment of the copy that tries to raise its hard limit again.
const HARD_LIMIT_ENV: &str = "SOCKLAB_HARD_LIMIT_CHILD";
/// Set in the environment of the copy that runs into its soft limit.
const SOFT_LIMIT_ENV: &str = "SOCKLAB_SOFT_LIMIT_CHILD";
/// How long a child program may run before it counts as hung.
const CHILD_LIMIT: Duration = Duration::from_secs(30);

/// Runs one test of this program in a copy of it, with `env` set, to the end.
fn run_alone(test: &str, env: &str) -> Output {
    let mut command = Command::new(std::env::current_exe().expect("this test program"));
    command
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env(env, "1")
        .env("RUST_BACKTRACE", "0");
    util::run_with_deadline(command, CHILD_LIMIT)
}

/// One test at a time holds descriptors at fixed numbers.
fn fixed_numbers() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The soft RLIMIT_NOFILE, raised (once, for the whole test process) as far as FAR + 1 if the
/// hard limit allows. Returns the soft limit now in force.
fn descriptor_room() -> u64 {
    static ROOM: OnceLock<u64> = OnceLock::new();
    *ROOM.get_or_init(|| {
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        let wanted = (FAR as u64 + 1).min(hard);
        if soft < wanted {
            setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).expect("raising the soft limit up to the hard one");
        }
        getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit").0
    })
}

/// A copy of `fd` on exactly `number` (which the test's lock keeps free).
fn copy_at(fd: impl AsFd, number: RawFd) -> OwnedFd {
    let raw = fcntl(fd.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(number)).expect("F_DUPFD_CLOEXEC");
    // SAFETY: fcntl just returned this new descriptor and nothing else owns it.
    let copy = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    assert_eq!(raw, number, "descriptor {number} was taken; got {raw}");
    copy
}

/// A connected pair of stream sockets, the first one readable (a line is waiting in it).
fn readable_pair() -> (OwnedFd, OwnedFd) {
    let (reader, writer) =
        socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).expect("socketpair");
    assert_eq!(send(writer.as_raw_fd(), b"ready\n", MsgFlags::empty()), Ok(6));
    (reader, writer)
}

#[test]
fn fits_says_yes_to_1023_and_no_to_1024() {
    assert!(
        descriptor_room() > 1024,
        "RLIMIT_NOFILE too low even for 1025 descriptors"
    );
    let _lock = fixed_numbers();
    let (reader, _writer) = readable_pair();
    let at_1023 = copy_at(&reader, 1023);
    let at_1024 = copy_at(&reader, 1024);
    assert_eq!(sel::SETSIZE, 1024);
    assert!(sel::fits(&at_1023));
    assert!(!sel::fits(&at_1024));
}

#[test]
fn fdset_takes_1023_and_panics_at_1024_with_a_message() {
    assert!(
        descriptor_room() > 1024,
        "RLIMIT_NOFILE too low even for 1025 descriptors"
    );
    let _lock = fixed_numbers();
    let (reader, _writer) = readable_pair();
    let at_1023 = copy_at(&reader, 1023);
    let at_1024 = copy_at(&reader, 1024);

    let mut set = FdSet::new();
    set.insert(at_1023.as_fd());
    assert!(set.contains(at_1023.as_fd()));
    assert_eq!(set.highest().map(|fd| fd.as_raw_fd()), Some(1023));

    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut set = FdSet::new();
        set.insert(at_1024.as_fd());
    }))
    .expect_err("FdSet::insert(1024) should panic");
    let message = panicked
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panicked.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert_eq!(message, "fd must be in the range 0..FD_SETSIZE");
}

#[test]
fn select_on_a_set_holding_1023_works() {
    assert!(
        descriptor_room() > 1024,
        "RLIMIT_NOFILE too low even for 1025 descriptors"
    );
    let _lock = fixed_numbers();
    let (reader, _writer) = readable_pair();
    let at_1023 = copy_at(&reader, 1023);
    let mut set = FdSet::new();
    set.insert(at_1023.as_fd());
    let mut timeout = TimeVal::milliseconds(i64::from(WAIT_MS));
    // nfds = 1024: the whole bitmap, every bit of it in use.
    let ready = nix::sys::select::select(1024, Some(&mut set), None, None, Some(&mut timeout));
    assert_eq!(ready, Ok(1));
    assert!(set.contains(at_1023.as_fd()), "1023 came back readable");
}

/// poll and epoll on `number`: both report the waiting line.
fn poll_and_epoll_report(number: RawFd) {
    let (reader, _writer) = readable_pair();
    let far = copy_at(&reader, number);

    let mut fds = [PollFd::new(far.as_fd(), PollFlags::POLLIN)];
    assert_eq!(nix::poll::poll(&mut fds, PollTimeout::from(WAIT_MS)), Ok(1));
    assert_eq!(fds[0].revents(), Some(PollFlags::POLLIN), "poll on {number}");

    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll_create1");
    epoll
        .add(far.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, number as u64))
        .expect("epoll_ctl ADD");
    let mut events = [EpollEvent::empty(); 4];
    assert_eq!(epoll.wait(&mut events, EpollTimeout::from(WAIT_MS)), Ok(1));
    assert_eq!(events[0].events(), EpollFlags::EPOLLIN, "epoll on {number}");
    assert_eq!(events[0].data(), number as u64);
}

#[test]
fn poll_and_epoll_report_readiness_at_1024() {
    assert!(
        descriptor_room() > 1024,
        "RLIMIT_NOFILE too low even for 1025 descriptors"
    );
    let _lock = fixed_numbers();
    poll_and_epoll_report(1024);
}

#[test]
fn poll_and_epoll_report_readiness_far_past_the_wall() {
    let room = descriptor_room();
    if room <= FAR as u64 {
        println!("skipped: RLIMIT_NOFILE's hard limit is {room}, too low for descriptor {FAR}");
        return;
    }
    let _lock = fixed_numbers();
    poll_and_epoll_report(FAR);
}

/// Runs in the copy of this program that `raw_fd_set_past_the_limit_aborts_the_process`
/// starts; in a normal run it does nothing.
#[test]
fn raw_fd_set_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    // No core file for this deliberate crash.
    let _ = nix::sys::prctl::set_dumpable(false);
    // SAFETY: FD_ZERO and FD_SET get a valid pointer to a local fd_set. 1100 is past its end:
    // libc's FD_SET checks and panics inside an extern "C" function, which cannot unwind, so the
    // process aborts. That abort is what the parent test looks for.
    unsafe {
        let mut set: libc::fd_set = std::mem::zeroed();
        libc::FD_ZERO(&mut set);
        libc::FD_SET(1100, &mut set);
    }
    println!("FD_SET(1100) returned");
}

#[test]
fn raw_fd_set_past_the_limit_aborts_the_process() {
    let output = run_alone("raw_fd_set_child", CHILD_ENV);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGABRT),
        "the child should be killed by SIGABRT; it ended with {:?}\nstderr: {stderr}",
        output.status
    );
    assert!(
        stderr.contains("fd 1100 out of range"),
        "libc's panic message: {stderr}"
    );
    assert!(stderr.contains("cannot unwind"), "why it aborts: {stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("returned"));
}

/// A shell reports death by signal N as exit status 128 + N: SIGABRT (6) reads as 134.
#[test]
fn a_shell_reports_the_abort_as_134() {
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            "\"$0\" --exact raw_fd_set_child --test-threads=1 2>/dev/null >/dev/null; echo status=$?",
        ])
        .arg(std::env::current_exe().expect("this test program"))
        .env(CHILD_ENV, "1")
        .env("RUST_BACKTRACE", "0");
    let output = util::run_with_deadline(command, CHILD_LIMIT);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "status=134");
}

#[test]
fn nobody_may_raise_the_hard_limit_past_nr_open() {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert_eq!(
        setrlimit(Resource::RLIMIT_NOFILE, soft, libc::RLIM_INFINITY),
        Err(nix::errno::Errno::EPERM)
    );
    assert_eq!(getrlimit(Resource::RLIMIT_NOFILE), Ok((soft, hard)), "unchanged");
}

/// Runs in a copy of this program started by `lowering_the_hard_limit_is_one_way_without_privilege`.
#[test]
fn hard_limit_child() {
    if std::env::var_os(HARD_LIMIT_ENV).is_none() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Root holds CAP_SYS_RESOURCE; nobody (65534) holds no capability at all.
        // SAFETY: setuid only changes this process's credentials (a copy of the test program
        // that runs this one test and exits).
        let changed = unsafe { libc::setuid(65534) };
        assert_eq!(changed, 0, "setuid(65534) failed: {}", std::io::Error::last_os_error());
    }
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let lower = hard - 1;
    setrlimit(Resource::RLIMIT_NOFILE, lower, lower).expect("lowering both limits");
    let raised = setrlimit(Resource::RLIMIT_NOFILE, lower, hard);
    println!("raise back: {raised:?}");
}

#[test]
fn lowering_the_hard_limit_is_one_way_without_privilege() {
    let output = run_alone("hard_limit_child", HARD_LIMIT_ENV);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() && String::from_utf8_lossy(&output.stderr).contains("setuid(65534) failed") {
        println!("skipped: root here cannot become an unprivileged user (setuid failed)");
        return;
    }
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("raise back: Err(EPERM)"), "{stdout}");
}

/// Two descriptors, one socket: closing the copy sends nothing; closing the last one sends FIN.
#[test]
fn closing_a_copy_leaves_the_connection_open() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().expect("its address")).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("SO_RCVTIMEO");
    let (mut original, _) = listener.accept().expect("accept");
    let copy = nix::unistd::dup(&original).expect("dup");
    nix::unistd::close(copy).expect("closing the copy");
    // A FIN sent by that close would arrive before this byte; after it, nothing else waits.
    original.write_all(b"x").expect("send through the original");
    let mut byte = [0u8; 1];
    assert_eq!(client.read(&mut byte).expect("read"), 1);
    let mut fds = [PollFd::new(client.as_fd(), PollFlags::POLLIN)];
    assert_eq!(
        nix::poll::poll(&mut fds, PollTimeout::ZERO),
        Ok(0),
        "no FIN after closing the copy"
    );
    drop(original);
    assert_eq!(
        client.read(&mut byte).expect("read"),
        0,
        "end of file after the last close"
    );
}

/// Python's select.select refuses a descriptor past the wall with ValueError; select.poll and
/// select.epoll take it (the seed's language, seed 003's "at most 1024").
#[test]
fn python_select_refuses_1024_and_poll_and_epoll_take_it() {
    util::require("python3");
    let script = r#"
import os, resource, select, socket
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < 2048:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
a, b = socket.socketpair()
b.sendall(b"hello\n")
n = a.fileno()
for _ in range(2048):
    n = os.dup(a.fileno())
    if n >= 1024:
        break
print("dup gave", n)
try:
    select.select([n], [], [], 5)
except ValueError as e:
    print("select:", e)
p = select.poll(); p.register(n, select.POLLIN); print("poll:", p.poll(5000))
ep = select.epoll(); ep.register(n, select.EPOLLIN); print("epoll:", ep.poll(5))
"#;
    let mut command = Command::new("python3");
    command.args(["-c", script]);
    let output = util::run_with_deadline(command, CHILD_LIMIT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout,
        "dup gave 1024\nselect: filedescriptor out of range in select()\npoll: [(1024, 1)]\nepoll: [(1024, 1)]\n"
    );
}

/// Runs in a copy of this program started by `a_dup_past_the_soft_limit_is_emfile`.
#[test]
fn soft_limit_child() {
    if std::env::var_os(SOFT_LIMIT_ENV).is_none() {
        return;
    }
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, 64, hard).expect("lowering the soft limit to 64");
    let (reader, _writer) = readable_pair();
    let mut copies = Vec::new();
    // Bounded: 64 numbers exist below the limit.
    let failure = loop {
        match nix::unistd::dup(&reader) {
            Ok(copy) => copies.push(copy),
            Err(errno) => break errno,
        }
        assert!(copies.len() <= 64, "dup went past the soft limit of 64");
    };
    let highest = copies.last().map_or(-1, |fd| fd.as_raw_fd());
    println!("highest {highest}, then {failure:?}");
    // A number free below the limit: only the limit itself stands in the way of asking for 64.
    drop(copies.pop());
    let at_the_limit = fcntl(&reader, FcntlArg::F_DUPFD_CLOEXEC(64)).map(drop);
    println!("F_DUPFD_CLOEXEC from 64: {at_the_limit:?}");
}

/// dup past the soft limit is EMFILE; fcntl(F_DUPFD_CLOEXEC) asked for a number at the limit
/// is EINVAL, even with a lower number free (lesson 12's "things to try", LIMIT at 1024).
#[test]
fn a_dup_past_the_soft_limit_is_emfile() {
    let output = run_alone("soft_limit_child", SOFT_LIMIT_ENV);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("highest 63, then EMFILE"), "{stdout}");
    assert!(stdout.contains("F_DUPFD_CLOEXEC from 64: Err(EINVAL)"), "{stdout}");
}
