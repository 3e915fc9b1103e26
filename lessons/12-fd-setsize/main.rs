//! Lesson 12: the FD_SETSIZE wall. glibc's fd_set, and every select built on it, can watch
//! descriptors 0 to 1023 and no others; the kernel's own select has no such wall, and poll and
//! epoll take any number the process may hold.
//!
//! Seed 003 says the number of descriptors a single process can watch with select "has a
//! maximum, generally 1024 on Linux, though this limit can be raised by editing the macro
//! definition or even recompiling the kernel". The limit is not on how
//! many descriptors a process may *hold* (RLIMIT_NOFILE says that), but on their *numbers*: an
//! fd_set is a bitmap of 1024 bits, so descriptor 1024 has no bit. And there is no FD_SETSIZE in
//! the kernel to recompile. This program raises the descriptor limit, puts a client's
//! connection on 1024 and on 1500, and watches what each way of waiting makes of it:
//!
//! - socklab's `select::fits` says no, and a select server (lesson 11's room) refuses the
//!   client with a clear message; nix's `FdSet::insert` panics (caught here);
//! - the `pselect6` system call itself, handed a bitmap of 2,048 bits this program allocated,
//!   reports 1500 readable: the wall is glibc's type, not the kernel's;
//! - the Rust libc crate's `FD_SET`, and C's `FD_SET` built with `_FORTIFY_SOURCE` (glibc's
//!   `__fdelt_chk`), abort the process: both shown in forked children, so the demo survives;
//! - poll and epoll watch 1500 as easily as 3.
//!
//!   make lesson-12                                  the demo: a server and one client
//!   make lesson-12 ARGS="server --port 7000"        the same server, for `nc 127.0.0.1 7000`
//!   make lesson-12 ARGS="client --port 7000 hi"     a client for a server you started

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::select::FdSet;
use nix::sys::signal::Signal;
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, sockopt};
use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Pid};
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::sys::{self, Errno, select};
use socklab::trace;

/// Seed 003's chat server listens on 33333; so does this one in server mode.
const DEFAULT_PORT: u16 = 33333;
/// The descriptor limit this lesson sets, soft and hard: room for descriptor 1500 and more.
/// The same number on every machine, so the trace reads the same everywhere.
const LIMIT: libc::rlim_t = 4096;
/// The last descriptor an fd_set can hold: FD_SETSIZE - 1.
const LAST_SELECTABLE: RawFd = select::SETSIZE as RawFd - 1;
/// The first descriptor no fd_set has a bit for: FD_SETSIZE.
const WALL: RawFd = select::SETSIZE as RawFd;
/// Where the connection is moved last, for the kernel's own select: past glibc's wall.
const FAR: RawFd = 1500;
/// The bits of the set this program hands the kernel for it: twice glibc's.
const BIG_SET: usize = 2048;
/// How many finished handshakes may wait for accept.
const BACKLOG: i32 = 5;
/// At most this many bytes per recv.
const RECV_SIZE: usize = 100;
/// How long each wait may take in the demo (the client is on its way at once).
const DEMO_WAIT_MS: u16 = 5000;
/// How long each wait may take in server mode, where a person has to type.
const SERVER_WAIT_MS: u16 = 60_000;
/// Server mode stops after this many clients, so it never runs for ever by accident.
const MAX_CONNECTIONS: usize = 10;
/// What the client sends when given no words.
const GREETING: &str = "hello";

fn main() {
    lessons::main(DEFAULT_PORT, run);
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo => demo(),
        Role::Server => server(args.addr()),
        Role::Client => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            let words = if args.rest.is_empty() {
                GREETING.to_string()
            } else {
                args.rest.join(" ")
            };
            client(args.addr(), &words)
        }
    }
}

