//! Lesson 06: broken pipes and resets, or what happens when you write to a peer that is gone.
//!
//! A TCP peer that closes its socket has only said "I will send no more" (its FIN). Our next
//! send still succeeds: the bytes leave, and the peer's kernel, which has no socket left to give
//! them to, answers with a reset (RST). The send after that fails with EPIPE, and the kernel
//! also raises SIGPIPE, whose default action ends the process. Rust's runtime (like Python's)
//! ignores SIGPIPE before `main`, so here EPIPE is only a return value; a forked child that
//! puts SIGPIPE back to its default dies of it, unless it sends with MSG_NOSIGNAL. Last, a close
//! with SO_LINGER {1, 0} sends RST straight away, and the peer's recv fails with ECONNRESET.
//!
//!   make lesson-6                                       the demo: four clients, four endings
//!   make lesson-6 ARGS="server --port 7000"             replies after you hang up: EPIPE
//!   make lesson-6 ARGS="server --port 7000 default"     ... from a child with SIGPIPE at SIG_DFL
//!   make lesson-6 ARGS="server --port 7000 nosignal"    ... from a child that uses MSG_NOSIGNAL
//!   make lesson-6 ARGS="server --port 7000 reset"       resets each connection (SO_LINGER 0)
//!   make lesson-6 ARGS="client --port 7000 wait"        says hello, then reads until EOF or reset
//!
//! The demo's server is this process, on its one thread (fork is only simple there); its
//! clients are separate processes (this program again, in client mode).

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigHandler, Signal};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage, sockopt};
use nix::sys::time::TimeVal;
use nix::sys::wait::WaitStatus;
use nix::unistd::ForkResult;
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::sys::{self, Errno};
use socklab::trace;

/// Seed 003's server, whose client prints "i'm die, bye bye~", listens on 33333.
const DEFAULT_PORT: u16 = 33333;
/// How many finished handshakes may wait for accept.
const BACKLOG: i32 = 5;
/// At most this many bytes per recv.
const RECV_SIZE: usize = 100;
/// What every client sends first.
const GREETING: &[u8] = b"hello\n";
/// The server's answer, sent to a client that has already hung up.
const REPLY: &[u8] = b"server: good bye\n";
/// How long to wait for the peer's RST. On loopback it comes back within microseconds.
const RST_WAIT_MS: u16 = 1000;
/// How long a waiting client waits for the server's answer (a server that waits for it to
/// hang up never answers).
const ANSWER_WAIT_SECONDS: u8 = 5;
/// A peer such as nc may send many lines before it hangs up: at most this many recv calls.
const MAX_READS: usize = 1000;
/// Server mode stops after this many connections, so it never runs for ever by accident.
const MAX_CONNECTIONS: usize = 100;

/// How the server ends a conversation: the four things this lesson shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// This process replies twice with SIGPIPE ignored, as Rust's runtime left it: EPIPE.
    Ignored,
    /// A forked child sets SIGPIPE back to SIG_DFL and replies twice with flags 0: SIGPIPE kills it.
    DefaultAction,
    /// The same child, but both sends carry MSG_NOSIGNAL: EPIPE, and the child lives on.
    NoSignal,
    /// No reply at all: close with SO_LINGER {1, 0}, which sends RST instead of FIN.
    Reset,
}

impl Ending {
    /// The word for it on the command line: `server --port 7000 default`.
    fn from_word(word: &str) -> Result<Ending, String> {
        match word {
            "ignore" => Ok(Ending::Ignored),
            "default" => Ok(Ending::DefaultAction),
            "nosignal" => Ok(Ending::NoSignal),
            "reset" => Ok(Ending::Reset),
            other => Err(format!(
                "server: {other:?} is not an ending; use ignore, default, nosignal or reset"
            )),
        }
    }
}

