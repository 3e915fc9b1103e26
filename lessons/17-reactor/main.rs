//! Lesson 17: the reactor: handlers registered for descriptors, timers, and one loop that waits
//! and calls them.
//!
//! Lessons 10 to 15 each wrote one loop that knew every kind of socket it served. A reactor
//! turns that inside out: the loop knows nothing about sockets. You register a descriptor with
//! the events you want and a handler to call; you ask for a callback at a later time; the
//! reactor waits once for everything (here on a `socklab::serve` backend: `src/serve/select.rs`,
//! `poll.rs` or `epoll.rs`) and calls the handlers whose descriptors are ready, then the timers
//! that are due. On it, an echo server: the listener's handler accepts and registers an echo
//! handler for each client, and a timer lets go of a client that says nothing for a while.
//!
//!   make lesson-17                                      the demo: a server, a talking client, a silent one
//!   make lesson-17 ARGS="server --port 7000"            an echo server on epoll; `nc 127.0.0.1 7000`
//!   make lesson-17 ARGS="server --port 7000 poll 2.5"   on poll (or select), idle clients let go after 2.5 s
//!   make lesson-17 ARGS="client --port 7000 hi there"   each word a line, echoed; no words: a silent client

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::socket::{AddressFamily, MsgFlags, Shutdown, SockFlag, SockProtocol, SockType};
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::serve::{self, Backend, Event, Interest, Readiness};
use socklab::sys::{self, Errno};
use socklab::trace;

/// `server` mode's port unless `--port` says otherwise.
const DEFAULT_PORT: u16 = 17017;
/// `server` mode lets a client go after this long without a word (`server 2.5`: 2.5 s).
const IDLE: Duration = Duration::from_secs(10);
/// The demo's idle limit: long enough for client#1's lines, short enough to watch.
const DEMO_IDLE: Duration = Duration::from_millis(500);
/// The demo serves this many clients, then the listener's handler closes its own registration.
const DEMO_CLIENTS: u32 = 2;
/// Python's `recv(1024)`.
const RECV_SIZE: usize = 1024;
/// A backend waits for a Duration, never "forever": with no timer set, a wait lasts at most
/// this, and then the loop simply waits again (the seed's `g_select_timeout = 10`).
const LONGEST_WAIT: Duration = Duration::from_secs(10);
/// Write interest only: an echo waits to go out, and the client is not read meanwhile.
const WRITE: Interest = Interest {
    read: false,
    write: true,
    urgent: false,
};

fn main() {
    lessons::main(DEFAULT_PORT, run);
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo => demo(),
        Role::Server => {
            trace::set_actor("server");
            let (mux, idle) = server_words(&args.rest)?;
            let listener = serve::listen(args.addr())?;
            trace::say(format!(
                "echo on {} ({mux}); clients silent for {} s are let go; try: nc {} {}",
                args.addr(),
                idle.as_secs_f64(),
                args.host,
                args.port
            ));
            match mux {
                "select" => echo_server(serve::select::Select::new(), listener, idle, None)?,
                "poll" => echo_server(serve::poll::Poll::new(), listener, idle, None)?,
                _ => echo_server(serve::epoll::Epoll::new()?, listener, idle, None)?,
            }
            Ok(())
        }
        Role::Client => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            talk(args.addr(), &args.rest)
        }
    }
}

/// `server [select|poll|epoll] [IDLE_SECONDS]`, in any order.
fn server_words(words: &[String]) -> Result<(&'static str, Duration), String> {
    let (mut mux, mut idle) = ("epoll", IDLE);
    for word in words {
        match word.as_str() {
            "select" => mux = "select",
            "poll" => mux = "poll",
            "epoll" => mux = "epoll",
            number => {
                idle = number
                    .parse()
                    .ok()
                    .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
                    .filter(|idle| !idle.is_zero())
                    .ok_or_else(|| format!("{number:?} is neither select, poll, epoll nor seconds of idleness"))?;
            }
        }
    }
    Ok((mux, idle))
}

