//! Lesson 09: select(2), the first way to wait for many descriptors at once.
//!
//! Two programs from seed 000, done one level lower. Listing 14 waits for the keyboard with
//! `select([sys.stdin], [], [])`; listing 15 connects two sockets and waits, five seconds at a
//! time, for whichever of them has something to read. Watch what select does to its
//! arguments: the sets come back holding only the ready descriptors, and the timeout comes
//! back holding the time that was left. In the kernel the call is `pselect6`: glibc's
//! `select()` turns the timeval into a timespec, calls pselect6 with no signal mask, and turns
//! the time left back into a timeval; `socklab::sys::select::select` does the same itself.
//!
//!   make lesson-9                                  the demo: both listings, scripted
//!   make lesson-9 ARGS=stdin                       listing 14 on your keyboard: type, then Ctrl-D
//!   make lesson-9 ARGS="server --port 2525"        the server listing 15's client talks to
//!   make lesson-9 ARGS="client --port 2525"        listing 15: two sockets, select, 5 s timeouts
//!
//! In the demo the "keyboard" is this program writing into a pipe that is a child process's
//! stdin (its fd 0), staged (narrated, not traced), and listing 15's client is a child
//! process too, with its own fd table.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::socket::{AddressFamily, MsgFlags, Shutdown, SockFlag, SockProtocol, SockType};
use nix::sys::time::{TimeVal, TimeValLike};
use socklab::lessons::stage::Typist;
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::sys::select::FdSet;
use socklab::{sys, trace};

/// Listing 15 connects to port 25 (SMTP, which needs root to serve); 2525 is its usual stand-in.
const DEFAULT_PORT: u16 = 2525;
/// Python's `recv(100)`, and how much one read of stdin takes.
const RECV_SIZE: usize = 100;
/// Listing 15's timeout: `select.select([sock1, sock2], [], [], 5)`.
const SEED_TIMEOUT_SECS: i64 = 5;
/// The demo's "nothing will arrive" wait: long enough to see, short enough not to bore.
const SHORT_TIMEOUT_MS: i64 = 500;
/// Listing 14 waits for ever; we give up after this long without a keystroke.
const STDIN_TIMEOUT_SECS: i64 = 30;
/// At most this many lines of stdin, and this many rounds of listing 15's loop (a minute of
/// five-second timeouts): every loop here ends by itself.
const STDIN_ROUNDS: usize = 20;
const WATCH_ROUNDS: usize = 12;
/// How many pairs of clients `server` mode serves before it stops.
const SERVER_PAIRS: usize = 100;
/// How long the demo's "keyboard" waits before typing, and before pressing Ctrl-D: the reader
/// sits in select meanwhile. (The reader's trace is the same whatever these are.)
const TYPING_PAUSE: Duration = Duration::from_millis(300);
/// What the demo's keyboard types.
const TYPED: &str = "hello from the keyboard\n";
/// What the server says first, and on which of the two connections: only the second.
const GREETING: &[u8] = b"220 hello on your second socket\n";

