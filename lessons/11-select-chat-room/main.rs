//! Lesson 11: the select chat room. Seed 003's `Server.run`, written out with system calls,
//! driving the chat room of `src/chat`: the room owns the bytes and no socket (a sans-I/O
//! service, `socklab::service::Service`), this loop owns the sockets and makes every call.
//!
//! The seed's loop, and what each part of it becomes here:
//!
//! ```text
//! self.inputs = [self.server]                        inputs: the listener and every client the room reads
//! self.outputs = []                                  outputs: clients whose output waits (a send took less)
//! self.message_queues[connection] = Queue.Queue()    the room's outbox for each client
//! while True:
//!   readable, writable, exceptional = select.select(self.inputs, self.outputs, self.inputs,
//!                                                   g_select_timeout)
//!                                                    select(inputs, outputs, every client, 10 s at most)
//!   for s in readable:
//!     if s is self.server: s.accept()                accept4 until EAGAIN; past descriptor 1023: refused
//!     else: data = s.recv(self.__buffer_size)        one recv, into the buffer the room lends (none: wait)
//!   for s in writable: ... cli.sendall(next_msg)     send the rest of what waits for s
//!   for s in exceptional: ... s.close()              urgent data: the client goes
//!                                                    then: the room's work; send at once; close who left
//! ```
//!
//!   make lesson-11                                  the demo: the room and three clients
//!   make lesson-11 ARGS="server --port 7000"        the room alone, for nc, socat, socklab chat-client
//!   make lesson-11 ARGS="server --port 7000 grace 2"  ... dropping a client that stops reading after 2 s
//!   make lesson-11 ARGS="client --port 7000"        the select chat client, for a room you started
//!
//! `src/serve/select.rs` and `src/serve/driver.rs` are the production version of this loop
//! (`socklab chat-server --mux select`): the same calls for each client, plus what a server
//! facing the world needs (a spare descriptor to turn newcomers away politely when out of
//! descriptors; one driver for select, poll and epoll, level- and edge-triggered).

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};
use socklab::chat::{self, Room};
use socklab::lessons::{self, Args, Context, Outcome, Role, Terminal};
use socklab::serve::{self, client::Ending};
use socklab::service::{ClientId, CloseReason, Service};
use socklab::sys::select::{self, FdSet};
use socklab::sys::{self, Errno};
use socklab::trace;

/// The seed's `g_select_timeout = 10`: select returns after 10 s even if nothing happened
/// (sooner when one of the room's timers is due).
const TICK: Duration = Duration::from_secs(10);
/// At most this many accepts per select: the listen backlog's worth.
const ACCEPTS_PER_SELECT: usize = serve::BACKLOG as usize;
/// After accept4 found no descriptor or memory for a newcomer, how long the listener stays out
/// of the read set: select would report it again at once, for ever.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// The demo room's clock: the time in every line, fixed so that two runs print the same bytes.
const DEMO_CLOCK: &str = "12:00:00";
/// A bound on the demo's selects (it needs 8), should the room never empty.
const DEMO_MAX_SELECTS: u64 = 100;
/// `server` mode runs until Ctrl-C, or this many selects.
const SERVER_MAX_SELECTS: u64 = 10_000_000;

fn main() {
    lessons::main(serve::DEFAULT_PORT, run);
}

fn run(args: Args) -> Outcome {
    let words: Vec<&str> = args.rest.iter().map(String::as_str).collect();
    match (args.role, &words[..]) {
        (Role::Demo, []) => demo(),
        (Role::Server, []) => server(args.addr(), chat::GRACE),
        (Role::Server, ["grace", seconds]) => {
            let grace = seconds
                .parse()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .filter(|grace| !grace.is_zero())
                .ok_or(format!("grace {seconds:?} is not a number of seconds above 0"))?;
            server(args.addr(), grace)
        }
        (Role::Client, _) => {
            if trace::actor() == "main" {
                trace::set_actor("client");
            }
            let stdin = std::io::stdin();
            match &words[..] {
                [] => chat_client(args.addr(), stdin.as_fd(), std::io::stdout().as_fd()),
                // The demo's terminals: one socket carries the typing in and the screen out.
                ["screen-on-stdin"] => chat_client(args.addr(), stdin.as_fd(), stdin.as_fd()),
                ["vanisher"] => vanisher(args.addr()),
                _ => Err(format!("client takes no words; got {words:?}").into()),
            }
        }
        (_, words) => Err(format!("the demo takes no words and the server only `grace SECONDS`; got {words:?}").into()),
    }
}