// ---------------------------------------------------------------------------------------------
// The reactor. (`pub`: tests/reactor.rs drives it directly, with handlers of its own.)
// ---------------------------------------------------------------------------------------------

/// What the reactor calls when a registered descriptor is ready: with the reactor itself (to
/// register, close, set timers), the descriptor, and what it is ready for.
pub type Handler<B> = Box<dyn FnMut(&mut Reactor<B>, RawFd, Readiness)>;

/// What a timer calls, once, with the reactor.
type Callback<B> = Box<dyn FnOnce(&mut Reactor<B>)>;

/// Names a timer, to cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerId(u64);

struct Registration<B: Backend> {
    /// The reactor owns the socket: closing the registration closes it.
    socket: OwnedFd,
    /// Out of its slot while it runs.
    handler: Option<Handler<B>>,
    serial: u64,
}

struct Timer<B: Backend> {
    at: Instant,
    serial: u64,
    callback: Callback<B>,
}

/// Handlers by descriptor, timers, and the one wait they share. (Timers are found by walking
/// them all: a lesson has a few. asyncio and Twisted keep a heap; tokio, a timing wheel.)
pub struct Reactor<B: Backend> {
    backend: B,
    /// By descriptor number: what every backend reports an event by.
    registrations: Vec<Option<Registration<B>>>,
    registered: usize,
    timers: Vec<Timer<B>>,
    /// Counts registrations and timers as they are made. One made after a wait returned has no
    /// part in what that wait reported: the event for a number closed and reused in the same
    /// wake was about the old socket.
    serial: u64,
    /// The time the last wait returned: the loop's "now", read once per wake, as libuv's
    /// `uv_now`. A timer set during a wake counts from it.
    now: Instant,
    events: Vec<Event>,
    /// How many times the loop has waited.
    pub waits: u64,
    timed_wait_explained: bool,
}

impl<B: Backend> Reactor<B> {
    pub fn new(backend: B) -> Reactor<B> {
        Reactor {
            backend,
            registrations: Vec::new(),
            registered: 0,
            timers: Vec::new(),
            serial: 0,
            now: Instant::now(),
            events: Vec::new(),
            waits: 0,
            timed_wait_explained: false,
        }
    }

    /// Watches `socket` for `interest`; from the next wait on, `handler` is called whenever it
    /// is ready, until [`Reactor::close`]. A socket the backend refuses is closed.
    pub fn register(&mut self, socket: OwnedFd, interest: Interest, handler: Handler<B>) -> Result<RawFd, String> {
        let fd = socket.as_raw_fd();
        if let Err(reason) = self.backend.register(socket.as_fd(), fd as usize, interest) {
            let _ = sys::close(socket);
            return Err(reason);
        }
        if self.registrations.len() <= fd as usize {
            self.registrations.resize_with(fd as usize + 1, || None);
        }
        self.serial += 1;
        self.registrations[fd as usize] = Some(Registration {
            socket,
            handler: Some(handler),
            serial: self.serial,
        });
        self.registered += 1;
        Ok(fd)
    }