/// The server on this process's one thread (fork is only simple there), one client process.
fn demo() -> Outcome {
    trace::set_actor("server");
    set_descriptor_limit()?;
    let listener = listen_on("127.0.0.1:0".parse().expect("a literal address"))?;
    trace::explain("port 0 asked the kernel to choose; this asks which port it chose");
    let bound = sys::getsockname(&listener).context("getsockname")?;
    let port = bound.as_sockaddr_in().map_or(0, |a| a.port());
    let client = lessons::spawn_process("client#1", "client", port, &[]).context("starting client#1")?;
    let result = hold_high_and_serve(&listener, 1, DEMO_WAIT_MS);
    // Closed before waiting for the client: if serving failed, a connection still queued here
    // is reset, and the client stops waiting for an answer.
    trace::explain("the listener's last descriptor: a connection still waiting in its queue would be reset");
    sys::close(listener).context("close")?;
    let waited = lessons::wait_process("client#1", client);
    result?;
    Ok(waited?)
}

/// The same server for a client of yours: `nc 127.0.0.1 7000`, type a line.
fn server(addr: SocketAddr) -> Outcome {
    trace::set_actor("server");
    set_descriptor_limit()?;
    let listener = listen_on(addr)?;
    trace::say(format!(
        "listening on {addr}; try: nc {} {}, then type a line",
        addr.ip(),
        addr.port()
    ));
    hold_high_and_serve(&listener, MAX_CONNECTIONS, SERVER_WAIT_MS)?;
    sys::close(listener).context("close")?;
    Ok(())
}

/// RLIMIT_NOFILE: how many descriptors this process may hold. The soft limit is the one the
/// kernel enforces; the hard limit is the ceiling the soft one may be moved up to.
fn set_descriptor_limit() -> Result<(), String> {
    // Read once without a trace line (staged): the numbers differ from machine to machine (1024
    // soft on most desktops, 20000 here), and the trace must read the same everywhere.
    if let Ok((soft, hard)) = trace::stage(sys::getrlimit_nofile) {
        trace::measured(format!(
            "this process started with a soft limit of {soft} descriptors and a hard limit of {hard}; \
             both become {LIMIT}"
        ));
    }
    trace::explain(
        "1024 soft is common (ulimit -n): this raises it, or lowers a higher one; \
         anyone may lower the hard limit, only privilege raises it again",
    );
    sys::setrlimit_nofile(LIMIT, LIMIT).context(format!(
        "setrlimit RLIMIT_NOFILE to {LIMIT} (this lesson needs more than {FAR} descriptors; \
         if your hard limit, `ulimit -Hn`, is lower, only root can raise it)"
    ))?;
    trace::explain("a hard limit past fs.nr_open is refused even to root; without privilege, any raise of it is");
    match sys::setrlimit_nofile(LIMIT, libc::RLIM_INFINITY) {
        Err(Errno::EPERM) => trace::say("EPERM: the hard limit stays where it is"),
        Err(other) => return Err(format!("raising the hard limit should fail with EPERM, not {other}")),
        Ok(()) => return Err("raising the hard limit to infinity should fail with EPERM; it worked".into()),
    }
    trace::explain("what getrlimit becomes: the limits now in force");
    sys::getrlimit_nofile().context("getrlimit")?;
    Ok(())
}

/// socket, SO_REUSEADDR, bind, listen: a passive socket, ready for clients.
fn listen_on(addr: SocketAddr) -> Result<OwnedFd, String> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let listener =
        sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")?;
    sys::setsockopt(&listener, sockopt::ReuseAddr, &true).context("setsockopt SO_REUSEADDR")?;
    sys::bind(&listener, addr).context(format!("bind {addr}"))?;
    sys::listen(&listener, BACKLOG).context("listen")?;
    Ok(listener)
}

/// Puts the listener's copy on 1023 and serves `clients` clients, one after another: each is
/// moved to 1024, where no fd_set has a bit for it, and then to 1500.
fn hold_high_and_serve(listener: &OwnedFd, clients: usize, wait_ms: u16) -> Result<(), String> {
    trace::explain("the lowest free number at or above 1023: 1023, the last one an fd_set has a bit for");
    let last = sys::fcntl_dupfd_cloexec(listener, LAST_SELECTABLE).context("fcntl F_DUPFD_CLOEXEC")?;
    let mut result = Ok(());
    for number in 1..=clients {
        result = serve_one(listener, &last, number == 1, wait_ms);
        if let Err(error) = &result {
            if clients == 1 {
                break;
            }
            trace::say(format!("that connection failed: {error}; waiting for the next"));
        }
    }
    trace::explain("only a copy: the listening socket lives on in 3");
    sys::close(last).context("close")?;
    result
}

