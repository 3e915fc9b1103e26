//! Lesson 08: non-blocking sockets. O_NONBLOCK, EAGAIN, what busy-polling burns, a
//! non-blocking accept, and a non-blocking connect (EINPROGRESS, wait for writable, SO_ERROR).
//!
//! Python's `setblocking(False)` (seed 003 calls it on the listener and, again, on every
//! accepted connection) sets one flag in the kernel, O_NONBLOCK. From then on a call that would
//! wait returns at once with EAGAIN, and waiting becomes the program's problem: it can ask
//! again and again (busy-polling, measured here), or ask the kernel to wake it (`poll`).
//! The spin's calls are traced like any other: identical calls in a row fold into one line and
//! a `[the same call N more times]`. With `SOCKLAB_TRACE=off` the two measurements are
//! printed alone, for the cost of the spin without the trace's own work in it.
//!
//!   make lesson-8                                  the demo: a server and two client processes
//!   make lesson-8 ARGS="server --port 7000"        then `nc 127.0.0.1 7000`: wait, type a line
//!   make lesson-8 ARGS="client --port 7000"        a non-blocking connect (try a closed port)
//!
//! In the demo the clients are separate processes (this program again, in client mode), so
//! each has its own descriptor table and the numbers in the trace are the same every run.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, sockopt};
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::{sys, trace};

/// Seed 003's chat server listens on 33333.
const DEFAULT_PORT: u16 = 33333;
/// How many finished handshakes may wait for accept.
const BACKLOG: i32 = 5;
/// At most this many bytes per recv.
const RECV_SIZE: usize = 100;
/// The longest any one wait (for a connection, a handshake, a line) may last, in milliseconds.
const WAIT_MS: u16 = 10_000;
/// How long the client takes to answer each line: the wait the server spends spinning or asleep.
const ANSWER_DELAY: Duration = Duration::from_millis(200);
/// A busy-poll gives up after as long as any other wait (a learner at `nc` may never type)...
const SPIN_LIMIT: Duration = Duration::from_millis(WAIT_MS as u64);
/// ...or after this many calls, whichever comes first.
const SPIN_MAX_CALLS: u64 = 500_000_000;
/// The client answers at most this many lines, then hangs up.
const MAX_LINES: usize = 20;
/// What the server sends to start each round: spin while the client thinks, then sleep in poll.
const SPIN_ROUND: &[u8] = b"spin\n";
const POLL_ROUND: &[u8] = b"wait\n";

fn main() {
    lessons::main(DEFAULT_PORT, run);
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo => demo(),
        Role::Server => {
            trace::set_actor("server");
            let listener = listen_on(args.addr())?;
            make_nonblocking(&listener)?;
            trace::say(format!(
                "listening on {}; try: nc {} {} and wait a few seconds before typing each line",
                args.addr(),
                args.host,
                args.port
            ));
            loop {
                // One client's trouble ends that conversation, not the server.
                if let Err(error) = serve_one(&listener) {
                    trace::say(format!("{error}; waiting for the next client"));
                }
            }
        }
        Role::Client => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            connect_and_answer(args.addr())
        }
    }
}