    /// The socket registered as `fd`, for its handler's system calls.
    pub fn socket(&self, fd: RawFd) -> Option<BorrowedFd<'_>> {
        let registration = self.registrations.get(fd as usize)?.as_ref()?;
        Some(registration.socket.as_fd())
    }

    /// Watches `fd` for `interest` from now on.
    pub fn modify(&mut self, fd: RawFd, interest: Interest) -> sys::Result<()> {
        match self.registrations.get(fd as usize).and_then(Option::as_ref) {
            Some(registration) => self
                .backend
                .reregister(registration.socket.as_fd(), fd as usize, interest),
            None => Ok(()),
        }
    }

    /// Stops watching `fd`, forgets its handler and closes the socket. Safe anywhere, in its own
    /// handler too: an event for `fd` not yet dispatched in this wake is dropped.
    pub fn close(&mut self, fd: RawFd) {
        if let Some(registration) = self.registrations.get_mut(fd as usize).and_then(Option::take) {
            self.registered -= 1;
            let _ = self.backend.deregister(registration.socket.as_fd(), fd as usize);
            let _ = sys::close(registration.socket);
        }
    }

    /// Calls `callback` once, `delay` after this wake's time, never sooner.
    pub fn call_later(&mut self, delay: Duration, callback: impl FnOnce(&mut Reactor<B>) + 'static) -> TimerId {
        self.serial += 1;
        self.timers.push(Timer {
            at: self.now + delay,
            serial: self.serial,
            callback: Box::new(callback),
        });
        TimerId(self.serial)
    }

    /// The timer will not be called (if it has not been already).
    pub fn cancel(&mut self, timer: TimerId) {
        self.timers.retain(|t| t.serial != timer.0);
    }

    /// How many descriptors are registered.
    pub fn registered(&self) -> usize {
        self.registered
    }

    /// The loop: wait (at most until the earliest timer), call the handlers of what is ready,
    /// then the timers that are due; until nothing is registered and no timer waits.
    ///
    /// # Errors
    /// The wait's own failure, other than `EINTR`.
    pub fn run(&mut self) -> Result<(), String> {
        while self.registered > 0 || !self.timers.is_empty() {
            let next_timer = self.timers.iter().map(|t| t.at).min();
            if next_timer.is_some() && !std::mem::replace(&mut self.timed_wait_explained, true) {
                trace::explain("the earliest timer is due then: that is the wait's timeout");
            } else if self.waits == 0 {
                trace::explain("one wait for every registered descriptor; with no timer set, the longest wait");
            }
            let timeout = next_timer.map_or(LONGEST_WAIT, |at| at.saturating_duration_since(self.now));
            self.events.clear();
            match self.backend.wait(&mut self.events, timeout.min(LONGEST_WAIT)) {
                Ok(()) | Err(Errno::EINTR) => {} // a signal: nothing is ready, but time has passed
                Err(error) => return Err(format!("{}: {error}", B::NAME)),
            }
            self.waits += 1;
            self.now = Instant::now();
            let horizon = self.serial;
            for index in 0..self.events.len() {
                let event = self.events[index];
                self.dispatch(event, horizon);
            }
            self.run_due_timers(horizon);
        }
        Ok(())
    }

    /// Calls the handler of the descriptor the event names, if it still has the registration
    /// the wait reported on.
    fn dispatch(&mut self, event: Event, horizon: u64) {
        let Some(registration) = self.registrations.get_mut(event.token).and_then(Option::as_mut) else {
            return; // closed earlier in this wake
        };
        if registration.serial > horizon {
            return; // registered after the wait, under a number a socket closed in this wake had
        }
        let serial = registration.serial;
        let Some(mut handler) = registration.handler.take() else {
            return;
        };
        handler(self, event.token as RawFd, event.readiness);
        // Back in its slot, unless its registration ended while it ran.
        if let Some(registration) = self
            .registrations
            .get_mut(event.token)
            .and_then(Option::as_mut)
            .filter(|r| r.serial == serial)
        {
            registration.handler = Some(handler);
        }
    }

    /// The timers due at this wake's time, earliest first. A timer set meanwhile waits for the
    /// next wake, even with no delay: a timer that sets itself again cannot keep the loop here.
    fn run_due_timers(&mut self, horizon: u64) {
        while let Some(index) = (0..self.timers.len())
            .filter(|&i| self.timers[i].at <= self.now && self.timers[i].serial <= horizon)
            .min_by_key(|&i| (self.timers[i].at, self.timers[i].serial))
        {
            let timer = self.timers.swap_remove(index);
            (timer.callback)(self);
        }
    }

    /// Closes every socket still registered, then what the backend holds (epoll's instance).
    pub fn shut_down(self) {
        for registration in self.registrations.into_iter().flatten() {
            let _ = sys::close(registration.socket);
        }
        self.backend.close();
    }
}