/// One client: select still works on 1023; the client is moved to 1024, past glibc's wall,
/// and then to 1500, where the kernel's own select, poll and epoll all watch it. The first
/// time, nix's FdSet panics and two children show how C's FD_SET ends.
fn serve_one(listener: &OwnedFd, last: &OwnedFd, first: bool, wait_ms: u16) -> Result<(), String> {
    select_on_the_last_bit(last, wait_ms)?;
    trace::explain("the lowest free number; a server already holding 4 to 1023 would get 1024 here");
    let (accepted, _peer) = sys::accept4(listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    trace::explain(
        "one call puts the connection where a busy server's accept4 would: 1024, the first number past the wall",
    );
    let moved = sys::fcntl_dupfd_cloexec(&accepted, WALL);
    trace::explain("the accepted number goes; the connection lives on in 1024");
    sys::close(accepted).context("close")?;
    let conn = moved.context("fcntl F_DUPFD_CLOEXEC")?;
    refuse_as_a_select_server_would(&conn);
    if first {
        nix_fdset_panics(&conn);
    }
    trace::explain("and further: 1500");
    let far = sys::fcntl_dupfd_cloexec(&conn, FAR).context("fcntl F_DUPFD_CLOEXEC")?;
    the_kernel_has_no_fd_setsize(&far, wait_ms)?;
    if first {
        raw_fd_set_aborts(far.as_raw_fd())?;
        fortified_fd_set_aborts(far.as_raw_fd())?;
    }
    poll_and_epoll_see(last, &far, wait_ms)?;
    answer(&far)?;
    trace::explain("1024 still refers to the connection, so closing 1500 sends nothing");
    sys::close(far).context("close")?;
    trace::explain("the last descriptor of the connection: now the FIN goes out");
    sys::close(conn).context("close")?;
    Ok(())
}

/// Waits with select for the listener to be readable, through its copy on 1023.
fn select_on_the_last_bit(last: &OwnedFd, wait_ms: u16) -> Result<(), String> {
    let mut readable = select::FdSet::with_room(select::SETSIZE);
    readable.insert(last.as_raw_fd());
    let mut timeout = select::timeout_ms(i64::from(wait_ms));
    trace::explain("1023 is the listener's copy: nfds = 1023 + 1 = 1024, every bit of the fd_set in use");
    let ready = select::select(Some(&mut readable), None, None, Some(&mut timeout)).context("select")?;
    if ready == 0 {
        return Err(format!("no client came within {wait_ms} ms"));
    }
    Ok(())
}

/// The system call itself, with a set of this program's own: 2,048 bits, holding 1500.
fn the_kernel_has_no_fd_setsize(far: &OwnedFd, wait_ms: u16) -> Result<(), String> {
    trace::say(format!(
        "glibc's fd_set is {} bytes, {} bits; this set is {} bytes, {BIG_SET} bits",
        std::mem::size_of::<libc::fd_set>(),
        std::mem::size_of::<libc::fd_set>() * 8,
        BIG_SET / 8
    ));
    let mut readable = select::FdSet::with_room(BIG_SET);
    readable.insert(far.as_raw_fd());
    let mut timeout = select::timeout_ms(i64::from(wait_ms));
    trace::explain(
        "the kernel has no FD_SETSIZE: it reads nfds = 1501 bits of the bitmap it is handed, \
         and reports 1500 readable: the client's line waits",
    );
    let ready = select::select(Some(&mut readable), None, None, Some(&mut timeout)).context("select")?;
    if ready != 1 || !readable.contains(far.as_raw_fd()) {
        return Err(format!("pselect6 did not report {FAR} readable within {wait_ms} ms"));
    }
    Ok(())
}

/// What lesson 11's chat server does with such a client: check, and refuse with a reason.
fn refuse_as_a_select_server_would(conn: &OwnedFd) {
    let number = conn.as_raw_fd();
    if select::fits(conn) {
        trace::say(format!("descriptor {number} fits in an fd_set"));
        return;
    }
    trace::say(format!(
        "select::fits({number}) is false. Lesson 11's chat server would answer this client \
         \"! sorry, the server cannot take you: descriptor {number} is past select's limit of {} (FD_SETSIZE)\" \
         and close it. This server carries on past the wall",
        select::SETSIZE
    ));
}

/// The text of a panic: `panic!("...")` carries a `&str`, a formatted one a `String`.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".into())
}

