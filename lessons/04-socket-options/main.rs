//! Lesson 04: socket options, and why a restarted server says "Address already in use".
//!
//! `setsockopt` and `getsockopt` change and read a socket's settings in the kernel. The demo
//! shows the ones a server and a client meet first:
//!
//! - SO_REUSEADDR and TIME_WAIT: the server hangs up first, so its side of the connection
//!   lingers in TIME_WAIT; a restart without SO_REUSEADDR gets EADDRINUSE, with it the bind works;
//! - SO_SNDBUF and SO_RCVBUF: ask for 32768 bytes, read back 65536 (Linux doubles the value);
//! - SO_KEEPALIVE with TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT; TCP_NODELAY (no Nagle);
//! - SO_RCVTIMEO: a recv that gives up with EAGAIN (Python's `settimeout` has the same aim but
//!   does not use it: a non-blocking socket and a poll before each call);
//! - SO_LINGER {on, 0 s}: close sends RST instead of FIN, and the peer's recv gets ECONNRESET.
//!
//!   make lesson-4                                  the demo: a server, its restart, two clients
//!   make lesson-4 ARGS="server --port 7000"        a server that greets and hangs up first
//!   make lesson-4 ARGS="server --port 7000 no-reuse"   the same without SO_REUSEADDR
//!   make lesson-4 ARGS="client --port 7000"        the options client, ending with a reset
//!
//! The clients are separate processes (this program again, in client mode): each has its own
//! descriptor table, as it would in a second terminal.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::Instant;

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::sys::{self, Errno};
use socklab::trace;

/// Seed 003's chat server listens on 33333 and sets SO_REUSEADDR; `server` mode does the same.
const DEFAULT_PORT: u16 = 33333;
/// How many finished handshakes may wait for accept.
const BACKLOG: i32 = 5;
/// At most this many bytes per recv.
const RECV_SIZE: usize = 100;
/// What the server says before it hangs up on a client (seed 001's words).
const GREETING: &str = "thank you for connecting\n";
/// The buffer size the client asks for; the kernel keeps twice as much (socket(7)).
const BUFFER_ASKED: usize = 32 * 1024;
/// Keepalive: seconds of silence before the first probe, seconds between probes, and how many
/// unanswered probes declare the peer dead (tcp(7)).
const KEEPALIVE_IDLE_S: u32 = 10;
const KEEPALIVE_INTERVAL_S: u32 = 5;
const KEEPALIVE_PROBES: u32 = 3;
/// How long the client's recv waits before giving up (`sock.settimeout(0.2)` would wait as long
/// in Python, in a poll before the recv).
const RECEIVE_TIMEOUT_MS: i64 = 200;
/// The word that makes a client read until the server hangs up (the demo's client#1).
const UNTIL_EOF: &str = "until-eof";
/// The word that makes `server` mode leave SO_REUSEADDR off, to see a restart fail.
const NO_REUSE: &str = "no-reuse";
/// `server` mode serves this many clients, then stops.
const SERVER_MODE_CLIENTS: usize = 1000;
/// A client reads at most this many times before it stops waiting for the end.
const MAX_READS: usize = 64;

fn main() {
    lessons::main(DEFAULT_PORT, run);
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo => demo(),
        Role::Server => {
            trace::set_actor("server");
            let reuse = !args.rest.iter().any(|word| word == NO_REUSE);
            serve(args.addr(), reuse)
        }
        Role::Client => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            if args.rest.first().is_some_and(|word| word == UNTIL_EOF) {
                read_until_hang_up(args.addr())
            } else {
                options_client(args.addr())
            }
        }
    }
}