fn main() {
    lessons::main(DEFAULT_PORT, run);
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo => demo(),
        Role::Server => {
            trace::set_actor("server");
            let ending = args
                .rest
                .first()
                .map_or(Ok(Ending::Ignored), |w| Ending::from_word(w))?;
            let listener = listen_on(args.addr())?;
            trace::say(format!(
                "listening on {}; try: nc {} {}, type a line, then Ctrl-C the nc",
                args.addr(),
                args.host,
                args.port
            ));
            let mut children = 0;
            for _ in 0..MAX_CONNECTIONS {
                // One client's trouble ends that conversation, not the server.
                if let Err(error) = serve_one(&listener, ending, &mut children) {
                    trace::say(format!("that connection failed: {error}; waiting for the next"));
                }
            }
            sys::close(listener).context("close")?;
            Ok(())
        }
        Role::Client => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            let waits = match args.rest.first().map(String::as_str) {
                None | Some("hangup") => false,
                Some("wait") => true,
                Some(other) => return Err(format!("client: {other:?} is neither hangup nor wait").into()),
            };
            client(args.addr(), waits)
        }
    }
}

/// socket, bind, listen: a passive socket, ready for clients.
fn listen_on(addr: SocketAddr) -> Result<OwnedFd, String> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let listener =
        sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")?;
    sys::bind(&listener, addr).context(format!("bind {addr}"))?;
    sys::listen(&listener, BACKLOG).context("listen")?;
    Ok(listener)
}