/// nix's FdSet::insert checks the number and panics. A panic can be caught, and this one is;
/// a server thread that did not catch it would be gone.
fn nix_fdset_panics(conn: &OwnedFd) {
    // Rust's default message on stderr would only repeat what the trace says.
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let inserted = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut set = FdSet::new();
        set.insert(conn.as_fd());
    }));
    panic::set_hook(default_hook);
    match inserted {
        Err(payload) => trace::say(format!(
            "nix's FdSet::insert({}) panicked: \"{}\"; caught with catch_unwind",
            conn.as_raw_fd(),
            panic_text(payload.as_ref())
        )),
        Ok(()) => trace::say("nix's FdSet::insert did not panic"),
    }
}

/// Forks a child that runs `body`, waits for it, and returns how it ended.
fn in_child(name: &str, body: impl FnOnce() -> i32) -> Result<WaitStatus, String> {
    trace::explain(format!("{name}: a copy of this process, where a crash costs nothing"));
    // SAFETY: the demo and server modes run on this one thread (the client is a process), so
    // no lock is held by a thread the child would lack; sys::fork gives the child a trace
    // state of its own, and glibc makes malloc safe in a forked child.
    let child: Pid = match unsafe { sys::fork() }.context("fork")? {
        ForkResult::Child => {
            trace::set_actor(name);
            let code = body();
            sys::exit(code)
        }
        ForkResult::Parent { child } => child,
    };
    trace::explain("blocks until the child ends, then says how: an exit status, or the signal that killed it");
    sys::waitpid(child).context("waitpid")
}

/// The Rust libc crate's FD_SET checks the number; past the set it panics inside a function
/// that may not unwind, and the process aborts.
fn raw_fd_set_aborts(number: RawFd) -> Result<(), String> {
    let status = in_child("child#1", || {
        // Not traced: the abort should leave no core file, and the status should read the
        // same whether this machine collects core dumps or not.
        let _ = nix::sys::prctl::set_dumpable(false);
        // The hook sees each panic before the abort; it reports them in the trace instead of
        // on stderr.
        panic::set_hook(Box::new(|info| {
            trace::say(format!("panicked: \"{}\"", panic_text(info.payload())));
        }));
        // SAFETY: FD_ZERO is given a valid fd_set to clear. FD_SET is given the same valid
        // pointer and a number past FD_SETSIZE: libc's FD_SET checks it and panics rather than
        // write out of bounds, and that panic cannot unwind out of an extern "C" function, so
        // the process aborts. Aborting this child is what the lesson shows.
        unsafe {
            let mut set: libc::fd_set = std::mem::zeroed();
            libc::FD_ZERO(&mut set);
            libc::FD_SET(number, &mut set);
        }
        trace::say("FD_SET returned");
        1
    })?;
    match status {
        WaitStatus::Signaled(_, Signal::SIGABRT, _) => {
            trace::say(format!(
                "child#1 was killed by SIGABRT (a shell would say exit status 134): \
                 the libc crate's FD_SET({number}) cannot be caught"
            ));
            Ok(())
        }
        other => Err(format!("child#1 ended with {other:?}, not killed by SIGABRT")),
    }
}

// SAFETY: the declaration matches glibc's: `long int __fdelt_chk (long int d)` (debug/fdelt_chk.c).
unsafe extern "C" {
    /// glibc's check behind C's `FD_SET`, `FD_CLR` and `FD_ISSET` when a program is built with
    /// `_FORTIFY_SOURCE` (as distributions build theirs) and the number is not a constant:
    /// the bit's word index, or an abort past `FD_SETSIZE`. Exported by glibc since 2.15.
    fn __fdelt_chk(fd: libc::c_long) -> libc::c_long;
}