// ---------------------------------------------------------------------------------------------
// An echo server on the reactor: two handlers and a timer.
// ---------------------------------------------------------------------------------------------

/// Runs the echo server on `listener` with `backend`; `clients`: how many to accept before the
/// listener's handler closes it (None: forever).
fn echo_server<B: Backend>(backend: B, listener: OwnedFd, idle: Duration, clients: Option<u32>) -> Result<(), String> {
    let mut reactor = Reactor::new(backend);
    reactor.register(listener, Interest::READ, acceptor(idle, clients))?;
    run_to_the_end(reactor)
}

/// Runs `reactor` until nothing is left in it, then shuts it down.
fn run_to_the_end<B: Backend>(mut reactor: Reactor<B>) -> Result<(), String> {
    let outcome = reactor.run();
    if outcome.is_ok() {
        trace::say(format!(
            "run() returns: nothing is registered and no timer waits, after {} waits",
            reactor.waits
        ));
    }
    reactor.shut_down();
    outcome
}

/// The listener's handler: readable means a client is waiting; accept it and register an echo
/// handler for it.
fn acceptor<B: Backend>(idle: Duration, mut clients: Option<u32>) -> Handler<B> {
    let mut first = true;
    Box::new(move |reactor, listener, _ready| {
        let Some(socket) = reactor.socket(listener) else {
            return;
        };
        if std::mem::take(&mut first) {
            trace::explain(format!(
                "fd {listener} is ready: the reactor calls the handler registered for it, which accepts"
            ));
        }
        // Non-blocking: a client that gave up before this accept costs an EAGAIN, not a hang.
        let Ok((client, peer)) = sys::accept4(socket, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC) else {
            return;
        };
        let fd = client.as_raw_fd();
        trace::say(format!(
            "{peer} is client {fd}: an echo handler, and a timer that lets it go after {} ms of silence",
            idle.as_millis()
        ));
        let timer = idle_timer(reactor, fd, idle);
        trace::explain(format!(
            "register(fd {fd}, readable, echo): its events go to its handler from the next wait on"
        ));
        if let Err(reason) = reactor.register(client, Interest::READ, echo(idle, timer)) {
            trace::say(format!("client {fd} cannot be watched: {reason}"));
            reactor.cancel(timer);
        }
        if let Some(left) = clients.as_mut() {
            *left -= 1;
            if *left == 0 {
                trace::explain("enough clients: the listener's handler closes its own registration, mid-dispatch");
                reactor.close(listener);
            }
        }
    })
}

/// A timer that lets client `fd` go after `idle` of silence.
fn idle_timer<B: Backend>(reactor: &mut Reactor<B>, fd: RawFd, idle: Duration) -> TimerId {
    reactor.call_later(idle, move |reactor| {
        trace::say(format!(
            "client {fd} said nothing for {} ms: its timer lets it go",
            idle.as_millis()
        ));
        trace::explain("a timer's callback closes a client as a handler would: out of the interest list, then close");
        reactor.close(fd);
    })
}

/// A client's handler: sends back what it reads. What the socket will not take waits here, and
/// the client is not read from until it has gone out (backpressure: TCP slows the sender). End
/// of file or an error closes the client; anything else starts its idle timer again.
fn echo<B: Backend>(idle: Duration, mut timer: TimerId) -> Handler<B> {
    let mut unsent: Vec<u8> = Vec::new();
    let mut first = true;
    Box::new(move |reactor, fd, _ready| {
        reactor.cancel(timer);
        let Some(socket) = reactor.socket(fd) else {
            return;
        };
        if std::mem::take(&mut first) {
            trace::explain(format!(
                "fd {fd} is ready: its handler, echo, reads, sends it back, and starts its idle timer again"
            ));
        }
        let was_writing = !unsent.is_empty();
        let stays = if was_writing {
            send(socket, &mut unsent)
        } else {
            read_then_send(socket, &mut unsent)
        };
        if !stays {
            reactor.close(fd);
            return;
        }
        timer = idle_timer(reactor, fd, idle);
        // Writability only while an echo waits: an idle socket is always writable.
        let writing = !unsent.is_empty();
        if writing != was_writing {
            let _ = reactor.modify(fd, if writing { WRITE } else { Interest::READ });
        }
    })
}

