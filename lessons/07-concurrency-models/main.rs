//! Lesson 07: three ways to serve many clients (iterative, a process per connection, a thread
//! per connection), a pool forked in advance, the thundering herd, and the accept queue.
//!
//! Python's `socketserver` splits a server in two: a request handler (`BaseRequestHandler`,
//! whose `handle()` talks to one client) and a server class that decides *where* `handle()`
//! runs: `TCPServer` in its own loop, one client after another; `ForkingTCPServer` in a child
//! process per connection; `ThreadingTCPServer` in a new thread per connection. The
//! [`Handler`] trait below is that first half; `serve_iterative`, `serve_forking`,
//! `serve_threading` and `prefork` are the second.
//!
//!   make lesson-7                                          the demo: iterative, forking, threading
//!   make lesson-7 ARGS=prefork                             a part: four workers blocked in accept4
//!   make lesson-7 ARGS=herd                                a part: four children blocked in poll
//!   make lesson-7 ARGS=backlog                             a part: the accept queue full
//!   make lesson-7 ARGS="server --port 8888 forking"        one model, for `nc 127.0.0.1 8888`
//!                                                          (iterative, forking, threading, prefork)
//!   make lesson-7 ARGS="client --port 8888 hello byebye"   a client for a server you started
//!
//! In the demo each server runs as a process of its own (forked from the demo), and the demo
//! plays the first client itself, so it decides when that client goes away. In the parts the
//! demo is the server (or its master), and the clients are this program again.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigHandler, Signal};
use nix::sys::socket::{AddressFamily, GetSockOpt, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage};
use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Pid};
use socklab::lessons::stage::{self, Line};
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::{sys, trace};

/// Seed 002's ThreadingTCPServer listens on 8888; the demo asks the kernel for a free port.
const DEFAULT_PORT: u16 = 8888;
/// Python's `listen(5)`: finished handshakes that may wait for accept.
const BACKLOG: i32 = 5;
/// The `backlog` part's listen: so small that three clients fill the queue.
const SMALL_BACKLOG: i32 = 2;
/// How many clients the `backlog` part starts: one more than its queue holds.
const QUEUED_CLIENTS: usize = 4;
/// Python's `recv(1024)`.
const RECV_SIZE: usize = 1024;
/// The most messages one conversation may have: every loop here is bounded.
const MAX_MESSAGES: usize = 10_000;
/// How many children a pre-forked pool starts (Apache's StartServers).
const POOL_SIZE: usize = 4;
/// What `server` mode can run.
const MODELS: [&str; 4] = ["iterative", "forking", "threading", "prefork"];
/// The longest the demo waits for something that should take milliseconds.
const PATIENCE: Duration = Duration::from_secs(5);

