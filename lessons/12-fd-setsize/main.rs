//! Lesson 12: the FD_SETSIZE wall. select can watch descriptors 0 to 1023 and no others;
//! poll and epoll take any number the process may hold.
//!
//! Seed 003 says "a single process can watch at most 1024 descriptors with select". That is
//! not a limit on how many descriptors a process may *hold* (RLIMIT_NOFILE says that), but on
//! their *numbers*: an fd_set is a bitmap of 1024 bits, so descriptor 1024 has no bit. This
//! program raises the descriptor limit, fills the table until a client's connection lands
//! on descriptor 1024, and then watches what each way of waiting makes of it:
//!
//! - socklab's `select::fits` says no, and a select server (lesson 11's chat room) refuses
//!   the client with a clear message;
//! - nix's `FdSet::insert` panics, and C's `FD_SET` (libc's, in Rust) aborts the process:
//!   both shown in a child process, so the demo survives to tell;
//! - poll and epoll watch descriptor 1100 as easily as descriptor 3.
//!
//!   make lesson-12                                  the demo: a server and one client
//!   make lesson-12 ARGS="server --port 7000"        the same server, for `nc 127.0.0.1 7000`
//!   make lesson-12 ARGS="client --port 7000 hi"     a client for a server you started
//!
//! Filling a thousand descriptors takes a thousand dup calls. Those are made straight
//! through nix, not traced (a thousand identical lines teach nothing); the narration says
//! where they happen, and the interesting dups are traced.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
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
/// The descriptor limit this lesson sets, soft and hard: room for 1101 descriptors and more.
/// The same number on every machine, so the trace reads the same everywhere.
const LIMIT: libc::rlim_t = 4096;
/// The last descriptor an fd_set can hold: FD_SETSIZE - 1.
const LAST_SELECTABLE: RawFd = select::SETSIZE as RawFd - 1;
/// The number poll and epoll are shown watching: well past the wall.
const FAR: RawFd = 1100;
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
    // The client starts now, before the table fills up: a new process would inherit all of it.
    let mut client = lessons::spawn_process("client#1", "client", port, &[]).context("starting client#1")?;
    let result = hold_many_and_serve(&listener, 1, DEMO_WAIT_MS);
    // Closed before waiting for the client: if serving failed, a connection still queued here
    // is reset, and the client stops waiting for an answer.
    sys::close(listener).context("close")?;
    let status = client.wait().context("waiting for client#1")?;
    result?;
    if !status.success() {
        return Err(format!("client#1 ended with {status}").into());
    }
    Ok(())
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
    hold_many_and_serve(&listener, MAX_CONNECTIONS, SERVER_WAIT_MS)?;
    sys::close(listener).context("close")?;
    Ok(())
}

