//! The driver: what every loop does the same way, over any [`Backend`]; `stop`: how it stops
//! on SIGINT or SIGTERM.

mod stop;

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{MsgFlags, SockFlag};

use super::{
    ACCEPT_RETRY, ACCEPTS_PER_WAKE, Backend, Event, Interest, Options, ROUNDS_PER_WAKE, Readiness, Summary, peer_addr,
};
use crate::service::{ClientId, CloseReason, Service};
use crate::sys::{self, Errno};
use crate::trace::{self, Mode};
use stop::Signals;

/// What the driver knows about one client, beyond what the service knows.
#[derive(Default)]
struct Slot {
    socket: Option<OwnedFd>,
    /// Level-triggered: what the backend watches for it, as last told.
    watched: Interest,
    /// Its last send met EAGAIN, or was short: it waits for writability.
    blocked: bool,
    /// Edge-triggered: readiness was reported and no recv has found the end of it yet.
    readable: bool,
    /// The peer shut down its side (READ_HANG_UP): its end-of-file waits behind its bytes.
    peer_done: bool,
    /// In `Driver::owed`.
    owed: bool,
    /// The round of its last recv: one per client per round.
    read_at: u64,
}

struct Driver<'l, B: Backend, S: Service> {
    backend: B,
    service: S,
    listener: BorrowedFd<'l>,
    /// By descriptor number.
    clients: Vec<Slot>,
    open: usize,
    served: u64,
    /// A descriptor held in reserve (a copy of the listener, close-on-exec like every other
    /// descriptor the server opens). When accept4 fails with EMFILE the connection stays
    /// queued and the listener stays readable, so a loop would wake for it forever; closing
    /// the spare frees one number to accept it and turn it away politely.
    spare: Option<OwnedFd>,
    events: Vec<Event>,
    changed: Vec<ClientId>,
    closes: Vec<(ClientId, CloseReason)>,
    /// Edge-triggered: clients whose recv filled the buffer (more may wait) or whose service
    /// takes bytes again, with no edge to come for what is already there: read them next round.
    owed: Vec<ClientId>,
    owed_now: Vec<ClientId>,
    /// Edge-triggered: accepts stopped at the budget with arrivals perhaps still queued.
    listener_owed: bool,
    /// Accepting stopped (out of memory or descriptors) until then.
    accept_paused_until: Option<Instant>,
    /// This wake's time, read once after the wait when the service keeps time or accepting is
    /// paused; otherwise no clock is read at all.
    now: Option<Instant>,
    /// Counts rounds: a wake's first, and the edge-triggered rounds after it.
    round: u64,
    /// The self-pipe that SIGINT and SIGTERM write to, when the loop stops on them.
    signals: Option<Signals>,
}

/// Runs `service` on `listener` with `backend` until `options` says stop. Every client socket
/// is closed on the way out, then the backend's own; the listener is the caller's.
pub(crate) fn run<B: Backend, S: Service>(
    mut backend: B,
    listener: BorrowedFd<'_>,
    service: S,
    options: &Options,
) -> Result<Summary, String> {
    let token = listener.as_raw_fd() as usize;
    if let Err(reason) = backend.register(listener, token, Interest::READ) {
        backend.close();
        return Err(format!("the listener (descriptor {token}): {reason}"));
    }
    let signals = match options.stop_on_signals.then(Signals::install).transpose() {
        Ok(signals) => signals,
        Err(error) => {
            backend.close();
            return Err(error);
        }
    };
    if let Some(signals) = &signals {
        // Watched like any client: a byte in it is a signal that came.
        let _ = backend.register(signals.fd(), signals.token(), Interest::READ);
    }
    let mut driver = Driver {
        backend,
        service,
        listener,
        clients: Vec::new(),
        open: 0,
        served: 0,
        spare: None,
        events: Vec::new(),
        changed: Vec::new(),
        closes: Vec::new(),
        owed: Vec::new(),
        owed_now: Vec::new(),
        listener_owed: false,
        accept_paused_until: None,
        now: None,
        round: 0,
        signals,
    };
    let outcome = driver.run(options);
    driver.close_all();
    let Driver {
        backend,
        served,
        signals,
        ..
    } = driver;
    backend.close();
    if let Some(signals) = signals {
        signals.restore();
    }
    outcome.map(|(iterations, stopped_by, cut_off)| Summary {
        iterations,
        served,
        stopped_by,
        cut_off,
    })
}

