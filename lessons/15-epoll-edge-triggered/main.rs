//! Lesson 15: epoll, edge-triggered: told once, so drain to EAGAIN; EPOLLONESHOT; and
//! EPOLLEXCLUSIVE against the thundering herd.
//!
//! Level-triggered epoll (lesson 14) reports a socket on every wait while it has unread bytes.
//! With `EPOLLET` it reports a *change*: new bytes arrived. Bytes left unread make no second
//! event, so an edge-triggered server reads until the kernel says `EAGAIN` (which needs a
//! non-blocking socket), or it waits for an event that never comes: it starves.
//! `EPOLLONESHOT` reports once and then disarms the entry until `EPOLL_CTL_MOD` re-arms it.
//! `EPOLLEXCLUSIVE` is for many processes waiting on one listener: without it, one connection
//! wakes every one of them (the thundering herd); with it, the kernel wakes one, or a few.
//!
//!   make lesson-15                                 the demo: edge-triggered, then one-shot
//!   make lesson-15 ARGS=herd                       a part of its own: the herd, counted, and EPOLLEXCLUSIVE
//!   make lesson-15 ARGS="server --port 7000"       an edge-triggered echo server; then nc
//!   make lesson-15 ARGS="client --port 7000 hi"    a client: each word is sent and echoed
//!   make lesson-15 ARGS="server chat"              seed 003's chat room, on edge-triggered epoll
//!
//! In the demo the server runs on this program's one thread and client#1 is a separate
//! process. In the `herd` part, the master forks four children, then four more, each with an
//! epoll instance of its own watching the one listener they all inherited.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, sockopt};
use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Pid};
use socklab::chat::{self, Room};
use socklab::lessons::stage::{self, Line};
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::serve::{self, Options};
use socklab::sys::epoll as ep;
use socklab::sys::{self, Errno};
use socklab::trace;

/// The seed's chat server listens on 33333; this echo server does too unless told otherwise.
const DEFAULT_PORT: u16 = 33333;
/// Finished handshakes the kernel may queue before we accept them.
const BACKLOG: i32 = 10;
/// How many ready descriptors one epoll_wait may return.
const MAX_EVENTS: usize = 8;
/// Bytes asked for in one recv.
const RECV_SIZE: usize = 4096;
/// How long any wait in the demo may last before it counts as a failure (milliseconds).
const PATIENCE_MS: u16 = 5000;
/// How long the demo watches a socket that it knows has unread bytes, to show that no event
/// comes (milliseconds). Short: nothing is going to happen, that is the point.
const LOOK_MS: u16 = 100;
/// Every loop ends by itself: the server after this many waits, a drain in the demo after
/// this many reads.
const MAX_ROUNDS: usize = 100_000;
const MAX_READS_PER_DRAIN: usize = 1000;
/// `server` mode: how many reads (or accepts) one descriptor gets per turn, so that a client
/// that sends without pause cannot keep the others waiting. What it leaves unread gets the
/// next turn, which the server gives without waiting: no new edge will announce it.
const READS_PER_TURN: usize = 16;
/// How many processes share the listener in the herd.
const HERD: usize = 4;
/// After the first waiter leaves epoll_wait, how long the demo keeps counting others that
/// wake for the same connection. Generous: a woken process runs within microseconds.
const GRACE: Duration = Duration::from_millis(200);
/// How long the master waits for the children to fall asleep, or the first to wake.
const PATIENCE: Duration = Duration::from_secs(5);

