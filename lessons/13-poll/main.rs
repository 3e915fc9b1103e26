//! Lesson 13: poll(2), the pollfd array, and every revents bit made to happen for real.
//!
//! select takes three bitmaps capped at FD_SETSIZE; poll takes one array of
//! `{fd, events, revents}`: `events` is what you ask about, `revents` is what the kernel found.
//! The demo makes each answer happen on a real socket and prints it as strace does:
//! POLLIN, POLLOUT, POLLIN with nothing to read (the peer's FIN), POLLHUP (both directions
//! shut), POLLNVAL (a number that is not open), POLLERR (a refused connect), and a timeout, 0.
//! (POLLRDHUP, which nix's `PollFlags` lacks, is proven in tests/kernel/poll_revents.rs.)
//!
//!   make lesson-13                                  the demo: one server process, one client process
//!   make lesson-13 ARGS="server --port 7000"        a poll echo server for `nc 127.0.0.1 7000`
//!   make lesson-13 ARGS="client --port 7000 hi"     our client against a server you started
//!   make lesson-13 ARGS="server chat --port 7000"   the chat room of lesson 11, on poll
//!
//! The server is this process's only thread, so its descriptor numbers are deterministic and a
//! number it closes stays closed: that is what lets the demo poll a closed number on purpose.

use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{AddressFamily, MsgFlags, Shutdown, SockFlag, SockProtocol, SockType, sockopt};
use socklab::chat::{self, Room};
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::sys::poll::{poll, raw_revents};
use socklab::{serve, sys, trace};

/// Where `server` mode listens unless given `--port`.
const DEFAULT_PORT: u16 = 13000;
/// Finished handshakes the kernel may queue before we accept them.
const BACKLOG: i32 = 16;
/// Bytes asked for in one recv.
const RECV_SIZE: usize = 1024;
/// The longest any poll in the demo or the client waits for something that should come at
/// once: a stuck peer ends the program with a message instead of hanging it.
const WAIT_MS: u16 = 5000;
/// The timeout the demo lets run out on purpose.
const IDLE_MS: u16 = 100;
/// `server` mode: how long one poll may sleep, and how many polls before it stops by itself.
const SERVER_TICK_MS: u16 = 10_000;
const SERVER_WAITS: u32 = 100_000;
/// `server` mode: more clients than this are turned away (closed at once).
const MAX_CLIENTS: usize = 64;
/// What a server says first; a client reads it before sending anything.
const GREETING: &[u8] = b"hello from lesson 13: send lines, I echo them\n";
/// What a server says after the client's end of file, before it closes.
const FAREWELL: &[u8] = b"bye\n";
/// A client's recv after its own shutdown: "bye", then 0. A few more in case the server
/// splits its words; never more than this.
const TAIL_RECVS: usize = 8;

fn main() {
    lessons::main(DEFAULT_PORT, run);
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo => {
            trace::set_actor("server");
            demo()
        }
        Role::Server if args.rest.iter().any(|word| word == "chat") => {
            trace::set_actor("server");
            let listener = serve::listen(args.addr())?;
            trace::say(format!(
                "the chat room listens on {} (poll); try: socklab chat-client --port {}, or nc {} {}",
                args.addr(),
                args.port,
                args.host,
                args.port
            ));
            serve::poll::serve(&listener, Room::new(chat::utc_clock), &serve::Options::default())?;
            sys::close(listener).context("close")?;
            Ok(())
        }
        Role::Server => {
            trace::set_actor("server");
            let listener = listen_on(args.addr())?;
            trace::say(format!(
                "listening on {}; try: nc {} {}",
                args.addr(),
                args.host,
                args.port
            ));
            serve(&listener)?;
            sys::close(listener).context("close")?;
            Ok(())
        }
        Role::Client => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            let lines: Vec<String> = if args.rest.is_empty() {
                vec!["hello poll\n".into()]
            } else {
                args.rest.iter().map(|word| format!("{word}\n")).collect()
            };
            talk(args.addr(), &lines)
        }
    }
}