/// The room for you: on `addr` until Ctrl-C, with UTC time in its lines.
fn server(addr: SocketAddr, grace: Duration) -> Outcome {
    trace::set_actor("server");
    let listener = serve::listen(addr)?;
    let local = serve::local_addr(&listener)?;
    eprintln!(
        "lesson-11: the room listens on {local} (lesson 11's select loop); try: socklab chat-client --port {port}, \
         or nc {ip} {port}; Ctrl-C stops it",
        port = local.port(),
        ip = local.ip()
    );
    let room = Room::with_options(chat::utc_clock, chat::Options { grace });
    Server::new(listener.as_fd(), room).run(SERVER_MAX_SELECTS, false)?;
    sys::close(listener).context("close")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The loop.

/// The seed's `Server`: its lists become three fd_sets, its `client_info` the sockets by
/// number; its `message_queues` are the room's outboxes.
struct Server<'l> {
    listener: BorrowedFd<'l>,
    room: Room,
    /// The seed's `self.inputs`: the listener and every client the room takes bytes from now.
    inputs: FdSet,
    /// The seed's `self.outputs`: the clients whose output waits because a send took less.
    outputs: FdSet,
    /// The seed passes `self.inputs` again as the exceptional list; here it is every client.
    every_client: FdSet,
    /// Each client's socket, by descriptor number: the number is the client's id in the room.
    clients: Vec<Option<OwnedFd>>,
    /// The listener is out of the read set until then (see [`ACCEPT_PAUSE`]).
    accept_again_at: Option<Instant>,
    open: usize,
    served: u64,
}

/// What a run did: the demo reports it.
struct Summary {
    selects: u64,
    served: u64,
}

impl<'l> Server<'l> {
    fn new(listener: BorrowedFd<'l>, room: Room) -> Server<'l> {
        // C's fd_set: 1024 bits, descriptors 0 to 1023 (FD_SETSIZE).
        let empty = FdSet::with_room(select::SETSIZE);
        let mut inputs = empty.clone();
        inputs.insert(listener.as_raw_fd());
        Server {
            listener,
            room,
            inputs,
            outputs: empty.clone(),
            every_client: empty,
            clients: Vec::new(),
            accept_again_at: None,
            open: 0,
            served: 0,
        }
    }

    /// The seed's `run`: select, serve whoever is ready, again; at most `most` times, or (with
    /// `until_empty`) until every client that came has left.
    fn run(&mut self, most: u64, until_empty: bool) -> Result<Summary, String> {
        for selects in 1..=most {
            // select rewrites the sets it is given: it gets copies, the masters stay as they are.
            let (mut readable, mut writable, mut exceptional) =
                (self.inputs.clone(), self.outputs.clone(), self.every_client.clone());
            let mut timeout = self.timeout();
            if selects == 1 {
                trace::explain(
                    "read: the listener and every client; write: only a client a send could not finish; except: every client",
                );
            }
            match select::select(
                Some(&mut readable),
                Some(&mut writable),
                Some(&mut exceptional),
                Some(&mut timeout),
            ) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue, // a signal: never restarted, so select again
                Err(error) => return Err(format!("select: {error}")),
            }
            self.keep_time();
            let listener = self.listener.as_raw_fd();
            for id in readable.fds().filter(|&fd| fd != listener) {
                self.receive(id as ClientId);
            }
            for id in writable.fds() {
                self.send(id as ClientId);
            }
            for id in exceptional.fds() {
                self.urgent(id as ClientId);
            }
            // Accepts last, after the clients inside were served. (Closes come later still, in
            // settle: a number is never handed out again while this round acts on its client.)
            if readable.contains(listener) {
                self.accept_all()?;
            }
            self.settle();
            if until_empty && self.served > 0 && self.open == 0 {
                return Ok(Summary {
                    selects,
                    served: self.served,
                });
            }
        }
        Ok(Summary {
            selects: most,
            served: self.served,
        })
    }