fn main() {
    lessons::main(DEFAULT_PORT, run);
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo => match args.rest.first().map(String::as_str) {
            None => demo(),
            Some("prefork") => prefork_part(),
            Some("herd") => herd_part(),
            Some("backlog") => backlog_part(),
            Some(other) => Err(format!("unknown part {other:?}: the parts are prefork, herd and backlog").into()),
        },
        Role::Server => {
            let model = args.rest.first().map_or("iterative", String::as_str);
            if !MODELS.contains(&model) {
                return Err(format!("unknown model {model:?}: use {}", MODELS.join(", ")).into());
            }
            trace::set_actor(model);
            let listener = listen_on(args.addr(), BACKLOG, None)?;
            trace::say(format!(
                "{model} server on {}; try: nc {} {} (type byebye to leave)",
                args.addr(),
                args.host,
                args.port
            ));
            match model {
                "iterative" => serve_iterative(&listener, None),
                "forking" => serve_forking(listener, None),
                "threading" => serve_threading(&listener, None),
                "prefork" => prefork(listener, None).map(drop),
                other => Err(format!("unknown model {other:?}")),
            }?;
            Ok(())
        }
        Role::Client => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            let lines: Vec<String> = if args.rest.is_empty() {
                vec!["hello\n".into()]
            } else {
                args.rest.iter().map(|word| format!("{word}\n")).collect()
            };
            let sock = connect_to(args.addr())?;
            for line in &lines {
                exchange(&sock, line)?;
            }
            sys::close(sock).context("close")?;
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The handler: one conversation, wherever it runs.
// ---------------------------------------------------------------------------------------------

/// socketserver's `BaseRequestHandler`: `handle()` gets a connected socket and the peer's
/// address, talks, and returns. It neither accepts nor closes: the server model does that.
trait Handler {
    fn handle(&mut self, conn: &OwnedFd, peer: SockaddrStorage) -> Result<(), String>;
}

/// Seed 002's handler, with the operator's `input()` replaced by an echo: send back what
/// came, until the client closes or says `byebye`.
struct Echo;

impl Handler for Echo {
    fn handle(&mut self, conn: &OwnedFd, peer: SockaddrStorage) -> Result<(), String> {
        let mut buf = [0u8; RECV_SIZE];
        for _ in 0..MAX_MESSAGES {
            let n = sys::recv(conn, &mut buf, MsgFlags::empty()).context("recv")?;
            if n == 0 {
                return Ok(());
            }
            if buf[..n].trim_ascii() == b"byebye" {
                trace::say(format!("{peer} said byebye"));
                return Ok(());
            }
            sys::send_all(conn, &buf[..n], MsgFlags::MSG_NOSIGNAL).context("send")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Four server models. `connections` is how many to serve (the demo's count), or None: forever.
// ---------------------------------------------------------------------------------------------

/// TCPServer: accept, handle, close, and only then accept the next. While one conversation
/// lasts, the next client's handshake is done (by the kernel) but nobody reads its bytes.
fn serve_iterative(listener: &OwnedFd, connections: Option<usize>) -> Result<(), String> {
    for _ in 0..connections.unwrap_or(usize::MAX) {
        let (conn, peer) = accept(listener)?;
        Echo.handle(&conn, peer)?;
        sys::close(conn).context("close")?;
    }
    Ok(())
}

/// ForkingTCPServer: accept, fork, and go straight back to accept. The child serves the
/// client and exits; the parent closes its copy of the connection and, at the end, reaps.
fn serve_forking(listener: OwnedFd, connections: Option<usize>) -> Result<(), String> {
    if connections.is_none() {
        // Serving forever, with nobody calling waitpid: SIG_IGN on SIGCHLD tells the kernel
        // to reap children itself, so none stays a zombie.
        sys::sigaction(Signal::SIGCHLD, SigHandler::SigIgn).context("sigaction")?;
    }
    let mut children = Vec::new();
    for number in 1..=connections.unwrap_or(usize::MAX) {
        let (conn, peer) = accept(&listener)?;
        trace::explain("a copy of this process, with copies of every descriptor: the listener and the connection");
        match fork()? {
            ForkResult::Child => lessons::run_child(format!("child#{number}"), move || {
                trace::explain("the child never accepts: its copy of the listener goes (the parent's stays open)");
                sys::close(listener).context("close")?;
                Echo.handle(&conn, peer)?;
                trace::explain("the last copy of the connection (the parent closed its own): the kernel sends FIN");
                sys::close(conn).context("close")?;
                Ok(())
            }),
            ForkResult::Parent { child } => {
                trace::explain("the child has its own copy; closing ours leaves the conversation to it");
                sys::close(conn).context("close")?;
                if connections.is_some() {
                    children.push(child);
                }
            }
        }
    }
    for child in children {
        reap(child)?;
    }
    trace::explain("the listener: the demo's count of connections is reached");
    sys::close(listener).context("close")?;
    Ok(())
}

/// ThreadingTCPServer: accept, start a thread for the conversation, go back to accept. The
/// threads share this process's descriptors: the thread closes the connection, nobody else.
fn serve_threading(listener: &OwnedFd, connections: Option<usize>) -> Result<(), String> {
    let mut threads = Vec::new();
    for number in 1..=connections.unwrap_or(usize::MAX) {
        let (conn, peer) = accept(listener)?;
        let thread = trace::spawn(format!("thread#{number}"), move || -> Result<(), String> {
            Echo.handle(&conn, peer)?;
            sys::close(conn).context("close")?;
            Ok(())
        });
        if connections.is_some() {
            threads.push(thread);
        }
    }
    for thread in threads {
        thread.join().map_err(|_| "a handler thread panicked")??;
    }
    Ok(())
}

/// A pre-forked pool (Apache's prefork): fork the workers once, after listen; each blocks in
/// accept on the one shared listener. In the demo each worker serves one client and exits.
fn prefork(listener: OwnedFd, connections_each: Option<usize>) -> Result<Vec<Pid>, String> {
    let mut workers = Vec::new();
    for number in 1..=POOL_SIZE {
        match fork()? {
            // The child borrows the listener: it never returns to drop it (exit closes it).
            ForkResult::Child => lessons::run_child(format!("worker#{number}"), || {
                for _ in 0..connections_each.unwrap_or(usize::MAX) {
                    if number == 1 {
                        trace::explain("every worker sleeps here on the same listener; a connection wakes one");
                    }
                    let (conn, peer) = accept(&listener)?;
                    Echo.handle(&conn, peer)?;
                    sys::close(conn).context("close")?;
                }
                Ok(())
            }),
            ForkResult::Parent { child } => workers.push(child),
        }
    }
    trace::explain("the master never accepts: only the workers' copies of the listener stay open");
    sys::close(listener).context("close")?;
    if connections_each.is_none() {
        // Server mode: the master only waits; the workers serve forever.
        for worker in &workers {
            reap(*worker)?;
        }
    }
    Ok(workers)
}

// ---------------------------------------------------------------------------------------------
// The demo: each of the three models with two clients.
// ---------------------------------------------------------------------------------------------

fn demo() -> Outcome {
    trace::set_actor("demo");
    iterative_demo()?;
    forking_demo()?;
    threading_demo()?;
    Ok(())
}

/// client#1 is served; client#2 connects at once but waits for its echo until client#1 goes.
fn iterative_demo() -> Outcome {
    trace::say("1. iterative (TCPServer), a process of its own: one conversation at a time");
    let (listener, port) = listen_any()?;
    let server = match fork()? {
        ForkResult::Child => lessons::run_child("iterative", || serve_iterative(&listener, Some(2))),
        ForkResult::Parent { child } => child,
    };
    trace::set_actor("client#1");
    let first = connect_to(local(port))?;
    exchange(&first, "hello\n")?;
    trace::set_actor("demo");
    let second = lessons::spawn_process("client#2", "client", port, &["me too"]).context("client#2")?;
    let mut ready = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    trace::explain(
        "the listener is readable: a finished handshake sits in the accept queue. That is client#2: connected, unaccepted",
    );
    if sys::poll::poll(&mut ready, poll_timeout()).context("poll")? == 0 {
        return Err("client#2 did not connect in time".into());
    }
    // Before client#1 goes, let client#2 get as far as it can: into recvfrom, asleep.
    if stage::wait_until_asleep(&[pid_of(&second)], &[libc::SYS_recvfrom], PATIENCE) == 1 {
        trace::say("client#2 has sent its line and sleeps in recvfrom; the server is inside client#1's handle()");
    } else {
        trace::measured(format!(
            "client#2 not seen asleep in recvfrom within {} s",
            PATIENCE.as_secs()
        ));
    }
    trace::explain("our copy of the listener; the server keeps its own");
    sys::close(listener).context("close")?;
    trace::set_actor("client#1");
    trace::explain("only now can the server return from handle(), close, and accept client#2");
    sys::close(first).context("close")?;
    trace::set_actor("demo");
    lessons::wait_process("client#2", second)?;
    reap(server)?;
    Ok(())
}

/// client#3 stays connected while client#4 comes and goes: each has a process of its own.
fn forking_demo() -> Outcome {
    trace::say("2. forking (ForkingTCPServer): a child process per connection");
    let (listener, port) = listen_any()?;
    let server = match fork()? {
        ForkResult::Child => lessons::run_child("forking", move || serve_forking(listener, Some(2))),
        ForkResult::Parent { child } => {
            trace::explain("the demo's copy of the listener; the server process has its own");
            sys::close(listener).context("close")?;
            child
        }
    };
    two_clients_at_once(port, "client#3", "client#4")?;
    reap(server)?;
    Ok(())
}

/// client#5 stays connected while client#6 comes and goes: each has a thread of its own.
fn threading_demo() -> Outcome {
    trace::say("3. threading (ThreadingTCPServer): a thread per connection");
    let (listener, port) = listen_any()?;
    let server = match fork()? {
        ForkResult::Child => lessons::run_child("threading", || serve_threading(&listener, Some(2))),
        ForkResult::Parent { child } => {
            sys::close(listener).context("close")?;
            child
        }
    };
    two_clients_at_once(port, "client#5", "client#6")?;
    reap(server)?;
    Ok(())
}

/// The demo plays the first client and holds its connection open while the second client,
/// a process of its own, is served from start to end.
fn two_clients_at_once(port: u16, first_name: &str, second_name: &str) -> Outcome {
    trace::set_actor(first_name);
    let first = connect_to(local(port))?;
    exchange(&first, "hello\n")?;
    trace::set_actor("demo");
    lessons::run_process(second_name, "client", port, &["me too"])?;
    trace::say(format!(
        "{second_name} was served and has gone, while {first_name} is still connected"
    ));
    trace::set_actor(first_name);
    sys::close(first).context("close")?;
    trace::set_actor("demo");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The `prefork` part: a pool blocked in accept4, one connection at a time.
// ---------------------------------------------------------------------------------------------

/// Four workers asleep in accept4 on one listener; four clients, one at a time. Each
/// connection wakes exactly one worker: the others do not even get a context switch.
fn prefork_part() -> Outcome {
    trace::set_actor("master");
    trace::say(format!(
        "prefork: {POOL_SIZE} workers forked after listen, all blocked in accept4"
    ));
    let (listener, port) = listen_any()?;
    let mut workers = prefork(listener, Some(1))?;
    for number in 1..=POOL_SIZE {
        let asleep = stage::wait_until_asleep(&workers, &[libc::SYS_accept4], PATIENCE);
        let before: Vec<Option<u64>> = workers.iter().map(|&w| stage::context_switches(w)).collect();
        lessons::run_process(&format!("client#{number}"), "client", port, &["hello"])?;
        trace::explain("-1: any child. The one that served the client has exited");
        let status = sys::waitpid(Pid::from_raw(-1)).context("waitpid")?;
        let Some(served_by) = status.pid() else {
            return Err("waitpid returned no child".into());
        };
        check_exit("a worker", status)?;
        let others: Vec<usize> = (0..workers.len()).filter(|&i| workers[i] != served_by).collect();
        let other_pids: Vec<Pid> = others.iter().map(|&i| workers[i]).collect();
        stage::wait_until_asleep(&other_pids, &[libc::SYS_accept4], PATIENCE);
        let woken_others = others
            .iter()
            .filter(|&&i| stage::context_switches(workers[i]) != before[i])
            .count();
        trace::measured(format!(
            "client#{number}: of {asleep} workers asleep, one accepted; woken besides it: {woken_others}"
        ));
        workers.retain(|&w| w != served_by);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The `herd` part: a pool that waits in poll.
// ---------------------------------------------------------------------------------------------

/// The herd: four children poll the one (non-blocking) listener. One connection wakes all
/// four; they then call accept4 one after another, and only the first gets the connection.
fn herd_part() -> Outcome {
    trace::set_actor("master");
    trace::say(format!(
        "the thundering herd: {POOL_SIZE} children forked after listen, all waiting in poll"
    ));
    let (listener, port) = listen_any()?;
    trace::explain("O_NONBLOCK lives in the open file, which the children share: a losing accept4 returns EAGAIN");
    sys::set_nonblocking(&listener, true).context("fcntl")?;
    let mut lines = Vec::new();
    let mut pollers = Vec::new();
    for number in 1..=POOL_SIZE {
        let (master_end, child_end) = Line::pair()?;
        match fork()? {
            ForkResult::Child => lessons::run_child(format!("poller#{number}"), || {
                drop(master_end);
                poller(number, &listener, &child_end)
            }),
            ForkResult::Parent { child } => {
                drop(child_end);
                lines.push(master_end);
                pollers.push(child);
            }
        }
    }
    let asleep = stage::wait_until_asleep(&pollers, stage::POLL, PATIENCE);
    trace::measured(format!(
        "{asleep} of {POOL_SIZE} children asleep in poll; one client connects"
    ));
    let client = lessons::spawn_process("client", "client", port, &["hello"]).context("client")?;
    let mut woke = 0;
    for line in &lines {
        if line.hear()? == "woke" {
            woke += 1;
        }
    }
    // In a real pool they race to accept4 and luck picks the winner; here the master lets
    // them go one at a time (over a control line), so the trace is the same on every run.
    trace::say(format!(
        "one connection, and the poll of each of the {woke} children returned; they call accept4 in turn"
    ));
    let (mut accepted, mut again) = (0, 0);
    for line in &lines {
        line.say("go")?;
        match line.hear()?.as_str() {
            "accepted" => accepted += 1,
            _ => again += 1,
        }
    }
    trace::say(format!("{woke} children woke, {accepted} accepted, {again} got EAGAIN"));
    lessons::wait_process("client", client)?;
    for poller in pollers {
        reap(poller)?;
    }
    trace::explain("the listener; the children's copies went when they exited");
    sys::close(listener).context("close")?;
    Ok(())
}

/// One herd child: sleep in poll until the listener is readable, tell the master, wait for
/// its turn, try accept4, and report what happened.
fn poller(number: usize, listener: &OwnedFd, line: &Line) -> Result<(), String> {
    let mut ready = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    sys::poll::poll(&mut ready, poll_timeout()).context("poll")?;
    line.say("woke")?;
    line.hear()?;
    match number {
        1 => trace::explain("the first to call accept4 gets the connection"),
        2 => trace::explain("woken for nothing: another child took the connection, and the listener is non-blocking"),
        _ => {}
    }
    match sys::accept4(listener, SockFlag::SOCK_CLOEXEC) {
        Ok((conn, peer)) => {
            line.say("accepted")?;
            Echo.handle(&conn, peer)?;
            sys::close(conn).context("close")?;
        }
        Err(sys::Errno::EAGAIN) => line.say("EAGAIN")?,
        Err(error) => return Err(format!("accept4: {error}")),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The `backlog` part: what listen's number means, with the accept queue full.
// ---------------------------------------------------------------------------------------------

/// `listen(3, 2)` and nobody accepting: three clients connect at once (Linux queues backlog + 1)
/// and the fourth sleeps in connect, its SYN dropped, until an accept makes room and its SYN,
/// sent again after a second, gets in. Then a backlog past net.core.somaxconn, cut to it.
fn backlog_part() -> Outcome {
    trace::set_actor("server");
    trace::say(format!(
        "the accept queue: listen(3, {SMALL_BACKLOG}), and no accept4 until {QUEUED_CLIENTS} clients have tried to connect"
    ));
    let note = format!(
        "{SMALL_BACKLOG}: the accept queue's limit; Linux lets {SMALL_BACKLOG} + 1 finished handshakes wait in it"
    );
    let (listener, port) = listen_any_with(SMALL_BACKLOG, Some(&note))?;
    let mut clients = Vec::new();
    for number in 1..QUEUED_CLIENTS {
        let name = format!("client#{number}");
        let client = lessons::spawn_process(&name, "client", port, &["hello"]).context(&name)?;
        // Each client connects, sends its line and waits for the echo before the next starts.
        if stage::wait_until_asleep(&[pid_of(&client)], &[libc::SYS_recvfrom], PATIENCE) == 1 {
            trace::say(format!(
                "{name} is connected and sleeps in recvfrom; nobody has accepted it"
            ));
        }
        clients.push((name, client));
    }
    let dropped_before = stage::listen_overflows();
    let name = format!("client#{QUEUED_CLIENTS}");
    let last = lessons::spawn_process(&name, "client", port, &["hello"]).context(&name)?;
    let started = Instant::now();
    if stage::wait_until_asleep(&[pid_of(&last)], &[libc::SYS_connect], PATIENCE) == 1 {
        trace::say(format!(
            "{name} sleeps in connect: its SYN found the queue full and was dropped, not refused"
        ));
    }
    clients.push((name, last));
    trace::explain(
        "a listener's tcp_info: byte 0 the state (10, LISTEN, printed \\n); bytes 24-27 tcpi_unacked, \
         the connections waiting for accept (ss -lnt: Recv-Q); bytes 28-31 tcpi_sacked, the backlog (Send-Q)",
    );
    let info = sys::getsockopt(&listener, TcpInfo).context("getsockopt")?;
    trace::say(format!(
        "Recv-Q {}, Send-Q {}: backlog + 1 connections wait",
        tcp_info_u32(&info, UNACKED),
        tcp_info_u32(&info, SACKED)
    ));
    trace::measured(format!(
        "ListenOverflows in /proc/net/netstat (counted for the whole machine) went up by {} since the last client started",
        stage::listen_overflows().saturating_sub(dropped_before),
    ));
    trace::say("the server accepts at last: each accept4 makes room in the queue");
    serve_iterative(&listener, Some(QUEUED_CLIENTS))?;
    trace::measured(format!(
        "the last client was accepted {:.2} s after it started: its SYN was sent again after the 1 s retransmission timeout",
        started.elapsed().as_secs_f64()
    ));
    for (name, client) in clients {
        lessons::wait_process(&name, client)?;
    }
    sys::close(listener).context("close")?;

    trace::say("a backlog past net.core.somaxconn is cut to it; -1 asks for the most");
    let note = "-1: as many as the kernel allows; it cuts any backlog above net.core.somaxconn to it";
    let (roomy, _) = listen_any_with(-1, Some(note))?;
    trace::explain("tcpi_sacked (bytes 28-31), the backlog the kernel kept: net.core.somaxconn");
    let info = sys::getsockopt(&roomy, TcpInfo).context("getsockopt")?;
    trace::measured(format!(
        "Send-Q {}: net.core.somaxconn on this machine",
        tcp_info_u32(&info, SACKED)
    ));
    sys::close(roomy).context("close")?;
    Ok(())
}

/// `getsockopt(fd, SOL_TCP, TCP_INFO, buf, [32])`: the first 32 bytes of the kernel's
/// `struct tcp_info`, which hold the state (byte 0) and, for a listener, the accept queue's
/// length and limit. ss gets the same two numbers over netlink.
#[derive(Clone, Copy)]
struct TcpInfo;

/// How many bytes of `struct tcp_info` the part asks for.
const TCP_INFO_BYTES: usize = 32;
/// Where `tcpi_unacked` (a listener's queue length) and `tcpi_sacked` (its limit) sit in it.
const UNACKED: usize = 24;
const SACKED: usize = 28;

impl GetSockOpt for TcpInfo {
    type Val = [u8; TCP_INFO_BYTES];

    fn get<F: AsFd>(&self, fd: &F) -> nix::Result<Self::Val> {
        let mut bytes = [0u8; TCP_INFO_BYTES];
        let mut len = TCP_INFO_BYTES as libc::socklen_t;
        // SAFETY: bytes and len are valid for writes of TCP_INFO_BYTES bytes and one socklen_t;
        // the kernel writes at most `len` bytes.
        let ret = unsafe {
            libc::getsockopt(
                fd.as_fd().as_raw_fd(),
                libc::SOL_TCP,
                libc::TCP_INFO,
                bytes.as_mut_ptr().cast(),
                &mut len,
            )
        };
        Errno::result(ret).map(|_| bytes)
    }
}

/// strace 6.1 does not decode `struct tcp_info`: it prints the bytes as a string.
impl sys::OptionName for TcpInfo {
    type Value = [u8; TCP_INFO_BYTES];
    const NAME: (&'static str, &'static str) = ("SOL_TCP", "TCP_INFO");

    fn show(value: &Self::Value) -> (Vec<trace::Piece>, usize) {
        (vec![trace::Piece::bytes(value)], value.len())
    }
}

/// The u32 at `offset` in the bytes TCP_INFO returned.
fn tcp_info_u32(info: &[u8; TCP_INFO_BYTES], offset: usize) -> u32 {
    u32::from_ne_bytes([info[offset], info[offset + 1], info[offset + 2], info[offset + 3]])
}

// ---------------------------------------------------------------------------------------------
// Small pieces: sockets and processes.
// ---------------------------------------------------------------------------------------------

/// socket, bind, listen: a passive socket, ready for clients. `note` explains the listen call.
fn listen_on(addr: SocketAddr, backlog: i32, note: Option<&str>) -> Result<OwnedFd, String> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let listener =
        sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")?;
    sys::bind(&listener, addr).context(format!("bind {addr}"))?;
    if let Some(note) = note {
        trace::explain(note);
    }
    sys::listen(&listener, backlog).context("listen")?;
    Ok(listener)
}

/// A listener on 127.0.0.1 at a port the kernel chose, and that port.
fn listen_any() -> Result<(OwnedFd, u16), String> {
    listen_any_with(BACKLOG, None)
}

fn listen_any_with(backlog: i32, note: Option<&str>) -> Result<(OwnedFd, u16), String> {
    let listener = listen_on(local(0), backlog, note)?;
    let bound = sys::getsockname(&listener).context("getsockname")?;
    let port = bound.as_sockaddr_in().map_or(0, |a| a.port());
    Ok((listener, port))
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn accept(listener: &OwnedFd) -> Result<(OwnedFd, SockaddrStorage), String> {
    sys::accept4(listener, SockFlag::SOCK_CLOEXEC).context("accept4")
}

fn connect_to(server: SocketAddr) -> Result<OwnedFd, String> {
    let family = if server.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let sock = sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")?;
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    Ok(sock)
}

/// Sends one line and waits for its echo; says what came back and how long it took.
fn exchange(sock: &OwnedFd, line: &str) -> Result<(), String> {
    sys::send_all(sock, line.as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
    let sent = Instant::now();
    let mut buf = [0u8; RECV_SIZE];
    let n = sys::recv(sock, &mut buf, MsgFlags::empty()).context("recv")?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    trace::measured(format!(
        "the echo {:?} came {:.1} ms after the line went",
        String::from_utf8_lossy(&buf[..n]),
        sent.elapsed().as_secs_f64() * 1000.0
    ));
    Ok(())
}

fn poll_timeout() -> PollTimeout {
    PollTimeout::try_from(PATIENCE).unwrap_or(PollTimeout::MAX)
}

fn pid_of(child: &std::process::Child) -> Pid {
    Pid::from_raw(child.id() as i32)
}

/// fork(), from the demo's one thread (or a server process's one thread).
fn fork() -> Result<ForkResult, String> {
    // SAFETY: every fork here happens on a process's only thread of the lesson: the demo's
    // main thread (the threading server's threads live in a process that never forks). The
    // trace's printer thread, in human mode, holds no lock the child needs: sys::fork gives
    // the child a trace state of its own, and glibc makes malloc safe in a forked child.
    unsafe { sys::fork() }.context("fork")
}

/// waitpid for one child, which must have exited with status 0.
fn reap(child: Pid) -> Result<(), String> {
    let status = sys::waitpid(child).context("waitpid")?;
    check_exit("a child", status)
}

fn check_exit(who: &str, status: WaitStatus) -> Result<(), String> {
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        other => Err(format!("{who} ended badly: {other:?}")),
    }
}