fn family_of(addr: SocketAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn tcp_socket(addr: SocketAddr) -> Result<OwnedFd, String> {
    sys::socket(
        family_of(addr),
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .context("socket")
}

/// socket, SO_REUSEADDR (if `reuse`), bind, listen: a server as seed 003 sets one up.
fn listen_on(addr: SocketAddr, reuse: bool) -> Result<OwnedFd, String> {
    let listener = tcp_socket(addr)?;
    if reuse {
        trace::explain(
            "connections accepted here inherit it and keep it in TIME_WAIT: a restart that sets it too may bind this port beside them",
        );
        sys::setsockopt(&listener, sockopt::ReuseAddr, &true).context("setsockopt SO_REUSEADDR")?;
    }
    sys::bind(&listener, addr).context(format!("bind {addr}"))?;
    sys::listen(&listener, BACKLOG).context("listen")?;
    Ok(listener)
}

/// `server` mode: greet each client and hang up first, so every connection leaves a TIME_WAIT
/// behind on this side. Stop it with Ctrl-C and start it again at once.
fn serve(addr: SocketAddr, reuse: bool) -> Outcome {
    let listener = listen_on(addr, reuse)?;
    trace::say(format!(
        "listening on {addr} (SO_REUSEADDR {}); try: nc {} {}, then Ctrl-C me and start me again",
        if reuse { "on" } else { "off" },
        addr.ip(),
        addr.port()
    ));
    for _ in 0..SERVER_MODE_CLIENTS {
        // One client's trouble (a reset, say) ends that conversation, not the server.
        if let Err(error) = greet_and_hang_up(&listener) {
            trace::say(format!("that connection failed: {error}; waiting for the next"));
        }
    }
    sys::close(listener).context("close")?;
    Ok(())
}

/// accept4, one line, close: the server is the one that closes first (the "active close").
fn greet_and_hang_up(listener: &OwnedFd) -> Result<(), String> {
    let (conn, peer) = sys::accept4(listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    trace::say(format!("connected by {peer}"));
    sys::send_all(&conn, GREETING.as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
    trace::explain("the server closes first: its FIN goes out first, so this side will end in TIME_WAIT");
    sys::close(conn).context("close")?;
    Ok(())
}

/// client#1: connect, print what the server says, and close once it has hung up.
fn read_until_hang_up(server: SocketAddr) -> Outcome {
    let sock = tcp_socket(server)?;
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    let mut buf = [0u8; RECV_SIZE];
    for _ in 0..MAX_READS {
        let n = sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv")?;
        if n == 0 {
            trace::say("the server hung up first: recv returned 0");
            break;
        }
        trace::say(format!("the server said {:?}", String::from_utf8_lossy(&buf[..n])));
    }
    trace::explain(
        "our FIN answers the server's: the server's side moves to TIME_WAIT, ours ends once our FIN is acknowledged",
    );
    sys::close(sock).context("close")?;
    Ok(())
}

/// client#2 (and `client` mode): buffer sizes, keepalive, no Nagle, a receive timeout, and a
/// close that resets the connection.
fn options_client(server: SocketAddr) -> Outcome {
    let sock = tcp_socket(server)?;

    trace::explain(
        "asks for a 32 KiB send buffer, and fixes it: the kernel's autotuning no longer grows it for this socket",
    );
    sys::setsockopt(&sock, sockopt::SndBuf, &BUFFER_ASKED).context("setsockopt SO_SNDBUF")?;
    trace::explain("reads it back: twice what we asked; Linux doubles it for its own bookkeeping (socket(7))");
    let send_buffer = sys::getsockopt(&sock, sockopt::SndBuf).context("getsockopt SO_SNDBUF")?;
    trace::explain(
        "the receive buffer, fixed too; before connect: the window offered in the handshake is sized from it (tcp(7))",
    );
    sys::setsockopt(&sock, sockopt::RcvBuf, &BUFFER_ASKED).context("setsockopt SO_RCVBUF")?;
    trace::explain("doubled as well");
    let receive_buffer = sys::getsockopt(&sock, sockopt::RcvBuf).context("getsockopt SO_RCVBUF")?;
    trace::say(format!(
        "asked for {BUFFER_ASKED} bytes each; the kernel holds {send_buffer} to send and {receive_buffer} to receive"
    ));

    trace::explain("keepalive: probe the peer after a long silence, to notice one that vanished");
    sys::setsockopt(&sock, sockopt::KeepAlive, &true).context("setsockopt SO_KEEPALIVE")?;
    trace::explain("seconds of silence before the first probe (tcp(7): net.ipv4.tcp_keepalive_time, 7200 by default)");
    sys::setsockopt(&sock, sockopt::TcpKeepIdle, &KEEPALIVE_IDLE_S).context("setsockopt TCP_KEEPIDLE")?;
    trace::explain("seconds between unanswered probes");
    sys::setsockopt(&sock, sockopt::TcpKeepInterval, &KEEPALIVE_INTERVAL_S).context("setsockopt TCP_KEEPINTVL")?;
    trace::explain("unanswered probes before the kernel drops the connection as dead");
    sys::setsockopt(&sock, sockopt::TcpKeepCount, &KEEPALIVE_PROBES).context("setsockopt TCP_KEEPCNT")?;

    trace::explain("Nagle off: a small send goes out at once, not held back while earlier data awaits its ACK");
    sys::setsockopt(&sock, sockopt::TcpNoDelay, &true).context("setsockopt TCP_NODELAY")?;

    let timeout = TimeVal::milliseconds(RECEIVE_TIMEOUT_MS);
    trace::explain(
        "a 200 ms receive timeout, the kernel's own (Python's settimeout does not use it); strace 6.1 names it \
         SO_RCVTIMEO_OLD and shows the struct timeval as 16 raw bytes",
    );
    sys::setsockopt(&sock, sockopt::ReceiveTimeout, &timeout).context("setsockopt SO_RCVTIMEO")?;

    sys::connect(&sock, server).context(format!("connect {server}"))?;

    let mut buf = [0u8; RECV_SIZE];
    let started = Instant::now();
    trace::explain("the server sends nothing: after 200 ms the kernel gives up and says EAGAIN");
    match sys::recv(&sock, &mut buf, MsgFlags::empty()) {
        Err(Errno::EAGAIN) => trace::measured(format!(
            "recv gave up after {} ms: no data, the connection is fine, only the timeout ran out",
            started.elapsed().as_millis()
        )),
        Ok(0) => trace::say("the server closed its end: recv returned 0"),
        Ok(n) => trace::say(format!("the server said {:?}", String::from_utf8_lossy(&buf[..n]))),
        Err(other) => return Err(format!("recv: {other}").into()),
    }

    let abort = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    trace::explain("linger on, 0 seconds: close will not wait to deliver anything; it aborts the connection with RST");
    sys::setsockopt(&sock, sockopt::Linger, &abort).context("setsockopt SO_LINGER")?;
    trace::explain("RST goes out; no FIN, no TIME_WAIT on either side");
    sys::close(sock).context("close")?;
    Ok(())
}

/// A server that hangs up first, its restart without and with SO_REUSEADDR, then a client
/// that tries the other options and resets the connection.
fn demo() -> Outcome {
    trace::set_actor("server");
    let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let listener = listen_on(any_port, true)?;
    trace::explain("port 0 let the kernel choose; the restart below must get this same port back");
    let bound = sys::getsockname(&listener).context("getsockname")?;
    let port = bound.as_sockaddr_in().map_or(0, |a| a.port());
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    let client = lessons::spawn_process("client#1", "client", port, &[UNTIL_EOF]).context("starting client#1")?;
    greet_and_hang_up(&listener)?;
    lessons::wait_process("client#1", client)?;
    trace::say(format!(
        "client#1 closed too; our end of that connection now waits in TIME_WAIT, still holding port {port}"
    ));
    trace::explain("the server stops, as Ctrl-C would stop it: the listener goes, the TIME_WAIT stays");
    sys::close(listener).context("close")?;

    trace::say("restart #1, as seed 001's server would restart: no SO_REUSEADDR");
    let plain = tcp_socket(addr)?;
    trace::explain(
        "refused: the connection in TIME_WAIT still holds the port, and this socket did not say it may share",
    );
    match sys::bind(&plain, addr) {
        Err(Errno::EADDRINUSE) => trace::say("Python would raise OSError: [Errno 98] Address already in use"),
        Ok(()) => return Err(format!("bind {addr} without SO_REUSEADDR succeeded: no TIME_WAIT held it?").into()),
        Err(other) => return Err(format!("bind {addr}: {other}").into()),
    }
    trace::explain("this socket never got an address; closing it only gives descriptor 3 back");
    sys::close(plain).context("close")?;

    trace::say("restart #2, as seed 003 does it: SO_REUSEADDR before bind");
    let listener = tcp_socket(addr)?;
    trace::explain("listing 13 of seed 000 reads the option first: off (0) on every new socket");
    let before = sys::getsockopt(&listener, sockopt::ReuseAddr).context("getsockopt SO_REUSEADDR")?;
    trace::explain(
        "on: bind may take a port that only TIME_WAIT connections hold, if they had it on too (never a listening one)",
    );
    sys::setsockopt(&listener, sockopt::ReuseAddr, &true).context("setsockopt SO_REUSEADDR")?;
    trace::explain("the same port as before, a moment after the same call failed");
    sys::bind(&listener, addr).context(format!("bind {addr}"))?;
    sys::listen(&listener, BACKLOG).context("listen")?;
    trace::say(format!(
        "SO_REUSEADDR was {}, now 1: the restart works",
        i32::from(before)
    ));

    let client = lessons::spawn_process("client#2", "client", port, &[]).context("starting client#2")?;
    let (conn, peer) = sys::accept4(&listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    trace::say(format!("connected by {peer}"));
    let mut buf = [0u8; RECV_SIZE];
    trace::explain("waits for the client, which sends nothing, then closes with SO_LINGER 0: RST, not FIN");
    match sys::recv(&conn, &mut buf, MsgFlags::empty()) {
        Err(Errno::ECONNRESET) => trace::say("a reset, not an end of file: recv failed instead of returning 0"),
        Ok(n) => return Err(format!("expected ECONNRESET from the reset, recv returned {n}").into()),
        Err(other) => return Err(format!("recv: {other}").into()),
    }
    sys::close(conn).context("close")?;
    sys::close(listener).context("close")?;
    lessons::wait_process("client#2", client)?;
    Ok(())
}