    /// The seed's 10 s, or less: until the room's next timer is due, or accepting resumes.
    fn timeout(&self) -> TimeVal {
        let now = Instant::now();
        let wait = [self.room.deadline(), self.accept_again_at]
            .into_iter()
            .flatten()
            .map(|at| at.saturating_duration_since(now))
            .fold(TICK, Duration::min);
        // Whole microseconds, rounded up: a timer 0.3 µs away must not become a busy 0.
        TimeVal::microseconds(wait.as_nanos().div_ceil(1000) as i64)
    }

    /// The time, once per select: the room's timers that are due fire (a client that stopped
    /// reading is let go; a seed client's line ends after its quiet), and accepting resumes.
    fn keep_time(&mut self) {
        let now = Instant::now();
        self.room.tick(now);
        if self.accept_again_at.is_some_and(|at| now >= at) {
            self.accept_again_at = None;
            self.inputs.insert(self.listener.as_raw_fd());
        }
    }

    /// The seed's `s.recv(self.__buffer_size)`: one recv, into the free end of the client's
    /// inbox in the room. Once per select: select is level-triggered and reports the client
    /// again if more waits, so a client that never pauses cannot keep the loop to itself.
    fn receive(&mut self, id: ClientId) {
        let Some(socket) = self.clients[id].as_ref() else {
            return;
        };
        let buf = self.room.read_buffer(id);
        if buf.is_empty() {
            return; // the room is pushing back: the bytes wait in the kernel
        }
        match sys::recv(socket, buf, MsgFlags::empty()) {
            Ok(0) => self.room.eof(id), // its FIN: it will send no more
            Ok(n) => self.room.received(id, n),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(_) => self.room.failed(id), // ECONNRESET: it vanished
        }
    }

    /// One send of everything that waits for the client. `MSG_NOSIGNAL`: a client that has gone
    /// is `EPIPE`, not a SIGPIPE that kills the server. What the kernel did not take stays in
    /// the room's outbox, and the client is in the write set until it has all gone.
    fn send(&mut self, id: ClientId) {
        let Some(socket) = self.clients[id].as_ref() else {
            return;
        };
        let output = self.room.output(id);
        let offered = output.len();
        if offered == 0 {
            self.outputs.remove(id as i32); // the seed's `Queue.Empty`: nothing waits
            return;
        }
        match sys::send(socket, output, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => {
                self.room.wrote(id, n);
                if n < offered {
                    self.outputs.insert(id as i32);
                } else {
                    self.outputs.remove(id as i32);
                }
            }
            Err(Errno::EAGAIN | Errno::EINTR) => self.outputs.insert(id as i32),
            Err(_) => self.room.failed(id), // EPIPE, ECONNRESET
        }
    }

    /// The exceptional set, on TCP: urgent (`MSG_OOB`) data, which the room has no use for.
    fn urgent(&mut self, id: ClientId) {
        if self.clients[id].is_some() {
            trace::say(format!("client {id} sent urgent data: it goes"));
            self.room.failed(id);
        }
    }