/// One conversation, ended the way `ending` says. `children` counts the children forked so
/// far, to name the next one.
fn serve_one(listener: &OwnedFd, ending: Ending, children: &mut u32) -> Result<(), String> {
    let (conn, peer) = sys::accept4(listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    trace::say(format!("connected by {peer}"));
    match ending {
        Ending::Reset => {
            // Wait for the peer's first bytes, so that it is there to receive the reset.
            let mut buf = [0u8; RECV_SIZE];
            sys::recv(&conn, &mut buf, MsgFlags::empty()).context("recv")?;
            reset(conn)
        }
        Ending::Ignored => {
            read_until_hangup(&conn, &peer)?;
            reply_and_await_reset(&conn, MsgFlags::empty(), true)?;
            trace::explain("the RST is in and the connection is dead; SIGPIPE is ignored, so only EPIPE comes back");
            match sys::send(&conn, REPLY, MsgFlags::empty()) {
                Err(Errno::EPIPE) => trace::say(
                    "EPIPE, and this process goes on. Python, which also ignores SIGPIPE, \
                     raises BrokenPipeError: [Errno 32] Broken pipe here (seed 002)",
                ),
                other => return Err(format!("the second send should fail with EPIPE; it gave {other:?}")),
            }
            sys::close(conn).context("close")?;
            Ok(())
        }
        Ending::DefaultAction | Ending::NoSignal => {
            read_until_hangup(&conn, &peer)?;
            *children += 1;
            reply_from_child(conn, ending, *children)
        }
    }
}

/// Reads what the peer sends until it hangs up (recv returns 0).
fn read_until_hangup(conn: &OwnedFd, peer: &SockaddrStorage) -> Result<(), String> {
    let mut buf = [0u8; RECV_SIZE];
    for _ in 0..MAX_READS {
        let n = sys::recv(conn, &mut buf, MsgFlags::empty()).context("recv")?;
        if n == 0 {
            trace::say(format!(
                "{peer} hung up: recv returned 0. We have not, and may still send"
            ));
            return Ok(());
        }
    }
    Err(format!("{peer} sent {MAX_READS} times without hanging up"))
}

/// The first reply after the peer hung up, which succeeds; then wait until the peer's RST is in.
/// `explained`: say what these two calls mean (a child repeating them need not).
fn reply_and_await_reset(conn: &OwnedFd, flags: MsgFlags, explained: bool) -> Result<(), String> {
    if explained {
        trace::explain("the peer's FIN only said it will send no more; our bytes still leave, so this succeeds");
    }
    sys::send(conn, REPLY, flags).context("the first send")?;
    let mut fds = [PollFd::new(conn.as_fd(), PollFlags::empty())];
    if explained {
        trace::explain("events=0 asks for nothing, but POLLERR and POLLHUP always come back: this waits for the RST");
    }
    let ready = sys::poll::poll(&mut fds, PollTimeout::from(RST_WAIT_MS)).context("poll")?;
    if ready == 0 || !sys::poll::has(&fds[0], PollFlags::POLLERR) {
        return Err(format!(
            "no RST from the peer within {RST_WAIT_MS} ms: it only shut down its sending side \
             (shutdown SHUT_WR, as nc does at the end of its input) and still reads"
        ));
    }
    trace::say("the peer's kernel had no socket left for our bytes and answered RST: POLLERR|POLLHUP");
    Ok(())
}

/// Forks a child that replies twice with SIGPIPE at its default action; waits for it and
/// checks how it ended: killed by SIGPIPE, or (with MSG_NOSIGNAL) exited with status 0.
fn reply_from_child(conn: OwnedFd, ending: Ending, number: u32) -> Result<(), String> {
    // The first child is explained; the second repeats the same calls.
    let first = number == 1;
    if first {
        trace::explain("a child process: a copy of this one, with copies of descriptors 3 and 4");
    }
    // SAFETY: the demo and server modes run on this one thread (the clients are processes), so
    // no lock of the lesson's is held by a thread the child would lack; sys::fork gives the
    // child a trace state of its own, and glibc makes malloc safe in a forked child.
    let forked = unsafe { sys::fork() }.context("fork")?;
    let child = match forked {
        ForkResult::Child => {
            trace::set_actor(format!("child#{number}"));
            let code = match child_replies(conn, ending, first) {
                Ok(()) => 0,
                Err(error) => {
                    eprintln!("lesson-06: child#{number}: {error}");
                    1
                }
            };
            trace::explain("the child ends here, never returning into its parent's code");
            sys::exit(code)
        }
        ForkResult::Parent { child } => child,
    };
    if first {
        trace::explain("the child holds its own copy of the connection; closing ours leaves it to the child");
    }
    sys::close(conn).context("close")?;
    if first {
        trace::explain("blocks until the child ends, then says how: an exit status, or the signal that killed it");
    }
    let status = sys::waitpid(child).context("waitpid")?;
    match (ending, status) {
        (Ending::DefaultAction, WaitStatus::Signaled(_, Signal::SIGPIPE, _)) => {
            trace::say(format!(
                "child#{number} was killed by SIGPIPE: its second sendto never returned"
            ));
            Ok(())
        }
        (Ending::NoSignal, WaitStatus::Exited(_, 0)) => {
            trace::say(format!(
                "child#{number} got EPIPE instead of the signal and exited with 0"
            ));
            Ok(())
        }
        (_, other) => Err(format!(
            "child#{number} ended with {other:?}, not as this lesson expects"
        )),
    }
}

/// In the child: SIGPIPE back to SIG_DFL, as a C program starts; then reply twice.
fn child_replies(conn: OwnedFd, ending: Ending, explained: bool) -> Result<(), String> {
    if explained {
        trace::explain(
            "SIG_DFL, as a C program starts: SIGPIPE would end this process; the old SIG_IGN came with the fork",
        );
    }
    sys::sigaction(Signal::SIGPIPE, SigHandler::SigDfl).context("sigaction")?;
    let flags = if ending == Ending::NoSignal {
        MsgFlags::MSG_NOSIGNAL
    } else {
        MsgFlags::empty()
    };
    reply_and_await_reset(&conn, flags, false)?;
    if ending == Ending::DefaultAction {
        trace::say(
            "send again with flags 0: the kernel fails it with EPIPE and raises SIGPIPE, whose default \
             action ends this process before sendto returns: its line never gets a result (= ?)",
        );
        let result = sys::send(&conn, REPLY, flags);
        return Err(format!(
            "still alive after the second send ({result:?}): SIGPIPE did not kill us"
        ));
    }
    trace::explain("MSG_NOSIGNAL: the kernel fails this send with EPIPE and raises no signal");
    match sys::send(&conn, REPLY, flags) {
        Err(Errno::EPIPE) => trace::say("EPIPE, and this child lives on, SIGPIPE at SIG_DFL notwithstanding"),
        other => return Err(format!("the second send should fail with EPIPE; it gave {other:?}")),
    }
    trace::explain("the last descriptor of the connection (the parent closed its copy), already dead: nothing is sent");
    sys::close(conn).context("close")?;
    Ok(())
}

/// Abort the connection: linger on, for zero seconds, then close.
fn reset(conn: OwnedFd) -> Result<(), String> {
    trace::explain("l_onoff=1, l_linger=0: close will not try to deliver anything, it aborts the connection");
    let abort = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    sys::setsockopt(&conn, sockopt::Linger, &abort).context("setsockopt SO_LINGER")?;
    trace::explain("with linger 0, close sends RST instead of FIN");
    sys::close(conn).context("close")?;
    Ok(())
}

/// A client: say hello, then either hang up at once or read until EOF or a reset.
fn client(server: SocketAddr, waits: bool) -> Outcome {
    let family = if server.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let sock = sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")?;
    if waits {
        // Set before the hello, so that the recv after it starts at once.
        trace::explain("SO_RCVTIMEO, 5 s: a recv that waits longer fails with EAGAIN instead of hanging");
        let limit = TimeVal::new(i64::from(ANSWER_WAIT_SECONDS), 0);
        sys::setsockopt(&sock, sockopt::ReceiveTimeout, &limit).context("setsockopt SO_RCVTIMEO")?;
    }
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    sys::send_all(&sock, GREETING, MsgFlags::MSG_NOSIGNAL).context("send")?;
    if !waits {
        trace::explain("we hang up without reading: FIN goes out, and from now on our kernel answers data with RST");
        sys::close(sock).context("close")?;
        return Ok(());
    }
    let mut buf = [0u8; RECV_SIZE];
    trace::explain("waits for the server's answer: bytes, 0 for its FIN, or an error for its RST");
    for _ in 0..MAX_READS {
        match sys::recv(&sock, &mut buf, MsgFlags::empty()) {
            Ok(0) => {
                trace::say("the server closed its end: end of file");
                break;
            }
            Ok(n) => trace::say(format!("the server said {:?}", String::from_utf8_lossy(&buf[..n]))),
            Err(Errno::ECONNRESET) => {
                trace::say("the server reset the connection. Seed 003's client prints \"i'm die, bye bye~\" here");
                break;
            }
            Err(Errno::EAGAIN) => {
                return Err(format!("no answer from the server within {ANSWER_WAIT_SECONDS} s").into());
            }
            Err(error) => return Err(format!("recv: {error}").into()),
        }
    }
    sys::close(sock).context("close")?;
    Ok(())
}

/// The server on this thread; one client process per ending, one ending after the other.
fn demo() -> Outcome {
    trace::set_actor("server");
    let listener = listen_on("127.0.0.1:0".parse().expect("a literal address"))?;
    trace::explain("port 0 asked the kernel to choose; this asks which port it chose");
    let bound = sys::getsockname(&listener).context("getsockname")?;
    let port = bound.as_sockaddr_in().map_or(0, |a| a.port());
    trace::explain("SIG_IGN, as Python sets at startup; the old action shows Rust's runtime did it before main");
    sys::sigaction(Signal::SIGPIPE, SigHandler::SigIgn).context("sigaction")?;

    let scenes = [
        (
            "client#1",
            "hangup",
            Ending::Ignored,
            "1. client#1 says hello and hangs up; we reply twice, SIGPIPE ignored",
        ),
        (
            "client#2",
            "hangup",
            Ending::DefaultAction,
            "2. client#2 does the same; a child with SIGPIPE at SIG_DFL replies twice",
        ),
        (
            "client#3",
            "hangup",
            Ending::NoSignal,
            "3. client#3 does the same; the child replies with MSG_NOSIGNAL",
        ),
        (
            "client#4",
            "wait",
            Ending::Reset,
            "4. client#4 says hello and waits; we close with SO_LINGER {1, 0}",
        ),
    ];
    let mut children = 0;
    for (actor, word, ending, headline) in scenes {
        trace::say(headline);
        let client = lessons::spawn_process(actor, "client", port, &[word]).context(actor)?;
        let served = serve_one(&listener, ending, &mut children);
        let waited = lessons::wait_process(actor, client);
        served?;
        waited?;
    }
    trace::explain(
        "the children that shared the listener have ended: this is its last descriptor; a listener sends no FIN",
    );
    sys::close(listener).context("close")?;
    Ok(())
}