fn main() {
    lessons::main(DEFAULT_PORT, run);
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo if args.rest.first().map(String::as_str) == Some("stdin") => {
            if trace::actor() == "main" {
                trace::set_actor("reader");
            }
            read_stdin()
        }
        Role::Demo => demo(),
        Role::Server => {
            trace::set_actor("server");
            let listener = listen_on(args.addr())?;
            trace::say(format!(
                "listening on {}; run `make lesson-9 ARGS=\"client --port {}\"`",
                args.addr(),
                args.port
            ));
            for _ in 0..SERVER_PAIRS {
                if let Err(error) = serve_pair(&listener) {
                    trace::say(format!("that pair failed: {error}; waiting for the next"));
                }
            }
            sys::close(listener).context("close")?;
            Ok(())
        }
        Role::Client => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            watch_two_sockets(args.addr())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What select does to its arguments, shown before and after every call.

/// `[3 4]`: the descriptors in a set, as strace prints a bit-set.
fn members(set: &FdSet) -> String {
    let fds: Vec<String> = set.fds().map(|fd| fd.to_string()).collect();
    format!("[{}]", fds.join(" "))
}

/// The timeval as our program holds it: seconds and MICROseconds.
fn show_timeval(tv: &TimeVal) -> String {
    format!("{{tv_sec={}, tv_usec={}}}", tv.tv_sec(), tv.tv_usec())
}

/// Builds a read set of `watched`, calls select, and returns the descriptors that came back
/// ready. The set is a bitmap of numbers, as in C; the caller may close some of the descriptors
/// once it knows which are ready (never while walking the set).
fn wait_readable(watched: &[BorrowedFd<'_>], timeout: &mut TimeVal, note: Option<&str>) -> Result<Vec<RawFd>, String> {
    let mut readfds = FdSet::new();
    for fd in watched {
        readfds.insert(fd.as_raw_fd());
    }
    let highest = readfds.highest().unwrap_or(-1);
    trace::say(format!(
        "before: readfds={} timeout={}; nfds = highest fd {highest} + 1 = {}",
        members(&readfds),
        show_timeval(timeout),
        highest + 1
    ));
    if let Some(note) = note {
        trace::explain(note);
    }
    let ready = sys::select::select(Some(&mut readfds), None, None, Some(&mut *timeout)).context("select")?;
    trace::say(format!(
        "after:  readfds={}, {ready} ready; the set was rewritten in place",
        members(&readfds)
    ));
    // What is left of the timeout changes from run to run unless it ran out (then it is 0).
    let left = format!("after:  timeout={}: the time that was left", show_timeval(timeout));
    if timeout.num_microseconds() == 0 {
        trace::say(left);
    } else {
        trace::measured(left);
    }
    Ok(readfds.fds().collect())
}

// ---------------------------------------------------------------------------------------------
// Listing 14: select on stdin.

/// `rlist, wlist, elist = select.select([sys.stdin], [], [])`, then read what is there; again
/// until end of file (Ctrl-D on a terminal; the writer closing the pipe in the demo).
fn read_stdin() -> Outcome {
    let stdin = std::io::stdin();
    let keyboard = stdin.as_fd();
    let mut buf = [0u8; RECV_SIZE];
    trace::say("waiting for stdin (fd 0); type a line, or Ctrl-D to end");
    for round in 0..STDIN_ROUNDS {
        let mut timeout = TimeVal::seconds(STDIN_TIMEOUT_SECS);
        let note = (round == 0).then_some(
            "select(3) as glibc makes it: pselect6, the timeval passed as a timespec (usec -> nsec), NULL for the signal mask; blocks until fd 0 is readable",
        );
        let ready = wait_readable(&[keyboard], &mut timeout, note)?;
        if ready.is_empty() {
            trace::say(format!("nothing on stdin for {STDIN_TIMEOUT_SECS} s; giving up"));
            return Ok(());
        }
        trace::explain("select said fd 0 is readable, so this read returns at once: with data, or 0 at end of file");
        let n = sys::read(keyboard, &mut buf).context("read stdin")?;
        if n == 0 {
            trace::say("read returned 0: end of file, which select also reports as readable");
            return Ok(());
        }
        trace::say(format!("read {:?}", String::from_utf8_lossy(&buf[..n])));
    }
    trace::say(format!("read {STDIN_ROUNDS} times; that is enough"));
    Ok(())
}

/// The demo's keyboard: this program again in `stdin` mode, its fd 0 a pipe the demo types
/// into (staged: the typing is narrated, not traced).
fn type_into_a_reader() -> Outcome {
    let mut reader = Typist::start("reader", &["stdin"])?;
    std::thread::sleep(TYPING_PAUSE);
    reader.types(TYPED)?;
    std::thread::sleep(TYPING_PAUSE);
    reader.presses_ctrl_d();
    reader.wait()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Listing 15: two sockets, one select.

fn family(addr: SocketAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn connect_to(server: SocketAddr) -> Result<OwnedFd, String> {
    let sock = sys::socket(
        family(server),
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .context("socket")?;
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    Ok(sock)
}

/// Listing 15, preceded by three experiments that show what select rewrites.
fn watch_two_sockets(server: SocketAddr) -> Outcome {
    let sock1 = connect_to(server)?;
    let sock2 = connect_to(server)?;
    let mut buf = [0u8; RECV_SIZE];

    trace::say("1. the seed's 5 s timeout; the server greets only on the second socket");
    let mut timeout = TimeVal::seconds(SEED_TIMEOUT_SECS);
    let ready = wait_readable(
        &[sock1.as_fd(), sock2.as_fd()],
        &mut timeout,
        Some(
            "returns when either fd is readable; the kernel writes the time left into the timespec, and it goes back into the timeval cut to microseconds",
        ),
    )?;
    for fd in ready {
        let n = sys::recv(borrow(fd, &[&sock1, &sock2])?, &mut buf, MsgFlags::empty()).context("recv")?;
        trace::say(format!("fd {fd} said {:?}", String::from_utf8_lossy(&buf[..n])));
    }

    trace::say(format!(
        "2. nothing more will arrive: a {SHORT_TIMEOUT_MS} ms timeout runs out"
    ));
    let mut timeout = TimeVal::milliseconds(SHORT_TIMEOUT_MS);
    wait_readable(
        &[sock1.as_fd(), sock2.as_fd()],
        &mut timeout,
        Some("no fd becomes readable: returns 0 when the time is up, every set emptied"),
    )?;

    trace::say("3. the same timeval again, without re-arming it: it holds 0, so select returns at once");
    wait_readable(
        &[sock1.as_fd(), sock2.as_fd()],
        &mut timeout,
        Some("a zero timeout is a poll: look, do not wait (a loop that forgets to re-arm spins here)"),
    )?;

    trace::say("4. listing 15's loop: select, recv from each ready socket, until both are closed");
    trace::explain("the server answers this on socket 1, then closes its side");
    sys::send_all(&sock1, b"ping\n", MsgFlags::MSG_NOSIGNAL).context("send")?;
    let mut open = vec![sock1, sock2];
    for _ in 0..WATCH_ROUNDS {
        if open.is_empty() {
            break;
        }
        // Re-armed every round: the previous call left only the remainder in it.
        let mut timeout = TimeVal::seconds(SEED_TIMEOUT_SECS);
        let watched: Vec<BorrowedFd<'_>> = open.iter().map(AsFd::as_fd).collect();
        let ready = wait_readable(&watched, &mut timeout, None)?;
        if ready.is_empty() {
            trace::say("Five seconds elapsed.");
            continue;
        }
        // The set is gone by now; closing a descriptor cannot disturb it.
        for fd in ready {
            let index = open
                .iter()
                .position(|sock| sock.as_raw_fd() == fd)
                .ok_or("select returned a descriptor we did not give it")?;
            let n = sys::recv(&open[index], &mut buf, MsgFlags::empty()).context("recv")?;
            if n == 0 {
                trace::say(format!(
                    "fd {fd}: recv returned 0, the server closed it; stop watching it"
                ));
                sys::close(open.remove(index)).context("close")?;
            } else {
                trace::say(format!("fd {fd} said {:?}", String::from_utf8_lossy(&buf[..n])));
            }
        }
    }
    for sock in open {
        sys::close(sock).context("close")?;
    }
    Ok(())
}

/// The socket among `socks` whose number is `fd`.
fn borrow<'a>(fd: RawFd, socks: &[&'a OwnedFd]) -> Result<&'a OwnedFd, String> {
    socks
        .iter()
        .find(|sock| sock.as_raw_fd() == fd)
        .copied()
        .ok_or_else(|| format!("select returned fd {fd}, which we did not give it"))
}

// ---------------------------------------------------------------------------------------------
// The server listing 15's client talks to (a plain blocking one: select is the client's part).

fn listen_on(addr: SocketAddr) -> Result<OwnedFd, String> {
    let listener = sys::socket(
        family(addr),
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .context("socket")?;
    sys::setsockopt(&listener, nix::sys::socket::sockopt::ReuseAddr, &true).context("setsockopt SO_REUSEADDR")?;
    sys::bind(&listener, addr).context(format!("bind {addr}"))?;
    sys::listen(&listener, 5).context("listen")?;
    Ok(listener)
}

/// Two connections from one client: greet on the second, answer a line on the first with
/// "pong", close the first once the client has closed it, then the second.
fn serve_pair(listener: &OwnedFd) -> Result<(), String> {
    let (first, _) = sys::accept4(listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    let (second, _) = sys::accept4(listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    trace::explain("only the second socket gets something: the client's select will say [4], not [3 4]");
    sys::send_all(&second, GREETING, MsgFlags::MSG_NOSIGNAL).context("send")?;
    let mut buf = [0u8; RECV_SIZE];
    trace::explain("blocks until the client sends on its first socket (after its timeouts ran out)");
    let n = sys::recv(&first, &mut buf, MsgFlags::empty()).context("recv")?;
    if n > 0 {
        sys::send_all(&first, b"pong\n", MsgFlags::MSG_NOSIGNAL).context("send")?;
    }
    trace::explain("our FIN: the client's recv on that socket will return 0");
    sys::shutdown(&first, Shutdown::Write).context("shutdown")?;
    // Wait for the client's close of its first socket (bounded: at most this many reads).
    for _ in 0..RECV_SIZE {
        if sys::recv(&first, &mut buf, MsgFlags::empty()).context("recv")? == 0 {
            break;
        }
    }
    sys::close(first).context("close")?;
    trace::explain("now the second socket: the client's select reports it readable, and recv returns 0");
    sys::close(second).context("close")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// Listing 14 with a typing keyboard, then listing 15 against a server thread.
fn demo() -> Outcome {
    trace::set_actor("keyboard");
    type_into_a_reader()?;

    let (port_tx, port_rx) = mpsc::channel();
    let server = trace::spawn("server", move || -> Result<(), String> {
        let listener = listen_on("127.0.0.1:0".parse().expect("a literal address"))?;
        let bound = sys::getsockname(&listener).context("getsockname")?;
        port_tx
            .send(bound.as_sockaddr_in().map_or(0, |a| a.port()))
            .map_err(|e| e.to_string())?;
        serve_pair(&listener)?;
        sys::close(listener).context("close")?;
        Ok(())
    });
    let port = port_rx
        .recv()
        .map_err(|_| "the server thread stopped before listening")?;
    lessons::run_process("client", "client", port, &[])?;
    server.join().map_err(|_| "the server panicked")??;
    Ok(())
}