/// RLIMIT_NOFILE: how many descriptors this process may hold. The soft limit is the one the
/// kernel enforces; the hard limit is the ceiling the soft one may be moved up to.
fn set_descriptor_limit() -> Result<(), String> {
    // Read once without a trace line: the numbers differ from machine to machine (1024 soft on
    // most desktops, 20000 here), and the trace must read the same everywhere.
    if let Ok((soft, hard)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
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

/// Copies of `fd`, made with untraced `dup` calls, until the next free descriptor is `next`.
/// dup returns the lowest free number, so they fill the table in order.
fn fill_until(fd: BorrowedFd<'_>, next: RawFd) -> Result<Vec<OwnedFd>, String> {
    let mut copies = Vec::new();
    // A bound: never more dups than numbers below `next`.
    for _ in 0..next {
        let copy = nix::unistd::dup(fd).context("dup")?;
        let number = copy.as_raw_fd();
        copies.push(copy);
        if number == next - 1 {
            return Ok(copies);
        }
        if number >= next {
            break;
        }
    }
    Err(format!(
        "filling the descriptor table did not stop at {next}: something else holds descriptors"
    ))
}

/// Closes what [`fill_until`] made, untraced as it was made.
fn release(copies: Vec<OwnedFd>) -> Result<(), String> {
    for copy in copies {
        nix::unistd::close(copy).context("close")?;
    }
    Ok(())
}

/// Fills the table to 1022, makes 1023 with a traced dup, and serves `clients` clients, each
/// of which arrives on descriptor 1024.
fn hold_many_and_serve(listener: &OwnedFd, clients: usize, wait_ms: u16) -> Result<(), String> {
    let low = fill_until(listener.as_fd(), LAST_SELECTABLE)?;
    trace::say(format!(
        "{} dup calls, not traced, filled descriptors 4 to {}: they stand for a busy server's other clients",
        low.len(),
        LAST_SELECTABLE - 1
    ));
    trace::explain("1023: the last descriptor an fd_set has a bit for (FD_SETSIZE is 1024)");
    let last = sys::dup(listener).context("dup")?;
    let mut high = Vec::new();
    let mut result = Ok(());
    for number in 1..=clients {
        result = serve_one(listener, &last, &mut high, number == 1, wait_ms);
        if let Err(error) = &result {
            if clients == 1 {
                break;
            }
            trace::say(format!("that connection failed: {error}; waiting for the next"));
        }
    }
    release(high)?;
    release(low)?;
    trace::say("the copies are closed again, untraced");
    trace::explain("only a copy: the listening socket lives on in 3");
    sys::close(last).context("close")?;
    result
}

/// One client: select still works on 1023; the client lands on 1024, past the wall; poll and
/// epoll serve it on 1100. The first time, two children show what FdSet and FD_SET do.
fn serve_one(
    listener: &OwnedFd,
    last: &OwnedFd,
    high: &mut Vec<OwnedFd>,
    first: bool,
    wait_ms: u16,
) -> Result<(), String> {
    select_on_the_last_bit(last, wait_ms)?;
    trace::explain("every lower number is taken: the new connection gets 1024, the first one past the wall");
    let (conn, peer) = sys::accept4(listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    trace::say(format!("connected by {peer}"));
    refuse_as_a_select_server_would(&conn);
    if first {
        nix_fdset_panics(&conn)?;
    }
    if high.is_empty() {
        *high = fill_until(conn.as_fd(), FAR)?;
        trace::say(format!(
            "{} more untraced dup calls filled descriptors 1025 to {}",
            high.len(),
            FAR - 1
        ));
    }
    trace::explain("a copy of the connection on 1100, to watch far past the wall");
    let far = sys::dup(&conn).context("dup")?;
    if first {
        raw_fd_set_aborts(far.as_raw_fd())?;
    }
    poll_and_epoll_see(last, &far, wait_ms)?;
    answer(&far)?;
    trace::explain("1024 still refers to the connection, so closing 1100 sends nothing");
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
         and close it. This server carries on with poll and epoll instead",
        select::SETSIZE
    ));
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

/// The text of a panic: `panic!("...")` carries a `&str`, a formatted one a `String`.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".into())
}

/// nix's FdSet::insert checks the number and panics; a child catches the panic and reports it.
fn nix_fdset_panics(conn: &OwnedFd) -> Result<(), String> {
    let status = in_child("child#1", || {
        // The panic is caught below and reported in the trace; Rust's default message on
        // stderr would only repeat it.
        panic::set_hook(Box::new(|_| {}));
        let inserted = panic::catch_unwind(AssertUnwindSafe(|| {
            let mut set = FdSet::new();
            set.insert(conn.as_fd());
        }));
        match inserted {
            Err(payload) => {
                trace::say(format!(
                    "FdSet::insert({}) panicked: \"{}\"; caught with catch_unwind",
                    conn.as_raw_fd(),
                    panic_text(payload.as_ref())
                ));
                0
            }
            Ok(()) => {
                trace::say("FdSet::insert did not panic");
                1
            }
        }
    })?;
    match status {
        WaitStatus::Exited(_, 0) => {
            trace::say("child#1 survived its panic: a server thread that did not catch it would be gone");
            Ok(())
        }
        other => Err(format!("child#1 ended with {other:?}, not with exit status 0")),
    }
}

/// libc::FD_SET writes a bit into the bitmap; past its end it panics inside a function that
/// may not unwind, and the process aborts. In C, FD_SET would write past the bitmap.
fn raw_fd_set_aborts(number: RawFd) -> Result<(), String> {
    let status = in_child("child#2", || {
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
                "child#2 was killed by SIGABRT (a shell would say exit status 134): \
                 FD_SET({number}) cannot be caught"
            ));
            Ok(())
        }
        other => Err(format!("child#2 ended with {other:?}, not killed by SIGABRT")),
    }
}

/// poll watches 1023 and 1100 in one call; epoll watches 1100. Neither has a size limit.
fn poll_and_epoll_see(last: &OwnedFd, far: &OwnedFd, wait_ms: u16) -> Result<(), String> {
    let mut fds = [
        PollFd::new(last.as_fd(), PollFlags::POLLIN),
        PollFd::new(far.as_fd(), PollFlags::POLLIN),
    ];
    trace::explain("an array of {fd, events}, any numbers: 1023 (the listener) and 1100 (the client)");
    let ready = sys::poll::poll(&mut fds, PollTimeout::from(wait_ms)).context("poll")?;
    if ready == 0 || !sys::poll::has(&fds[1], PollFlags::POLLIN) {
        return Err(format!("the client sent nothing within {wait_ms} ms"));
    }
    trace::say("poll: 1100 is readable, the client's line is waiting");

    trace::explain("an epoll instance is a descriptor too: the lowest free one, 1101");
    let epoll = sys::epoll::epoll_create1(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
    let event = EpollEvent::new(EpollFlags::EPOLLIN, far.as_raw_fd() as u64);
    let watched = sys::epoll::epoll_ctl_add(&epoll, far, event).context("epoll_ctl");
    let mut events = [EpollEvent::empty(); 4];
    let waited = watched.and_then(|()| {
        trace::explain("the same line is still unread, so 1100 is ready again (level-triggered)");
        sys::epoll::epoll_wait(&epoll, &mut events, EpollTimeout::from(wait_ms)).context("epoll_wait")
    });
    let seen = match waited {
        Ok(1) if events[0].data() == far.as_raw_fd() as u64 => Ok(()),
        Ok(ready) => Err(format!("epoll_wait reported {ready} descriptors, not 1100")),
        Err(error) => Err(error),
    };
    if seen.is_ok() {
        trace::say("epoll: 1100 is readable too");
    }
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
        "poll and epoll watched you on descriptor {}; select could not have\n",
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