/// Narration, built only when the trace is on.
fn narrate(text: impl FnOnce() -> String) {
    if trace::mode() != Mode::Off {
        trace::say(text());
    }
}

impl<B: Backend, S: Service> Driver<'_, B, S> {
    /// The loop itself; returns how many times it waited, and the signal that stopped it and
    /// how many clients that cut off, if one did.
    fn run(&mut self, options: &Options) -> Result<(u64, Option<&'static str>, u64), String> {
        let mut iterations = 0;
        let stop_token = self.signals.as_ref().map(Signals::token);
        while !self.done(options, iterations) {
            let timeout = self.timeout(options.tick);
            self.events.clear();
            let waited = self.backend.wait(&mut self.events, timeout);
            iterations += 1;
            match waited {
                Ok(()) => {}
                Err(Errno::EINTR) => continue, // a signal: never restarted, so wait again
                Err(error) => return Err(format!("{}: {error}", B::NAME)),
            }
            self.round += 1;
            self.keep_time();
            self.serve_owed();
            let mut listener_ready = std::mem::take(&mut self.listener_owed);
            let mut signalled = false;
            for index in 0..self.events.len() {
                let event = self.events[index];
                if event.token == self.listener.as_raw_fd() as usize {
                    listener_ready = true;
                } else if Some(event.token) == stop_token {
                    signalled = true;
                } else {
                    self.handle(event);
                }
            }
            // Accepts last: a number closed this wake and handed out again by accept4 is never
            // taken for the client that had it by an event still to be handled.
            if listener_ready && !signalled && self.accept_paused_until.is_none() {
                self.accept()?;
            }
            self.settle();
            if let Some(why) = signalled
                .then(|| self.signals.as_ref().and_then(Signals::take))
                .flatten()
            {
                let cut_off = self.stop(why);
                return Ok((iterations, Some(why), cut_off));
            }
            // Edge-triggered: whoever is owed a read is read again now, a round at a time.
            for _ in 1..ROUNDS_PER_WAKE {
                if self.owed.is_empty() {
                    break;
                }
                self.round += 1;
                self.serve_owed();
                self.settle();
            }
        }
        Ok((iterations, None, 0))
    }

    fn done(&self, options: &Options, iterations: u64) -> bool {
        options.max_iterations.is_some_and(|most| iterations >= most)
            || (options.until_empty && self.served > 0 && self.open == 0)
    }

    /// How long the next wait may block: not at all while work is owed (edge-triggered), else
    /// until the service's next deadline or the end of an accept pause, at most `tick`.
    fn timeout(&self, tick: Duration) -> Duration {
        if !self.owed.is_empty() || (self.listener_owed && self.accept_paused_until.is_none()) {
            return Duration::ZERO;
        }
        let Some(now) = self.now else {
            return tick;
        };
        [self.service.deadline(), self.accept_paused_until]
            .into_iter()
            .flatten()
            .map(|at| at.saturating_duration_since(now))
            .fold(tick, Duration::min)
    }

    /// Reads the clock, once, if anyone needs the time: the service's timers, an accept pause.
    fn keep_time(&mut self) {
        if !self.service.keeps_time() && self.accept_paused_until.is_none() {
            return;
        }
        let now = Instant::now();
        self.now = Some(now);
        if self.service.keeps_time() {
            self.service.tick(now);
            self.close_departed();
        }
        if self.accept_paused_until.is_some_and(|until| now >= until) {
            self.accept_paused_until = None;
            if self.backend.edge_triggered() {
                self.listener_owed = true; // no edge will come for those already queued
            } else {
                let token = self.listener.as_raw_fd() as usize;
                let _ = self.backend.reregister(self.listener, token, Interest::READ);
            }
        }
    }

    /// Edge-triggered carry-over: the clients owed a read from the last round, each read once.
    fn serve_owed(&mut self) {
        std::mem::swap(&mut self.owed, &mut self.owed_now);
        for index in 0..self.owed_now.len() {
            let id = self.owed_now[index];
            let slot = &mut self.clients[id];
            if std::mem::take(&mut slot.owed) && slot.readable {
                self.read(id);
            }
        }
        self.owed_now.clear();
    }

    /// One client's readiness, from this wake's wait.
    fn handle(&mut self, event: Event) {
        let id = event.token;
        let ready = event.readiness;
        if self.clients.get(id).is_none_or(|slot| slot.socket.is_none()) {
            return; // closed earlier in this wake
        }
        if ready.contains(Readiness::URGENT) {
            // On TCP, urgent (MSG_OOB) data: select's exceptional set, POLLPRI, EPOLLPRI. The
            // services here have no use for it, and a client that sends it is dropped.
            self.fail(id, "urgent (out-of-band) data, which this service does not use");
            return;
        }
        if ready.intersects(Readiness::ERROR | Readiness::HANG_UP) {
            // Read first: bytes that came before the hang-up or the error are still delivered,
            // and recv says what happened (0 for end-of-file, ECONNRESET for a reset).
            self.read_to_the_end(id);
            self.fail(id, "hang-up or error: the connection is finished");
            return;
        }
        if ready.intersects(Readiness::READABLE | Readiness::READ_HANG_UP) {
            let slot = &mut self.clients[id];
            slot.readable = true;
            slot.peer_done |= ready.contains(Readiness::READ_HANG_UP);
            self.read(id);
        }
        if ready.contains(Readiness::WRITABLE) && self.clients[id].socket.is_some() {
            // Only a client that waits for it: new output is sent when it is queued (settle).
            if std::mem::take(&mut self.clients[id].blocked) {
                self.send(id);
                self.update_interest(id);
            }
        }
    }

    /// One recv, into the buffer the service lends: level-triggered, the kernel reports the
    /// socket again if more is left; edge-triggered, a recv that filled the buffer may have
    /// left more, and the client is owed another next round. A short recv is as good as EAGAIN:
    /// epoll(7) allows a read that returns less than asked as proof that a stream socket's
    /// input is exhausted, and the next bytes bring a new edge. Not its end-of-file, though:
    /// once the peer has shut down its side (EPOLLRDHUP came), the 0 that waits behind the
    /// bytes brings no new edge, so the client is owed a read until it has been seen.
    fn read(&mut self, id: ClientId) {
        let edge = self.backend.edge_triggered();
        let slot = &mut self.clients[id];
        let Some(socket) = slot.socket.as_ref() else {
            return;
        };
        if slot.read_at == self.round {
            return; // one read per client per round: a flood cannot keep the others waiting
        }
        let buf = self.service.read_buffer(id);
        if buf.is_empty() {
            return; // backpressure: the service takes nothing now, the bytes wait in the kernel
        }
        let asked = buf.len();
        let result = sys::recv(socket, buf, MsgFlags::empty());
        // A recv that filled the buffer may have left more; so may one a signal interrupted,
        // and any that returned bytes when the end-of-file is known to follow them.
        let slot = &mut self.clients[id];
        let more = match result {
            Ok(n) => n == asked || (n > 0 && slot.peer_done),
            Err(error) => error == Errno::EINTR,
        };
        slot.read_at = self.round;
        slot.readable = more;
        match result {
            Ok(0) => self.service.eof(id),
            Ok(n) => self.service.received(id, n),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(_) => self.service.failed(id),
        }
        if edge && more {
            self.owe(id);
        }
        self.close_departed();
    }

    /// Before closing a client that hung up or failed: recv until end-of-file, an error, or
    /// the service takes no more.
    fn read_to_the_end(&mut self, id: ClientId) {
        loop {
            let Some(socket) = self.clients[id].socket.as_ref() else {
                return;
            };
            let buf = self.service.read_buffer(id);
            if buf.is_empty() {
                return;
            }
            match sys::recv(socket, buf, MsgFlags::empty()) {
                Ok(0) => self.service.eof(id),
                Ok(n) => {
                    self.service.received(id, n);
                    continue;
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {}
                Err(_) => self.service.failed(id),
            }
            self.close_departed();
            return;
        }
    }

    fn owe(&mut self, id: ClientId) {
        let slot = &mut self.clients[id];
        if !slot.owed {
            slot.owed = true;
            self.owed.push(id);
        }
    }

    /// One send of what waits for the client. `MSG_NOSIGNAL`: a peer that has gone gives
    /// `EPIPE`, not a SIGPIPE that kills the server. A send that met EAGAIN, or took less than
    /// offered (the kernel's buffer is full), waits for writability.
    fn send(&mut self, id: ClientId) {
        let slot = &mut self.clients[id];
        let Some(socket) = slot.socket.as_ref() else {
            return;
        };
        let output = self.service.output(id);
        if output.is_empty() {
            return;
        }
        let offered = output.len();
        match sys::send(socket, output, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => {
                slot.blocked = n < offered;
                self.service.wrote(id, n);
            }
            Err(Errno::EAGAIN | Errno::EINTR) => slot.blocked = true,
            Err(_) => self.service.failed(id),
        }
        self.close_departed();
    }

    /// Level-triggered: tells the backend what the client now needs (input unless the service
    /// pushes back, writability only while a send waits), if that changed. Edge-triggered,
    /// nothing changes in the kernel; a client the service takes bytes from again, whose input
    /// was never read to the end, is owed a read.
    fn update_interest(&mut self, id: ClientId) {
        let reading = self.service.wants_read(id);
        let slot = &mut self.clients[id];
        let Some(socket) = slot.socket.as_ref() else {
            return;
        };
        if self.backend.edge_triggered() {
            if reading && slot.readable {
                self.owe(id);
            }
            return;
        }
        let wanted = Interest {
            read: reading,
            write: slot.blocked,
            urgent: true,
        };
        if wanted != slot.watched {
            slot.watched = wanted;
            if let Err(error) = self.backend.reregister(socket.as_fd(), id, wanted) {
                // It could no longer be heard from, or it would spin: it goes.
                self.fail(id, &format!("the loop cannot watch it any more ({error})"));
            }
        }
    }

    /// After this wake's events: the service does the work they made possible, the output it
    /// queued is sent at once (optimistic: writability is asked for only after a send met
    /// EAGAIN), and what each changed client needs is told to the backend. Again, while
    /// sending lets the service do more (a reader that caught up lets the room go on).
    fn settle(&mut self) {
        loop {
            self.service.changed(&mut self.changed);
            self.close_departed(); // whoever the work let go, before anything is sent
            if self.changed.is_empty() {
                break;
            }
            for index in 0..self.changed.len() {
                let id = self.changed[index];
                let Some(slot) = self.clients.get(id).filter(|slot| slot.socket.is_some()) else {
                    continue;
                };
                if !slot.blocked || self.service.retry_send(id) {
                    self.send(id);
                }
                self.update_interest(id);
            }
            self.changed.clear();
        }
    }

    /// The loop saw trouble on a client that no recv or send reported: it goes.
    fn fail(&mut self, id: ClientId, why: &str) {
        if self.clients[id].socket.is_some() {
            narrate(|| format!("client {id}: {why}"));
            self.service.failed(id);
            self.close_departed();
        }
    }

    /// Closes the sockets of the clients the service let go: out of the backend first (epoll:
    /// close removes a socket only with its last reference), then close.
    fn close_departed(&mut self) {
        self.service.closes(&mut self.closes);
        if !self.closes.is_empty() {
            self.close_them();
        }
    }

    /// Runs after every recv and send, and rarely has anyone to close: kept out of line.
    #[cold]
    fn close_them(&mut self) {
        for index in 0..self.closes.len() {
            let (id, why) = self.closes[index];
            let Some(socket) = self.clients.get_mut(id).and_then(|slot| slot.socket.take()) else {
                continue;
            };
            self.clients[id] = Slot::default();
            self.open -= 1;
            narrate(|| format!("client {id} goes: {why}"));
            let _ = self.backend.deregister(socket.as_fd(), id);
            let _ = sys::close(socket);
        }
        self.closes.clear();
    }

    /// The listener is readable: accept4 until `EAGAIN`, at most [`ACCEPTS_PER_WAKE`] times.
    /// Each new socket is non-blocking from birth (`SOCK_NONBLOCK`; Linux does not copy
    /// O_NONBLOCK from the listener).
    ///
    /// # Errors
    /// An accept4 error that says the listener itself is broken (EBADF, EINVAL, ENOTSOCK...).
    fn accept(&mut self) -> Result<(), String> {
        if self.spare.is_none() {
            trace::explain("a spare descriptor, kept so that running out of descriptors (EMFILE) can be handled");
            self.spare = sys::fcntl_dupfd_cloexec(self.listener, 0).ok();
        }
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        for _ in 0..ACCEPTS_PER_WAKE {
            match sys::accept4(self.listener, flags) {
                Ok((socket, peer)) => self.admit(socket, peer_addr(&peer)),
                Err(Errno::EAGAIN) => return Ok(()),
                // A signal; or the client gave up between its handshake and our accept, or a
                // network error pending on its connection (accept(2): treat those as EAGAIN,
                // that is, go on to the next).
                Err(
                    Errno::EINTR
                    | Errno::ECONNABORTED
                    | Errno::EPROTO
                    | Errno::EPERM
                    | Errno::ENETDOWN
                    | Errno::ENOPROTOOPT
                    | Errno::EHOSTDOWN
                    | Errno::ENONET
                    | Errno::EHOSTUNREACH
                    | Errno::EOPNOTSUPP
                    | Errno::ENETUNREACH,
                ) => continue,
                Err(Errno::EMFILE | Errno::ENFILE) if self.spare.is_some() => self.turn_away_with_spare(),
                // Out of descriptors with no spare, or out of memory: the connections wait in
                // the backlog; accepting again at once would only spin.
                Err(error @ (Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)) => {
                    self.pause_accepting(error);
                    return Ok(());
                }
                Err(error) => return Err(format!("accept4: {error}")),
            }
        }
        // The budget ran out: level-triggered, the kernel reports the listener again; edge-
        // triggered, no new edge will come for the arrivals already queued.
        self.listener_owed = self.backend.edge_triggered();
        Ok(())
    }

    /// Registers a new client with the backend and the service, or turns it away.
    fn admit(&mut self, socket: OwnedFd, peer: SocketAddr) {
        let id = socket.as_raw_fd() as usize;
        // Edge-triggered: everything, once and for good. Level-triggered: input and urgent
        // data; writability only when a send meets EAGAIN.
        let interest = if self.backend.edge_triggered() {
            Interest::ALL
        } else {
            Interest::READ_URGENT
        };
        if let Err(reason) = self.backend.register(socket.as_fd(), id, interest) {
            refuse(socket, peer, &reason);
            return;
        }
        if self.clients.len() <= id {
            self.clients.resize_with(id + 1, Slot::default);
        }
        narrate(|| format!("{peer} is client {id} (its descriptor number)"));
        self.clients[id] = Slot {
            socket: Some(socket),
            watched: interest,
            ..Slot::default()
        };
        self.open += 1;
        self.served += 1;
        self.service.join(id, peer);
        self.close_departed();
    }

    /// Out of descriptors: give the spare back, accept the waiting client into its number,
    /// tell it why it cannot stay, close it, and take a spare again. Everyone inside is
    /// unaffected.
    fn turn_away_with_spare(&mut self) {
        if let Some(spare) = self.spare.take() {
            let _ = sys::close(spare);
        }
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        if let Ok((socket, peer)) = sys::accept4(self.listener, flags) {
            refuse(
                socket,
                peer_addr(&peer),
                "the server has no descriptors left; try again later",
            );
        }
        self.spare = sys::fcntl_dupfd_cloexec(self.listener, 0).ok();
    }

    /// Stops accepting for [`ACCEPT_RETRY`]: level-triggered, the listener is watched for
    /// nothing meanwhile (it would be reported on every wait); edge-triggered, it is simply
    /// not accepted from until then.
    fn pause_accepting(&mut self, error: Errno) {
        narrate(|| {
            format!(
                "accept4 failed ({error}); the connections wait in the backlog; trying again in {} ms",
                ACCEPT_RETRY.as_millis()
            )
        });
        self.accept_paused_until = Some(Instant::now() + ACCEPT_RETRY);
        if !self.backend.edge_triggered() {
            let token = self.listener.as_raw_fd() as usize;
            let _ = self.backend.reregister(self.listener, token, Interest::NONE);
        }
    }

    /// Closes every client's socket, and the spare: the loop is stopping. What waits is lost.
    /// (No deregistering: a socket's last close takes it out of any epoll interest list, and
    /// the backend goes next.)
    fn close_all(&mut self) {
        for slot in &mut self.clients {
            if let Some(socket) = slot.socket.take() {
                let _ = sys::close(socket);
            }
        }
        self.open = 0;
        if let Some(spare) = self.spare.take() {
            let _ = sys::close(spare);
        }
    }
}

/// Tells a client it cannot be served, in one best-effort line, and closes it.
fn refuse(socket: OwnedFd, peer: SocketAddr, reason: &str) {
    narrate(|| format!("refusing {peer}: {reason}"));
    let line = format!("! sorry, the server cannot take you: {reason}\n");
    let _ = sys::send(&socket, line.as_bytes(), MsgFlags::MSG_NOSIGNAL);
    let _ = sys::close(socket);
}