/// One recv, then one send of what it brought; false: the client goes.
fn read_then_send(socket: BorrowedFd<'_>, unsent: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; RECV_SIZE];
    match sys::recv(socket, &mut buf, MsgFlags::empty()) {
        Ok(0) => false,
        Ok(n) => {
            unsent.extend_from_slice(&buf[..n]);
            send(socket, unsent)
        }
        Err(error) => matches!(error, Errno::EAGAIN | Errno::EINTR), // nothing after all, or trouble
    }
}

/// One send of what waits, `MSG_NOSIGNAL`: a client that is gone gives EPIPE, not SIGPIPE;
/// false: the client goes.
fn send(socket: BorrowedFd<'_>, unsent: &mut Vec<u8>) -> bool {
    match sys::send(socket, unsent, MsgFlags::MSG_NOSIGNAL) {
        Ok(n) => {
            unsent.drain(..n);
            true
        }
        Err(error) => matches!(error, Errno::EAGAIN | Errno::EINTR),
    }
}

// ---------------------------------------------------------------------------------------------
// Client mode, and the demo.
// ---------------------------------------------------------------------------------------------

/// Sends each word as a line and waits for its echo; then shuts down its side. With no words it
/// says nothing. Either way it waits for the server to close the connection.
fn talk(server: SocketAddr, words: &[String]) -> Outcome {
    let family = if server.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let sock = sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")?;
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    let mut buf = [0u8; RECV_SIZE];
    for word in words {
        let line = format!("{word}\n");
        if line.len() > RECV_SIZE {
            return Err(format!("a word of at most {} bytes, please", RECV_SIZE - 1).into());
        }
        sys::send_all(&sock, line.as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
        // A byte stream: collect until as many bytes came back as went out.
        let mut got = 0;
        while got < line.len() {
            match sys::recv(&sock, &mut buf[got..line.len()], MsgFlags::empty()).context("recv")? {
                0 => return Err("the server closed the connection before echoing".into()),
                n => got += n,
            }
        }
        trace::say(format!("the server echoed {:?}", String::from_utf8_lossy(&buf[..got])));
    }
    if words.is_empty() {
        trace::explain("this client says nothing: it waits until the server lets it go");
    } else {
        trace::explain("nothing more from us: the server's recv returns 0, its handler closes, and so do we");
        sys::shutdown(&sock, Shutdown::Write).context("shutdown")?;
    }
    if sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv")? == 0 {
        trace::say("recv returned 0: the server closed the connection");
    }
    sys::close(sock).context("close")?;
    Ok(())
}

/// The server on a thread of its own, on epoll; client#1 talks and leaves, then client#2 says
/// nothing until the server's timer lets it go.
fn demo() -> Outcome {
    let (port_tx, port_rx) = mpsc::channel();
    let server = trace::spawn("server", move || -> Result<(), String> {
        let listener = serve::listen("127.0.0.1:0".parse().expect("a literal address"))?;
        trace::explain("port 0 asked the kernel to choose; this asks which port it chose");
        let port = serve::local_addr(&listener)?.port();
        let mut reactor = Reactor::new(serve::epoll::Epoll::new()?);
        reactor.register(listener, Interest::READ, acceptor(DEMO_IDLE, Some(DEMO_CLIENTS)))?;
        port_tx.send(port).map_err(|e| e.to_string())?;
        run_to_the_end(reactor)
    });
    let port = port_rx
        .recv()
        .map_err(|_| "the server thread stopped before listening")?;
    lessons::run_process("client#1", "client", port, &["hello", "bye"])?;
    lessons::run_process("client#2", "client", port, &[])?;
    server.join().map_err(|_| "the server panicked")??;
    Ok(())
}