fn main() {
    lessons::main(DEFAULT_PORT, run);
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo => match args.rest.first().map(String::as_str) {
            None => {
                trace::set_actor("server");
                edge_and_oneshot()
            }
            Some("herd") => {
                trace::set_actor("master");
                herd(false)?;
                herd(true)
            }
            Some(other) => Err(format!("unknown part {other:?}: the demo's one named part is herd").into()),
        },
        Role::Server if args.rest.iter().any(|word| word == "chat") => {
            trace::set_actor("server");
            let listener = serve::listen(args.addr())?;
            trace::say(format!(
                "the chat room listens on {}; try: socklab chat-client --port {}, or nc {} {}",
                args.addr(),
                args.port,
                args.host,
                args.port
            ));
            serve::epoll_et::serve(&listener, Room::new(chat::utc_clock), &Options::default())?;
            sys::close(listener).context("close")?;
            Ok(())
        }
        Role::Server => {
            trace::set_actor("server");
            let listener = listen_on(args.addr())?;
            trace::say(format!(
                "listening on {}; try several at once: nc {} {}",
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
            let words = if args.rest.is_empty() {
                vec!["hello".to_string()]
            } else {
                args.rest.clone()
            };
            talk(args.addr(), &words)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pieces the demo, server mode and the herd share.

/// socket, SO_REUSEADDR, bind, listen: a passive socket, ready for clients.
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

/// A listener on 127.0.0.1 at a port the kernel chose, and that port.
fn listen_any() -> Result<(OwnedFd, u16), String> {
    let listener = listen_on("127.0.0.1:0".parse().expect("a literal address"))?;
    let port = sys::getsockname(&listener)
        .context("getsockname")?
        .as_sockaddr_in()
        .map_or(0, |a| a.port());
    Ok((listener, port))
}

/// What we ask epoll to watch for `fd`; `data` is the descriptor number, handed back in events.
fn interest(flags: EpollFlags, fd: &impl AsFd) -> EpollEvent {
    EpollEvent::new(flags, fd.as_fd().as_raw_fd() as u64)
}

fn patience() -> EpollTimeout {
    EpollTimeout::from(PATIENCE_MS)
}

/// The descriptor numbers in the events epoll_wait filled in.
fn ready_fds(events: &[EpollEvent]) -> Vec<RawFd> {
    events.iter().map(|event| event.data() as RawFd).collect()
}

/// Where a drain stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// EAGAIN: nothing left; only now may an edge-triggered reader wait again.
    Drained,
    /// End of file: the peer's FIN.
    Closed,
    /// `max_reads` reads, and maybe more waiting: no edge will come for it.
    Unfinished,
}

/// Reads until the kernel says EAGAIN (what "drained" means, and the only safe place for an
/// edge-triggered reader to stop), end of file, or `max_reads` reads. Returns the bytes read
/// and where it stopped.
fn drain(conn: &OwnedFd, max_reads: usize, explain_first: bool) -> Result<(Vec<u8>, Stop), String> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; RECV_SIZE];
    for read in 0..max_reads {
        if explain_first && read == 1 {
            trace::explain("empty now: EAGAIN, not a block (the socket is non-blocking); only now may we wait again");
        }
        match sys::recv(conn, &mut buf, MsgFlags::empty()) {
            Ok(0) => return Ok((bytes, Stop::Closed)),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(Errno::EAGAIN) => return Ok((bytes, Stop::Drained)),
            Err(error) => return Err(format!("recv: {error}")),
        }
    }
    Ok((bytes, Stop::Unfinished))
}

// ---------------------------------------------------------------------------------------------
// Server mode: an edge-triggered echo server, for nc, socat or Python.

fn serve(listener: &OwnedFd) -> Result<(), String> {
    // Edge-triggered means non-blocking everywhere: every handler loops until EAGAIN.
    sys::set_nonblocking(listener, true).context("fcntl O_NONBLOCK")?;
    let epoll = ep::epoll_create1(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
    let edge = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
    ep::epoll_ctl_add(&epoll, listener, interest(edge, listener)).context("epoll_ctl ADD")?;
    let mut clients: Vec<OwnedFd> = Vec::new();
    let mut events = [EpollEvent::empty(); MAX_EVENTS];
    // Descriptors a turn left unfinished: no edge will come for what they still hold, so the
    // next wait only looks (timeout 0) and they get another turn after it.
    let mut unfinished: Vec<RawFd> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let timeout = if unfinished.is_empty() {
            EpollTimeout::NONE
        } else {
            EpollTimeout::ZERO
        };
        let n = ep::epoll_wait(&epoll, &mut events, timeout).context("epoll_wait")?;
        let mut turns = std::mem::take(&mut unfinished);
        for fd in ready_fds(&events[..n]) {
            if !turns.contains(&fd) {
                turns.push(fd);
            }
        }
        for fd in turns {
            if fd == listener.as_raw_fd() {
                // One edge may stand for several connections: accept until EAGAIN.
                let mut drained = false;
                for _ in 0..READS_PER_TURN {
                    match sys::accept4(listener, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC) {
                        Ok((conn, peer)) => {
                            ep::epoll_ctl_add(&epoll, &conn, interest(edge, &conn)).context("epoll_ctl ADD")?;
                            trace::say(format!("{peer} connected as fd {}", conn.as_raw_fd()));
                            clients.push(conn);
                        }
                        Err(Errno::EAGAIN) => {
                            drained = true;
                            break;
                        }
                        Err(error) => return Err(format!("accept4: {error}")),
                    }
                }
                if !drained {
                    unfinished.push(fd);
                }
                continue;
            }
            let Some(index) = clients.iter().position(|c| c.as_raw_fd() == fd) else {
                return Err(format!("epoll_wait returned fd {fd}, which is not ours"));
            };
            let (bytes, stop) = drain(&clients[index], READS_PER_TURN, false).unwrap_or((Vec::new(), Stop::Closed));
            // A blocking-style send_all on a non-blocking socket would spin on EAGAIN when a
            // peer stops reading; this teaching server drops such a peer instead.
            let failed = !bytes.is_empty() && sys::send_all(&clients[index], &bytes, MsgFlags::MSG_NOSIGNAL).is_err();
            if stop == Stop::Unfinished && !failed {
                unfinished.push(fd);
            }
            if stop == Stop::Closed || failed {
                let conn = clients.remove(index);
                ep::epoll_ctl_del(&epoll, &conn).context("epoll_ctl DEL")?;
                sys::close(conn).context("close")?;
                trace::say(format!("fd {fd} left; {} still connected", clients.len()));
            }
        }
    }
    for conn in clients {
        sys::close(conn).context("close")?;
    }
    sys::close(epoll.0).context("close")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Client mode: each word is sent, and its echo awaited, before the next.

fn talk(server: SocketAddr, words: &[String]) -> Outcome {
    let sock = sys::socket(
        family(server),
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .context("socket")?;
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    let mut buf = [0u8; RECV_SIZE];
    for word in words {
        let bytes = word.as_bytes();
        if bytes.len() > RECV_SIZE {
            return Err(format!("a word of at most {RECV_SIZE} bytes, please").into());
        }
        sys::send_all(&sock, bytes, MsgFlags::MSG_NOSIGNAL).context("send")?;
        let mut got = 0;
        while got < bytes.len() {
            let n = sys::recv(&sock, &mut buf[got..bytes.len()], MsgFlags::empty()).context("recv")?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            got += n;
        }
        trace::say(format!("the server echoed {:?}", String::from_utf8_lossy(&buf[..got])));
    }
    sys::close(sock).context("close")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The demo: one server on this thread, one client process.

/// Parts 1 and 2: one client, whose words arrive one at a time (it waits for each echo).
fn edge_and_oneshot() -> Outcome {
    let (listener, port) = listen_any()?;
    let epoll = ep::epoll_create1(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
    ep::epoll_ctl_add(&epoll, &listener, interest(EpollFlags::EPOLLIN, &listener)).context("epoll_ctl ADD")?;
    let client = lessons::spawn_process("client#1", "client", port, &["abc", "defg", "hij"]).context("client#1")?;
    let mut events = [EpollEvent::empty(); MAX_EVENTS];
    let n = ep::epoll_wait(&epoll, &mut events, patience()).context("epoll_wait")?;
    if ready_fds(&events[..n]) != [listener.as_raw_fd()] {
        return Err("client#1 never connected".into());
    }
    trace::explain(
        "SOCK_NONBLOCK: an edge-triggered reader reads until EAGAIN, and a blocking socket would block there instead",
    );
    let (conn, peer) = sys::accept4(&listener, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC).context("accept4")?;
    trace::say(format!("{peer} connected as fd {}", conn.as_raw_fd()));

    trace::say("1. edge-triggered: one event per arrival of new bytes");
    trace::explain("EPOLLET: report fd 5 when new bytes arrive, not while unread bytes remain");
    let edge = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
    ep::epoll_ctl_add(&epoll, &conn, interest(edge, &conn)).context("epoll_ctl ADD")?;
    trace::explain("client#1 sends \"abc\": new bytes, one event");
    expect_event(&epoll, &conn, patience())?;
    let mut one = [0u8; 1];
    trace::explain("one byte only, on purpose: \"bc\" stays in the receive buffer");
    sys::recv(&conn, &mut one, MsgFlags::empty()).context("recv")?;
    trace::explain("two bytes wait, and nothing is reported: no new bytes, no new edge");
    expect_nothing(&epoll)?;
    trace::say(format!(
        "a server that waited here would starve: client#1 waits for its echo, and we for an event that never comes ({LOOK_MS} ms shown)"
    ));
    trace::explain("so drain: read until the kernel says EAGAIN");
    let (rest, _) = drain(&conn, MAX_READS_PER_DRAIN, true)?;
    let mut echo = one.to_vec();
    echo.extend_from_slice(&rest);
    sys::send_all(&conn, &echo, MsgFlags::MSG_NOSIGNAL).context("send")?;
    trace::explain("client#1 sends \"defg\": new bytes, a new edge, a new event");
    expect_event(&epoll, &conn, patience())?;
    let (bytes, _) = drain(&conn, MAX_READS_PER_DRAIN, false)?;
    sys::send_all(&conn, &bytes, MsgFlags::MSG_NOSIGNAL).context("send")?;

    trace::say("2. EPOLLONESHOT: one event, then silence until EPOLL_CTL_MOD re-arms the entry");
    trace::explain("level-triggered again, but one-shot: after one event the entry is disarmed");
    let oneshot = EpollFlags::EPOLLIN | EpollFlags::EPOLLONESHOT;
    ep::epoll_ctl_mod(&epoll, &conn, interest(oneshot, &conn)).context("epoll_ctl MOD")?;
    show_entry(&epoll, &conn, "armed");
    trace::explain("client#1 sends \"hij\": reported, and the entry disarms itself");
    expect_event(&epoll, &conn, patience())?;
    show_entry(
        &epoll,
        &conn,
        "disarmed: the events it listens for were cleared, the entry stays",
    );
    trace::explain("three bytes wait, and a level-triggered entry would report them; a disarmed one reports nothing");
    expect_nothing(&epoll)?;
    trace::explain("re-arm: the same events again, with EPOLL_CTL_MOD (ADD would say EEXIST)");
    ep::epoll_ctl_mod(&epoll, &conn, interest(oneshot, &conn)).context("epoll_ctl MOD")?;
    trace::explain("armed, and the bytes are still there: reported at once");
    expect_event(&epoll, &conn, patience())?;
    let (bytes, _) = drain(&conn, MAX_READS_PER_DRAIN, false)?;
    sys::send_all(&conn, &bytes, MsgFlags::MSG_NOSIGNAL).context("send")?;
    trace::explain("disarmed again until now: with threads sharing one epoll, the one that got fd 5 had it to itself");
    ep::epoll_ctl_mod(&epoll, &conn, interest(oneshot, &conn)).context("epoll_ctl MOD")?;
    trace::explain("client#1 closed: end of file is an event too");
    expect_event(&epoll, &conn, patience())?;
    let (_, stop) = drain(&conn, MAX_READS_PER_DRAIN, false)?;
    if stop != Stop::Closed {
        return Err("expected end of file from client#1".into());
    }
    ep::epoll_ctl_del(&epoll, &conn).context("epoll_ctl DEL")?;
    sys::close(conn).context("close")?;
    ep::epoll_ctl_del(&epoll, &listener).context("epoll_ctl DEL")?;
    sys::close(listener).context("close")?;
    sys::close(epoll.0).context("close")?;
    lessons::wait_process("client#1", client)?;
    Ok(())
}

/// Says what the kernel holds for `conn` in the interest list (read from /proc, looking on).
fn show_entry(epoll: &Epoll, conn: &OwnedFd, what: &str) {
    let fd = conn.as_raw_fd();
    let events = stage::epoll_interest(&epoll.0)
        .into_iter()
        .find(|(entry, _)| *entry == fd)
        .map_or_else(|| "not in the interest list".to_string(), |(_, events)| events);
    trace::say(format!("{what}; in the kernel (/proc/self/fdinfo): fd {fd} ({events})"));
}

/// epoll_wait must report `conn`, and only it.
fn expect_event(epoll: &Epoll, conn: &OwnedFd, timeout: EpollTimeout) -> Result<(), String> {
    let mut events = [EpollEvent::empty(); MAX_EVENTS];
    let n = ep::epoll_wait(epoll, &mut events, timeout).context("epoll_wait")?;
    if ready_fds(&events[..n]) != [conn.as_raw_fd()] {
        return Err(format!("expected an event for fd {}, got {n} events", conn.as_raw_fd()));
    }
    Ok(())
}

/// epoll_wait must report nothing for [`LOOK_MS`].
fn expect_nothing(epoll: &Epoll) -> Result<(), String> {
    let mut events = [EpollEvent::empty(); MAX_EVENTS];
    let n = ep::epoll_wait(epoll, &mut events, EpollTimeout::from(LOOK_MS)).context("epoll_wait")?;
    if n != 0 {
        return Err(format!("expected no event, got {n}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The `herd` part. The master forks HERD children; each makes its own epoll instance, adds the
// listener they all share, and sleeps in epoll_wait. The master connects once and counts how
// many wake (from /proc, looking on). Woken children say so on a private line and wait for
// their turn to accept, so the listener stays readable and the trace is the same every run:
// only the counts, printed with `~`, change. The lines and /proc are stage machinery
// (`socklab::lessons::stage`): they make no line in the trace.

fn herd(exclusive: bool) -> Outcome {
    let prefix = if exclusive {
        trace::say("2. the same with EPOLLEXCLUSIVE");
        "excl"
    } else {
        trace::say("1. the thundering herd on epoll: four processes, one listener");
        "herd"
    };
    let (listener, port) = listen_any()?;
    trace::explain("O_NONBLOCK lives in the open file the children share: a losing accept4 returns EAGAIN");
    sys::set_nonblocking(&listener, true).context("fcntl")?;
    let mut children: Vec<(Pid, Line)> = Vec::new();
    for number in 1..=HERD {
        let (master_end, child_end) = Line::pair()?;
        match fork()? {
            ForkResult::Child => {
                drop(master_end);
                let first = number == 1;
                lessons::run_child(format!("{prefix}#{number}"), || {
                    waiter(&listener, &child_end, exclusive, first)
                })
            }
            ForkResult::Parent { child } => {
                drop(child_end);
                children.push((child, master_end));
            }
        }
    }
    let pids: Vec<Pid> = children.iter().map(|(pid, _)| *pid).collect();
    let asleep = |pid: &Pid| stage::asleep_in(*pid, EPOLL_WAIT_SYSCALLS);
    if !stage::wait_until(PATIENCE, || pids.iter().all(asleep)) {
        trace::say("(not all were asleep in time; the count below may be low)");
    }
    trace::measured(format!(
        "{} of {HERD} children asleep in epoll_wait on the listener",
        pids.iter().filter(|pid| asleep(pid)).count()
    ));
    if !exclusive {
        trace::explain(format!(
            "{}: 4 to {} are the master's ends of its private lines to the children (stage machinery, not shown)",
            HERD + 4,
            HERD + 3
        ));
    }
    let mut clients = vec![connect_to(
        port,
        Some("the handshake completes in the kernel, before anyone accepts: the listener turns readable"),
    )?];
    // Count who left epoll_wait: the first soon, the others (if any) within GRACE of it.
    stage::wait_until(PATIENCE, || !pids.iter().all(asleep));
    stage::wait_until(GRACE, || !pids.iter().any(asleep));
    let woken: Vec<bool> = pids.iter().map(|pid| !asleep(pid)).collect();
    // Each woken child says so once its epoll_wait has returned: the count follows the wakes.
    for ((_, line), _) in children.iter().zip(&woken).filter(|(_, woke)| **woke) {
        line.hear()?;
    }
    let woke = woken.iter().filter(|woke| **woke).count();
    trace::measured(format!("one connection woke {woke} of {HERD} epoll_waits"));
    if exclusive {
        // Each further connection wakes one more sleeper, until all have had one: then every
        // child's trace is the same on every run, whatever the count above was.
        for more in 1..HERD {
            let note = (more == 1).then_some("a connection for each child still asleep: each wakes one more");
            clients.push(connect_to(port, note)?);
        }
    }
    for ((_, line), _) in children.iter().zip(&woken).filter(|(_, woke)| !**woke) {
        line.hear()?;
    }
    // In a real pool they race to accept4 and luck picks the winner; here the master lets
    // them go one at a time, so the trace is the same on every run.
    let (mut accepted, mut again) = (0, 0);
    for (_, line) in &children {
        line.say("go")?;
        match line.hear()?.as_str() {
            "accepted" => accepted += 1,
            _ => again += 1,
        }
    }
    trace::say(format!(
        "{} connection(s), {accepted} accepted, {again} woken for nothing (EAGAIN)",
        clients.len()
    ));
    for (child, line) in children {
        drop(line);
        match sys::waitpid(child).context("waitpid")? {
            WaitStatus::Exited(_, 0) => {}
            other => return Err(format!("a child ended badly: {other:?}").into()),
        }
    }
    for sock in clients {
        sys::close(sock).context("close")?;
    }
    sys::close(listener).context("close")?;
    Ok(())
}

/// One child of the herd: its own epoll instance, the shared listener in it, one wait; then
/// it says it woke, waits for its turn, tries accept4, and says how it went. The first child
/// of each herd explains; the others do the same.
fn waiter(listener: &OwnedFd, line: &Line, exclusive: bool, first: bool) -> Result<(), String> {
    let epoll = ep::epoll_create1(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
    let flags = if exclusive {
        EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE
    } else {
        EpollFlags::EPOLLIN
    };
    if first && exclusive {
        trace::explain(
            "EPOLLEXCLUSIVE: when the listener gets a connection, wake one exclusive waiter (or a few), not all",
        );
    } else if first {
        trace::explain("each child's own epoll instance, all watching the one listener they inherited");
    }
    ep::epoll_ctl_add(&epoll, listener, interest(flags, listener)).context("epoll_ctl ADD")?;
    let mut events = [EpollEvent::empty(); 1];
    if first && !exclusive {
        trace::explain("sleeps until the listener is readable, as every child of the herd does");
    }
    let n = ep::epoll_wait(&epoll, &mut events, patience()).context("epoll_wait")?;
    if n != 1 {
        return Err("no connection came".into());
    }
    line.say("woke")?;
    line.hear()?;
    match sys::accept4(listener, SockFlag::SOCK_CLOEXEC) {
        Ok((conn, _peer)) => {
            sys::close(conn).context("close")?;
            line.say("accepted")?;
        }
        Err(Errno::EAGAIN) => line.say("EAGAIN")?,
        Err(error) => return Err(format!("accept4: {error}")),
    }
    sys::close(epoll.0).context("close")?;
    Ok(())
}

/// A client of the herd's listener, made by the master; `note` explains its connect.
fn connect_to(port: u16, note: Option<&str>) -> Result<OwnedFd, String> {
    let server: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
    let sock = sys::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Tcp,
    )
    .context("socket")?;
    if let Some(note) = note {
        trace::explain(note);
    }
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    Ok(sock)
}

/// fork(), from the demo's one thread.
fn fork() -> Result<ForkResult, String> {
    // SAFETY: the demo runs on one thread (its trace goes straight to fd 1, with no printer
    // thread), so the child has every lock it could need; sys::fork gives it a trace state of
    // its own.
    unsafe { sys::fork() }.context("fork")
}

/// The syscalls epoll_wait may arrive as (/proc/PID/syscall gives the number).
const EPOLL_WAIT_SYSCALLS: &[i64] = &[
    #[cfg(target_arch = "x86_64")]
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
];