/// socket, bind, listen: the descriptor every array below starts with.
fn listen_on(addr: SocketAddr) -> Result<OwnedFd, String> {
    let listener = sys::socket(
        family(addr),
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .context("socket")?;
    sys::setsockopt(&listener, sockopt::ReuseAddr, &true).context("setsockopt SO_REUSEADDR")?;
    sys::bind(&listener, addr).context(format!("bind {addr}"))?;
    sys::listen(&listener, BACKLOG).context("listen")?;
    Ok(listener)
}

fn family(addr: SocketAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// The port the kernel chose for a socket bound to port 0.
fn bound_port(fd: &OwnedFd) -> Result<u16, String> {
    let bound = sys::getsockname(fd).context("getsockname")?;
    bound
        .as_sockaddr_in()
        .map(|a| a.port())
        .ok_or_else(|| "getsockname: not an IPv4 address".to_string())
}

/// One pollfd: `events` is the question we ask about `fd`.
fn ask(fd: BorrowedFd<'_>, events: PollFlags) -> PollFd<'_> {
    PollFd::new(fd, events)
}

/// The demo: every revents bit, one scene each, in one server thread and one client process.
fn demo() -> Outcome {
    let listener = listen_on("127.0.0.1:0".parse().expect("a literal address"))?;
    trace::explain("port 0 asked the kernel to choose; the client needs to know which port it got");
    let port = bound_port(&listener)?;

    trace::say("scene 1: the pollfd array. events is what we ask, revents what the kernel found");
    let client = lessons::spawn_process("client#1", "client", port, &["hello poll"])
        .map_err(|e| format!("starting client#1: {e}"))?;
    let result = converse(&listener);
    // Whatever happened, do not leave the client process behind.
    let waited = lessons::wait_process("client#1", client);
    result?;
    waited?;

    closed_number(&listener)?;
    refused_connect()?;
    timeouts(&listener)?;

    sys::close(listener).context("close")?;
    trace::say("the chat room on poll: `socklab chat-server --mux poll` (see this lesson's README)");
    Ok(())
}

/// Scenes 1 to 3 with client#1: POLLIN on the listener, POLLOUT, POLLIN on data (twice:
/// level-triggered), POLLIN for the peer's FIN, and POLLHUP once both directions are shut.
fn converse(listener: &OwnedFd) -> Result<(), String> {
    let wait = PollTimeout::from(WAIT_MS);

    // A listener is "readable" when a finished handshake waits: accept4 will not block.
    let mut fds = [ask(listener.as_fd(), PollFlags::POLLIN)];
    trace::explain("sleeps until client#1's handshake completes: a readable listener means accept4 won't block");
    poll(&mut fds, wait).context("poll")?;
    let (conn, peer) = sys::accept4(listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
    trace::say(format!("connected by {peer}"));

    // Ask two questions of the new socket. The client waits for our greeting before it sends,
    // so there is nothing to read yet; the send buffer is empty, so there is room to write.
    let mut fds = [
        ask(listener.as_fd(), PollFlags::POLLIN),
        ask(conn.as_fd(), PollFlags::POLLIN | PollFlags::POLLOUT),
    ];
    trace::explain("asked POLLIN|POLLOUT of 4, got only POLLOUT: room to write, nothing to read; 3 is absent: no news");
    poll(&mut fds, wait).context("poll")?;
    trace::say(format!(
        "revents for 4 is {:#x}: POLLOUT alone; an entry with nothing to report comes back 0",
        raw_revents(&fds[1])
    ));
    sys::send_all(&conn, GREETING, MsgFlags::MSG_NOSIGNAL).context("send")?;

    // scene 2: data. The whole array goes in again: poll remembers nothing between calls.
    trace::say("scene 2: data arrives; poll keeps reporting it until we read it (level-triggered)");
    let mut fds = [
        ask(listener.as_fd(), PollFlags::POLLIN),
        ask(conn.as_fd(), PollFlags::POLLIN),
    ];
    trace::explain("the same array again, in full: poll keeps no list between calls");
    poll(&mut fds, wait).context("poll")?;
    trace::explain("timeout 0: just look. We did not read, so POLLIN is reported again");
    poll(&mut fds, PollTimeout::ZERO).context("poll")?;
    let mut buf = [0u8; RECV_SIZE];
    let n = sys::recv(&conn, &mut buf, MsgFlags::empty()).context("recv")?;
    sys::send_all(&conn, &buf[..n], MsgFlags::MSG_NOSIGNAL).context("send")?;

    // scene 3: the client shuts down its writing side after our echo.
    trace::say("scene 3: client#1 sends FIN (shutdown SHUT_WR) after our echo");
    trace::explain("the peer's FIN looks like data: POLLIN, and recv will return 0. No POLLHUP: we may still send");
    poll(&mut fds, wait).context("poll")?;
    let n = sys::recv(&conn, &mut buf, MsgFlags::empty()).context("recv")?;
    trace::say(format!(
        "recv returned {n}: end of file. Half-closed: the peer stopped sending, we can still talk"
    ));
    sys::send_all(&conn, FAREWELL, MsgFlags::MSG_NOSIGNAL).context("send")?;
    trace::explain("our FIN: now neither direction can carry data");
    sys::shutdown(&conn, Shutdown::Write).context("shutdown")?;
    trace::explain("both directions shut: POLLHUP, which nobody asked for: poll always reports it");
    poll(&mut fds, PollTimeout::ZERO).context("poll")?;
    sys::close(conn).context("close")?;
    Ok(())
}

/// Scene 4: a number that is no longer open, left in the array. In C that is the bug of
/// closing a descriptor and forgetting its pollfd; Rust's borrow checker refuses it (a PollFd
/// borrows its descriptor), so the demo takes the bare number on purpose.
fn closed_number(listener: &OwnedFd) -> Result<(), String> {
    trace::say("scene 4: 4 was closed, but its number is still in the array");
    let closed: i32 = 4;
    // SAFETY: `closed` is not open (the demo closed it above, and this program has no other
    // thread to reopen it). The BorrowedFd lives for one poll call, which only asks the kernel
    // about the number: it never reads, writes or closes it. Showing that answer is the point.
    let stale = unsafe { BorrowedFd::borrow_raw(closed) };
    let mut fds = [ask(listener.as_fd(), PollFlags::POLLIN), ask(stale, PollFlags::POLLIN)];
    trace::explain("no open file behind 4: POLLNVAL, counted in the result, and poll returns at once");
    poll(&mut fds, PollTimeout::from(WAIT_MS)).context("poll")?;
    trace::say("a loop that ignores POLLNVAL spins: every poll returns at once with the same answer");
    for _ in 0..NVAL_SPINS {
        poll(&mut fds, PollTimeout::from(WAIT_MS)).context("poll")?;
    }
    Ok(())
}

/// How many more times scene 4 polls the same array: enough to see the loop spin.
const NVAL_SPINS: usize = 3;

/// Scene 5: POLLERR, from a non-blocking connect that the other side refuses.
fn refused_connect() -> Result<(), String> {
    trace::say("scene 5: a non-blocking connect to a port where a socket is bound but not listening");
    let dead_end = sys::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .context("socket")?;
    trace::explain("bound, never listen(): holds the port so nobody else takes it, and answers a SYN with RST");
    sys::bind(
        &dead_end,
        "127.0.0.1:0".parse::<SocketAddr>().expect("a literal address"),
    )
    .context("bind")?;
    let port = bound_port(&dead_end)?;
    let target = SocketAddr::from(([127, 0, 0, 1], port));

    let dialer = sys::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::Tcp,
    )
    .context("socket")?;
    match sys::connect(&dialer, target) {
        Err(sys::Errno::EINPROGRESS) => {}
        other => return Err(format!("connect {target}: expected EINPROGRESS, got {other:?}")),
    }
    let mut fds = [ask(dialer.as_fd(), PollFlags::POLLOUT)];
    trace::explain("asked only POLLOUT; the RST came back: POLLERR and POLLHUP are reported unasked");
    poll(&mut fds, PollTimeout::from(WAIT_MS)).context("poll")?;
    trace::explain("POLLERR says an error is pending; SO_ERROR says which, and clears it");
    let error = sys::getsockopt(&dialer, sockopt::SocketError).context("getsockopt SO_ERROR")?;
    if error != libc::ECONNREFUSED {
        return Err(format!("SO_ERROR: expected ECONNREFUSED, got {error}"));
    }
    sys::close(dialer).context("close")?;
    sys::close(dead_end).context("close")?;
    Ok(())
}

/// Scene 6: nothing happens. The timeout is in milliseconds, and less than one rounds to 0.
fn timeouts(listener: &OwnedFd) -> Result<(), String> {
    trace::say(format!(
        "scene 6: nobody connects; poll gives up after {IDLE_MS} ms and returns 0"
    ));
    let mut fds = [ask(listener.as_fd(), PollFlags::POLLIN)];
    let started = Instant::now();
    poll(&mut fds, PollTimeout::from(IDLE_MS)).context("poll")?;
    trace::measured(format!("slept {} ms", started.elapsed().as_millis()));

    let wanted = Duration::from_micros(900);
    let timeout = PollTimeout::try_from(wanted).map_err(|e| format!("PollTimeout: {e}"))?;
    trace::say(format!(
        "PollTimeout::try_from({wanted:?}) is {} ms: poll counts whole milliseconds, rounding down",
        i32::from(timeout)
    ));
    let started = Instant::now();
    trace::explain("timeout 0: returns at once. In a loop, this is a busy-wait burning a CPU");
    poll(&mut fds, timeout).context("poll")?;
    trace::measured(format!("returned after {} µs", started.elapsed().as_micros()));
    Ok(())
}

/// A client: connect, read the greeting, send each line and read its echo, then shut down our
/// writing side and read what the server says until its end of file. Every wait is bounded.
fn talk(server: SocketAddr, lines: &[String]) -> Outcome {
    let sock = sys::socket(
        family(server),
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .context("socket")?;
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    let mut buf = [0u8; RECV_SIZE];
    let greeting = receive_within(&sock, &mut buf)?;
    trace::say(format!("the server says {:?}", String::from_utf8_lossy(greeting)));
    for line in lines {
        sys::send_all(&sock, line.as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
        let echo = receive_within(&sock, &mut buf)?;
        trace::say(format!("the server echoed {:?}", String::from_utf8_lossy(echo)));
    }
    trace::explain("our FIN: the server's poll will report POLLIN, and its recv will return 0");
    sys::shutdown(&sock, Shutdown::Write).context("shutdown")?;
    for _ in 0..TAIL_RECVS {
        let n = sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv")?;
        if n == 0 {
            break;
        }
        trace::say(format!(
            "after our FIN the server still said {:?}",
            String::from_utf8_lossy(&buf[..n])
        ));
    }
    sys::close(sock).context("close")?;
    Ok(())
}

/// Waits (at most WAIT_MS) for `sock` to become readable, then reads what is there.
fn receive_within<'b>(sock: &OwnedFd, buf: &'b mut [u8]) -> Result<&'b [u8], String> {
    let mut fds = [ask(sock.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::from(WAIT_MS)).context("poll")?;
    if ready == 0 {
        return Err(format!("the server said nothing for {WAIT_MS} ms"));
    }
    let n = sys::recv(sock, buf, MsgFlags::empty()).context("recv")?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    Ok(&buf[..n])
}

/// `server` mode: a poll echo server for many clients. The array is rebuilt before every
/// call, the listener first, then one entry per client: its whole length crosses into the
/// kernel each time, whether or not anything happened on it.
fn serve(listener: &OwnedFd) -> Result<(), String> {
    let mut clients: Vec<OwnedFd> = Vec::new();
    let mut buf = [0u8; RECV_SIZE];
    for _ in 0..SERVER_WAITS {
        let mut fds: Vec<PollFd<'_>> = std::iter::once(ask(listener.as_fd(), PollFlags::POLLIN))
            .chain(clients.iter().map(|c| ask(c.as_fd(), PollFlags::POLLIN)))
            .collect();
        if poll(&mut fds, PollTimeout::from(SERVER_TICK_MS)).context("poll")? == 0 {
            continue;
        }
        let revents: Vec<i16> = fds.iter().map(raw_revents).collect();
        drop(fds);

        // Walk the clients from the end, so removing one does not shift those still to visit.
        for index in (0..clients.len()).rev() {
            let bits = revents[index + 1];
            if bits == 0 {
                continue;
            }
            let done = if bits & libc::POLLIN != 0 {
                match sys::recv(&clients[index], &mut buf, MsgFlags::empty()) {
                    Ok(0) => true,
                    Ok(n) => sys::send_all(&clients[index], &buf[..n], MsgFlags::MSG_NOSIGNAL).is_err(),
                    Err(_) => true,
                }
            } else {
                // POLLERR or POLLHUP without POLLIN: nothing left to read, nothing to say.
                true
            };
            if done {
                let client = clients.swap_remove(index);
                // A polite goodbye if it can still hear us; a reset client cannot.
                let _ = sys::send(&client, FAREWELL, MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT);
                sys::close(client).context("close")?;
            }
        }
        if revents[0] & libc::POLLIN != 0 {
            let (conn, peer) = sys::accept4(listener, SockFlag::SOCK_CLOEXEC).context("accept4")?;
            if clients.len() >= MAX_CLIENTS {
                trace::say(format!("{peer} turned away: {MAX_CLIENTS} clients already"));
                sys::close(conn).context("close")?;
                continue;
            }
            trace::say(format!("connected by {peer}; {} in the array now", clients.len() + 2));
            if sys::send_all(&conn, GREETING, MsgFlags::MSG_NOSIGNAL).is_ok() {
                clients.push(conn);
            } else {
                sys::close(conn).context("close")?;
            }
        }
    }
    for client in clients {
        sys::close(client).context("close")?;
    }
    Ok(())
}