/// C's FD_SET, built with `_FORTIFY_SOURCE`, calls glibc's `__fdelt_chk` with the number, which
/// aborts past FD_SETSIZE: "*** bit out of range 0 - FD_SETSIZE on fd_set ***: terminated" on
/// stderr. (Built without, nothing checks, and FD_SET writes past the end of the set:
/// `tests/kernel/select_past_1024.rs` compiles both.)
fn fortified_fd_set_aborts(number: RawFd) -> Result<(), String> {
    let status = in_child("child#2", || {
        let _ = nix::sys::prctl::set_dumpable(false); // as in child#1
        // SAFETY: __fdelt_chk takes a plain number and touches no memory of ours; past
        // FD_SETSIZE it aborts this child, which is what the lesson shows.
        let word = unsafe { __fdelt_chk(libc::c_long::from(number)) };
        trace::say(format!("__fdelt_chk returned {word}"));
        1
    })?;
    match status {
        WaitStatus::Signaled(_, Signal::SIGABRT, _) => {
            trace::say(format!(
                "child#2 was killed by SIGABRT in glibc's __fdelt_chk({number}), the check C's FD_SET makes under _FORTIFY_SOURCE"
            ));
            Ok(())
        }
        other => Err(format!("child#2 ended with {other:?}, not killed by SIGABRT")),
    }
}

/// poll watches 1023 and 1500 in one call; epoll watches 1500. Neither has a size limit.
fn poll_and_epoll_see(last: &OwnedFd, far: &OwnedFd, wait_ms: u16) -> Result<(), String> {
    let mut fds = [
        PollFd::new(last.as_fd(), PollFlags::POLLIN),
        PollFd::new(far.as_fd(), PollFlags::POLLIN),
    ];
    trace::explain("an array of {fd, events}, any numbers: 1023 (the listener) and 1500 (the client)");
    let ready = sys::poll::poll(&mut fds, PollTimeout::from(wait_ms)).context("poll")?;
    if ready == 0 || !sys::poll::has(&fds[1], PollFlags::POLLIN) {
        return Err(format!("the client sent nothing within {wait_ms} ms"));
    }
    trace::explain("an epoll instance is a descriptor too: the lowest free one, 4");
    let epoll = sys::epoll::epoll_create1(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
    let event = EpollEvent::new(EpollFlags::EPOLLIN, far.as_raw_fd() as u64);
    let watched = sys::epoll::epoll_ctl_add(&epoll, far, event).context("epoll_ctl");
    let mut events = [EpollEvent::empty(); 4];
    let waited = watched.and_then(|()| {
        trace::explain("the same line is still unread, so 1500 is ready again (level-triggered)");
        sys::epoll::epoll_wait(&epoll, &mut events, EpollTimeout::from(wait_ms)).context("epoll_wait")
    });
    let seen = match waited {
        Ok(1) if events[0].data() == far.as_raw_fd() as u64 => Ok(()),
        Ok(ready) => Err(format!("epoll_wait reported {ready} descriptors, not {FAR}")),
        Err(error) => Err(error),
    };
    trace::explain("the epoll instance goes, and its interest list with it; the connection stays");
    sys::close(epoll.0).context("close")?;
    seen
}

/// Reads the client's line and answers it.
fn answer(far: &OwnedFd) -> Result<(), String> {
    let mut buf = [0u8; RECV_SIZE];
    let n = sys::recv(far, &mut buf, MsgFlags::empty()).context("recv")?;
    if n == 0 {
        trace::say("the client closed without a word");
        return Ok(());
    }
    let reply = format!(
        "you were watched on descriptor {}: by pselect6 with a set of {BIG_SET} bits, by poll, by epoll\n",
        far.as_raw_fd()
    );
    sys::send_all(far, reply.as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
    Ok(())
}

/// A client: connect, send one line, print the answer, close.
fn client(server: SocketAddr, words: &str) -> Outcome {
    let family = if server.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    trace::explain("a new process has a table of its own: 3 is free here, whatever the server holds");
    let sock = sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")?;
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    let line = format!("{words}\n");
    sys::send_all(&sock, line.as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
    let mut buf = [0u8; RECV_SIZE];
    let n = sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv")?;
    trace::say(format!("the server answered {:?}", String::from_utf8_lossy(&buf[..n])));
    sys::close(sock).context("close")?;
    Ok(())
}