/// socket, bind, listen: a passive socket, still blocking.
fn listen_on(addr: SocketAddr) -> Result<OwnedFd, String> {
    let listener = sys::socket(
        family_of(addr),
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .context("socket")?;
    sys::bind(&listener, addr).context(format!("bind {addr}"))?;
    sys::listen(&listener, BACKLOG).context("listen")?;
    Ok(listener)
}

fn family_of(addr: SocketAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// Python's `setblocking(False)`: read the flags, set O_NONBLOCK, write them back.
fn make_nonblocking(fd: &OwnedFd) -> Result<(), String> {
    trace::explain("read the file status flags first, so that setting one keeps the others");
    sys::set_nonblocking(fd, true).context("making the listener non-blocking")
}

/// Waits for a client with poll, accepts it, and runs the two rounds: spin, then poll.
fn serve_one(listener: &OwnedFd) -> Result<(), String> {
    trace::explain("sleeps until the listener is readable, which means a finished handshake is queued");
    if !wait_for(listener, PollFlags::POLLIN)? {
        return Err(format!("no client connected within {WAIT_MS} ms"));
    }
    trace::explain("the same non-blocking accept4, now with a connection queued: a new descriptor at once");
    let (conn, peer) = match sys::accept4(listener, SockFlag::SOCK_CLOEXEC) {
        Ok(accepted) => accepted,
        Err(Errno::EAGAIN) => return Err("the client left between poll and accept4".into()),
        Err(error) => return Err(format!("accept4: {error}")),
    };
    trace::say(format!("connected by {peer}"));

    trace::explain("the listener is non-blocking but this new socket is not: Linux does not copy O_NONBLOCK");
    let flags = sys::fcntl_getfl(&conn).context("fcntl F_GETFL")?;
    trace::explain("so set it here too: the seed's connection.setblocking(0)");
    sys::fcntl_setfl(&conn, flags | OFlag::O_NONBLOCK).context("fcntl F_SETFL")?;

    let outcome = converse(&conn);
    sys::close(conn).context("close")?;
    outcome
}

/// The conversation on a non-blocking socket: EAGAIN, then the same wait done twice.
fn converse(conn: &OwnedFd) -> Result<(), String> {
    let mut buf = [0u8; RECV_SIZE];
    trace::explain("non-blocking, and the client has sent nothing yet: EAGAIN instead of waiting");
    match sys::recv(conn, &mut buf, MsgFlags::empty()) {
        Err(Errno::EAGAIN) => trace::say("recv did not wait: it said \"try again\" (EAGAIN)"),
        Ok(0) => return Err("the client closed before the first round".into()),
        Ok(n) => trace::say(format!("{n} bytes were already waiting")),
        Err(error) => return Err(format!("recv: {error}")),
    }

    // Round one: ask for a line, then wait for it the wrong way, asking again and again.
    trace::say("round one: ask for a line, then wait for it by busy-polling, recv over and over");
    sys::send_all(conn, SPIN_ROUND, MsgFlags::MSG_NOSIGNAL).context("send")?;
    let spin = spin_on_recv(conn, &mut buf)?;
    report(format!(
        "busy-poll: {} recv calls answered EAGAIN in {:.1} ms; this thread ran on the CPU for {:.1} ms ({:.0}% of the wait)",
        spin.eagains,
        spin.wall.as_secs_f64() * 1000.0,
        spin.cpu.as_secs_f64() * 1000.0,
        percent(spin.cpu, spin.wall)
    ));
    match spin.received {
        Some(0) => return Err("the client closed its end while we spun".into()),
        Some(n) => trace::say(format!("the last recv of the spin returned {:?}", text(&buf[..n]))),
        None => {
            return Err(format!(
                "no data after {} ms of spinning; gave up",
                spin.wall.as_millis()
            ));
        }
    }

    // Round two: the same wait, asleep in poll until the kernel has data for us.
    trace::say("round two: ask for another line, then wait for it asleep in poll");
    sys::send_all(conn, POLL_ROUND, MsgFlags::MSG_NOSIGNAL).context("send")?;
    let cpu_before = thread_cpu()?;
    let started = Instant::now();
    trace::explain("the same wait done right: the thread sleeps until the socket is readable");
    let ready = wait_for(conn, PollFlags::POLLIN)?;
    let n = if ready {
        sys::recv(conn, &mut buf, MsgFlags::empty()).context("recv")?
    } else {
        0
    };
    let (wall, cpu) = (started.elapsed(), thread_cpu()?.saturating_sub(cpu_before));
    report(format!(
        "poll, then one recv: waited {:.1} ms; this thread ran on the CPU for {:.1} ms ({:.0}% of the wait)",
        wall.as_secs_f64() * 1000.0,
        cpu.as_secs_f64() * 1000.0,
        percent(cpu, wall)
    ));
    if !ready {
        return Err(format!("no data within {WAIT_MS} ms"));
    }
    if n == 0 {
        return Err("the client closed its end instead of answering".into());
    }
    trace::say(format!("poll woke us and recv returned {:?}", text(&buf[..n])));
    Ok(())
}

/// What a busy-poll cost: calls that found nothing, wall time and CPU time.
struct Spin {
    eagains: u64,
    wall: Duration,
    cpu: Duration,
    /// The first result that was not EAGAIN (0 is end of file); None if the limits ran out.
    received: Option<usize>,
}

/// Calls recv until it stops saying EAGAIN: the busy-poll.
fn spin_on_recv(conn: &OwnedFd, buf: &mut [u8]) -> Result<Spin, String> {
    let cpu_before = thread_cpu()?;
    let started = Instant::now();
    let mut eagains = 0;
    let mut received = None;
    trace::explain("the busy-poll: ask again at once, and again, until the answer is not EAGAIN");
    while eagains < SPIN_MAX_CALLS && started.elapsed() < SPIN_LIMIT {
        match sys::recv(conn, buf, MsgFlags::empty()) {
            Err(Errno::EAGAIN) => eagains += 1,
            Err(Errno::EINTR) => continue,
            Ok(n) => {
                received = Some(n);
                break;
            }
            Err(error) => return Err(format!("recv while spinning: {error}")),
        }
    }
    Ok(Spin {
        eagains,
        wall: started.elapsed(),
        cpu: thread_cpu()?.saturating_sub(cpu_before),
        received,
    })
}

/// CPU time (user + system) this thread has used so far, from getrusage(RUSAGE_THREAD).
fn thread_cpu() -> Result<Duration, String> {
    let usage = getrusage(UsageWho::RUSAGE_THREAD).context("getrusage")?;
    let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    Ok(Duration::from_micros(
        micros(usage.user_time()) + micros(usage.system_time()),
    ))
}

/// A measurement: narrated in the trace, or, with the trace off, printed by itself.
fn report(text: String) {
    if trace::is_on() {
        trace::measured(text);
    } else {
        println!("{text}");
    }
}

fn percent(part: Duration, whole: Duration) -> f64 {
    if whole.is_zero() {
        0.0
    } else {
        100.0 * part.as_secs_f64() / whole.as_secs_f64()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// poll on one descriptor for `events`, up to WAIT_MS; true if it became ready.
fn wait_for(fd: &impl AsFd, events: PollFlags) -> Result<bool, String> {
    let mut fds = [PollFd::new(fd.as_fd(), events)];
    let ready = sys::poll::poll(&mut fds, PollTimeout::from(WAIT_MS)).context("poll")?;
    Ok(ready > 0)
}

/// A non-blocking connect: EINPROGRESS, wait for writable, read SO_ERROR to learn how it ended.
/// If it connected, answer each line the server sends, ANSWER_DELAY later, until it hangs up.
fn connect_and_answer(server: SocketAddr) -> Outcome {
    trace::explain("SOCK_NONBLOCK: the socket is non-blocking from birth, no fcntl needed");
    let sock = sys::socket(
        family_of(server),
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::Tcp,
    )
    .context("socket")?;
    trace::explain("the SYN is sent; connect returns without waiting for the answer");
    match sys::connect(&sock, server) {
        Err(Errno::EINPROGRESS) => {}
        Ok(()) => trace::say("connected at once"),
        Err(error) => {
            trace::say(format!("connect failed at once: {error}"));
            sys::close(sock).context("close")?;
            return Ok(());
        }
    }
    trace::explain("writable means the handshake is over, one way or the other; POLLERR says it failed");
    if !wait_for(&sock, PollFlags::POLLOUT)? {
        sys::close(sock).context("close")?;
        return Err(format!("connect {server}: no answer within {WAIT_MS} ms").into());
    }
    trace::explain("how the handshake ended: 0 is connected, else the errno a blocking connect would return");
    let pending = sys::getsockopt(&sock, sockopt::SocketError).context("getsockopt SO_ERROR")?;
    if pending != 0 {
        trace::say(format!("the connection failed: {}", Errno::from_raw(pending)));
        trace::explain("no FIN to send: the connection never existed");
        sys::close(sock).context("close")?;
        return Ok(());
    }
    trace::explain("SOCK_NONBLOCK set the very O_NONBLOCK flag that fcntl shows");
    sys::fcntl_getfl(&sock).context("fcntl F_GETFL")?;

    let outcome = answer_lines(&sock);
    trace::explain("our FIN goes out");
    sys::close(sock).context("close")?;
    outcome
}

/// For each line the server sends, think for ANSWER_DELAY, then answer `ping N`.
fn answer_lines(sock: &OwnedFd) -> Outcome {
    let mut buf = [0u8; RECV_SIZE];
    for round in 1..=MAX_LINES {
        if !wait_for(sock, PollFlags::POLLIN)? {
            return Err(format!("the server said nothing for {WAIT_MS} ms").into());
        }
        let n = sys::recv(sock, &mut buf, MsgFlags::empty()).context("recv")?;
        if n == 0 {
            trace::say("the server closed its end: recv returned 0");
            return Ok(());
        }
        trace::say(format!(
            "the server said {:?}; answering in {} ms",
            text(&buf[..n]),
            ANSWER_DELAY.as_millis()
        ));
        // A slow peer, on purpose: this is the wait the server spends spinning or asleep.
        std::thread::sleep(ANSWER_DELAY);
        sys::send_all(sock, format!("ping {round}\n").as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
    }
    trace::say(format!("answered {MAX_LINES} lines; hanging up"));
    Ok(())
}

/// The server in this process; client#1 connects to its port, client#2 to a port nobody
/// listens on.
fn demo() -> Outcome {
    trace::set_actor("server");
    let listener = listen_on("127.0.0.1:0".parse().expect("a literal address"))?;
    trace::explain("port 0 asked the kernel to choose; this asks which port it chose");
    let port = port_of(&listener)?;
    make_nonblocking(&listener)?;
    trace::explain("non-blocking, and nobody has connected yet: EAGAIN at once instead of waiting");
    match sys::accept4(&listener, SockFlag::SOCK_CLOEXEC) {
        Err(Errno::EAGAIN) => trace::say("accept4 did not wait: nobody has connected yet"),
        Ok(_) => return Err("a connection arrived before any client was started".into()),
        Err(error) => return Err(format!("accept4: {error}").into()),
    }

    let client = lessons::spawn_process("client#1", "client", port, &[]).context("starting client#1")?;
    let served = serve_one(&listener);
    let waited = lessons::wait_process("client#1", client);
    served?;
    waited?;

    // A port that is bound but not listening: a SYN to it is answered with RST.
    trace::explain("a socket we bind and never listen on: its port refuses connections");
    let unlistened = sys::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .context("socket")?;
    sys::bind(
        &unlistened,
        "127.0.0.1:0".parse::<SocketAddr>().expect("a literal address"),
    )
    .context("bind")?;
    let closed_port = port_of(&unlistened)?;
    trace::say(format!(
        "port {closed_port} is bound but nobody listens on it: client#2 will be refused"
    ));
    lessons::run_process("client#2", "client", closed_port, &[])?;
    sys::close(unlistened).context("close")?;
    sys::close(listener).context("close")?;
    Ok(())
}

fn port_of(fd: &OwnedFd) -> Result<u16, String> {
    let bound = sys::getsockname(fd).context("getsockname")?;
    Ok(bound.as_sockaddr_in().map_or(0, |a| a.port()))
}