    /// The listener is readable: accept4 until `EAGAIN`. Each client is non-blocking from birth
    /// (Linux does not copy O_NONBLOCK from the listener).
    fn accept_all(&mut self) -> Result<(), String> {
        for _ in 0..ACCEPTS_PER_SELECT {
            match sys::accept4(self.listener, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC) {
                Ok((socket, peer)) => self.admit(socket, &peer),
                Err(Errno::EAGAIN) => return Ok(()),
                Err(error @ (Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)) => {
                    trace::say(format!("accept4: {error}; the newcomers wait in the backlog"));
                    self.inputs.remove(self.listener.as_raw_fd());
                    self.accept_again_at = Some(Instant::now() + ACCEPT_PAUSE);
                    return Ok(());
                }
                Err(error @ (Errno::EBADF | Errno::EINVAL | Errno::ENOTSOCK | Errno::EFAULT)) => {
                    return Err(format!("accept4: {error}"));
                }
                // A signal, a client that gave up first (ECONNABORTED), or a network error on
                // its connection: accept(2) says go on to the next.
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// A new client: watched for input and urgent data, and welcomed by the room. One whose
    /// number has no bit in an fd_set is told so and closed.
    fn admit(&mut self, socket: OwnedFd, peer: &SockaddrStorage) {
        let id = socket.as_raw_fd() as ClientId;
        let peer = inet(peer);
        if !select::fits(&socket) {
            let why = format!(
                "descriptor {id} is past select's limit of {} (FD_SETSIZE)",
                select::SETSIZE
            );
            trace::say(format!("refusing {peer}: {why}"));
            let line = format!("! sorry, the server cannot take you: {why}\n");
            let _ = sys::send(&socket, line.as_bytes(), MsgFlags::MSG_NOSIGNAL);
            let _ = sys::close(socket);
            return;
        }
        trace::say(format!("{peer} is client {id} (its descriptor number)"));
        if self.clients.len() <= id {
            self.clients.resize_with(id + 1, || None);
        }
        self.clients[id] = Some(socket);
        self.inputs.insert(id as i32);
        self.every_client.insert(id as i32);
        self.open += 1;
        self.served += 1;
        self.room.join(id, peer);
    }

    /// After each select: the room does the work it can (lines framed, said, queued for the
    /// others), and names the clients whose output or read interest changed. Their output is
    /// sent at once, unless they wait in the write set; the room's verdict on reading them
    /// becomes their place in the read set. Again, while sending lets the room do more.
    fn settle(&mut self) {
        let mut changed = Vec::new();
        loop {
            changed.clear();
            self.room.changed(&mut changed);
            self.close_departed();
            if changed.is_empty() {
                return;
            }
            for &id in &changed {
                if self.clients.get(id).is_none_or(Option::is_none) {
                    continue;
                }
                if !self.outputs.contains(id as i32) || self.room.retry_send(id) {
                    self.send(id);
                }
                if self.room.wants_read(id) {
                    self.inputs.insert(id as i32);
                } else {
                    self.inputs.remove(id as i32); // its inbox is full: TCP slows it down
                }
            }
        }
    }

    /// Closes whoever the room let go (exit, end of file, a reset, urgent data, too far behind).
    fn close_departed(&mut self) {
        let mut closes: Vec<(ClientId, CloseReason)> = Vec::new();
        self.room.closes(&mut closes);
        for (id, why) in closes {
            let Some(socket) = self.clients[id].take() else {
                continue;
            };
            for set in [&mut self.inputs, &mut self.outputs, &mut self.every_client] {
                set.remove(id as i32);
            }
            self.open -= 1;
            // exit, end of file and a failure show in the recv or send before; the timers' don't.
            if matches!(why, CloseReason::StoppedReading | CloseReason::TooFarBehind) {
                trace::say(format!("client {id} goes: {why}"));
            }
            let _ = sys::close(socket);
        }
    }
}

/// An address from accept4, as the room names people (0.0.0.0:0 if not IPv4 or IPv6).
fn inet(peer: &SockaddrStorage) -> SocketAddr {
    if let Some(v4) = peer.as_sockaddr_in() {
        SocketAddr::from(*v4)
    } else if let Some(v6) = peer.as_sockaddr_in6() {
        SocketAddr::from(*v6)
    } else {
        SocketAddr::from(([0, 0, 0, 0], 0))
    }
}

// ---------------------------------------------------------------------------------------------
// The clients.

/// The select chat client of `src/serve/client.rs`: what you type goes to the room, what the
/// room sends goes to the screen, until you type `exit` or end the input (Ctrl-D).
fn chat_client(server: SocketAddr, keyboard: BorrowedFd<'_>, screen: BorrowedFd<'_>) -> Outcome {
    match serve::client::run(server, keyboard, screen)? {
        Ending::Left => {} // its recv returned 0 and it closed: the trace shows it
        Ending::LeftUnanswered => trace::say("we left; the server never closed, so we closed first"),
        Ending::ServerClosed => return Err("the server closed the connection".into()),
    }
    Ok(())
}

/// A program that dies in the middle of a sentence. It sends what is typed at it as it is,
/// newline or not, and when its terminal closes it "crashes": SO_LINGER 0 makes close send a
/// reset (RST) instead of the polite FIN, so the server finds a dead connection, not a goodbye.
fn vanisher(server: SocketAddr) -> Outcome {
    let terminal = std::io::stdin();
    let family = if server.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let sock = sys::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, SockProtocol::Tcp).context("socket")?;
    sys::connect(&sock, server).context(format!("connect {server}"))?;
    let mut buf = [0u8; chat::INBOX];
    sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv")?;
    trace::explain("what is typed at us, sent as it is: a line, a command and half a line");
    let n = sys::read(terminal.as_fd(), &mut buf).context("read the terminal")?;
    sys::send_all(&sock, &buf[..n], MsgFlags::MSG_NOSIGNAL).context("send")?;
    trace::explain("the answer to /who: proof that the server has read all we sent, the half line too");
    sys::recv(&sock, &mut buf, MsgFlags::empty()).context("recv")?;
    trace::explain("0: the demo closed our terminal, the signal to crash");
    if sys::read(terminal.as_fd(), &mut buf).context("read the terminal")? != 0 {
        return Err("the vanisher expected its terminal to close".into());
    }
    let abort = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    trace::explain("linger on, for 0 seconds: close will throw away what is unsent and send RST");
    sys::setsockopt(&sock, sockopt::Linger, &abort).context("setsockopt SO_LINGER")?;
    trace::explain("RST, not FIN: the server's next recv on this connection fails with ECONNRESET");
    sys::close(sock).context("close")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The demo: the room on a thread, three clients as processes, their terminals played here.

/// The room on 127.0.0.1, on a port the kernel picks; stops once everyone has left.
fn demo_server(port_tx: mpsc::Sender<u16>) -> Result<(), String> {
    let listener = serve::listen("127.0.0.1:0".parse().expect("a literal address"))?;
    trace::explain("port 0 asked the kernel to choose; this asks which port it chose");
    let port = serve::local_addr(&listener)?.port();
    port_tx.send(port).map_err(|e| e.to_string())?;
    let room = Room::new(|| DEMO_CLOCK.to_string());
    let summary = Server::new(listener.as_fd(), room).run(DEMO_MAX_SELECTS, true)?;
    trace::say(format!(
        "the room is empty again: {} clients served in {} selects",
        summary.served, summary.selects
    ));
    sys::close(listener).context("close")?;
    Ok(())
}

/// Two people join and one talks; a third says a line, a command and half a line, and vanishes;
/// the first leaves with `exit`, the second with Ctrl-D. Each line is typed only once every
/// screen shows what the last one caused, so the server sees one thing happen per select.
fn demo() -> Outcome {
    trace::set_actor("terminals");
    // Made before the server takes its descriptors: the terminals' own go to 64 and up.
    let mut one = Terminal::new("client#1")?;
    let mut two = Terminal::new("client#2")?;
    let mut three = Terminal::new("client#3")?;
    let (port_tx, port_rx) = mpsc::channel();
    let server = trace::spawn("server", move || demo_server(port_tx));
    let port = port_rx
        .recv()
        .map_err(|_| "the server thread stopped before listening")?;

    let chat_client = "the select chat client, its stdin a terminal the demo types into";
    one.start(port, &["screen-on-stdin"], chat_client)?;
    one.sees("welcome")?;
    two.start(port, &["screen-on-stdin"], chat_client)?;
    two.sees("welcome")?;
    one.sees("joined")?;

    one.types("hello, room\n")?;
    two.sees("say: hello, room")?;

    three.start(port, &["vanisher"], "a program that will vanish in mid-line")?;
    one.sees("joined")?;
    two.sees("joined")?;
    three.types("hi all, I'm new here\n/who\nbrb, my connection is fl")?;
    one.sees("say: hi all")?;
    two.sees("say: hi all")?;
    three.closes();
    one.sees("left (connection failed)")?;
    two.sees("left (connection failed)")?;
    three.ends()?;

    one.types("exit\n")?;
    two.sees("left (exit)")?;
    one.ends()?;
    two.presses_ctrl_d();
    two.ends()?;

    server.join().map_err(|_| "the server panicked")??;
    Ok(())
}
