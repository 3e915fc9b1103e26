//! Event loops that drive the chat room: they own the sockets and move the bytes; the room
//! ([`crate::chat`]) decides what the bytes mean.
//!
//! - `select`: the room on select(2), as seed 003's `Server.run` does it (lesson 11);
//! - `poll`: the room on poll(2): one array of {fd, events}, no FD_SETSIZE limit (lesson 13);
//! - `epoll`: the room on epoll(7), level- or edge-triggered (lessons 14 and 15);
//! - `echo`: the echo service, each client's bytes back to it, for any of those loops;
//! - `client`: the chat client, which watches stdin and its socket with one select.
//!
//! Every loop does the same four things, so they live here for poll and epoll to share:
//! [`listen`] makes a non-blocking listener; [`Chat::accept`] takes the connections that wait;
//! [`Chat::read`] hands a client's bytes to the room; [`Chat::flush`] writes what the room
//! queued for a client. A loop only decides *when* each of them is worth calling.
//!
//! What a loop drives is a [`Service`]: the chat [`Room`], or [`echo::Echo`]. Neither touches a
//! socket, so every loop can serve either.
//!
//! A client's id in the room is its descriptor number: unique while the client is connected,
//! and the number a learner sees in the trace. The kernel reuses a number once it is closed,
//! and so may the room ([`crate::chat::ClientId`]).

pub mod client;
pub mod echo;
pub mod epoll;
pub mod poll;
pub mod select;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage, sockopt};

use crate::chat::{ClientId, CloseReason, Room};
use crate::context::Context;
use crate::sys::{self, Errno};
use crate::trace;

/// The seed's port: `Server(host, port=33333)`.
pub const DEFAULT_PORT: u16 = 33333;

/// Finished handshakes the kernel may hold for us between two accepts: a room can see a
/// burst of arrivals, and the seed's `listen(10)` would turn the eleventh away.
pub const BACKLOG: i32 = 128;

/// Bytes asked for in one recv: a few full chat lines.
const READ_SIZE: usize = 4096;

/// At most this many accepts, recvs or sends for one socket per wake-up, so a client that
/// sends without pause (or a flood of arrivals) cannot keep the loop from everyone else.
/// A level-triggered loop simply comes back for the rest; see [`Progress`].
pub const CALLS_PER_WAKE: usize = 16;

/// When a loop stops. The command line runs until Ctrl-C; tests and demos set a bound.
#[derive(Clone, Debug)]
pub struct Options {
    /// The longest one wait may block (the seed's `g_select_timeout = 10`).
    pub tick: Duration,
    /// Stop after this many waits.
    pub max_iterations: Option<u64>,
    /// Stop once the room is empty again after at least one client came and went.
    pub until_empty: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            tick: Duration::from_secs(10),
            max_iterations: None,
            until_empty: false,
        }
    }
}

impl Options {
    /// Whether a loop that has waited `iterations` times should stop now.
    pub fn done<S: Service>(&self, iterations: u64, chat: &Chat<S>) -> bool {
        self.max_iterations.is_some_and(|most| iterations >= most)
            || (self.until_empty && chat.served() > 0 && chat.is_empty())
    }
}

/// What a loop did, for a demo to report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// How many times it waited.
    pub iterations: u64,
    /// How many clients it let in.
    pub served: u64,
}

/// Whether a call went as far as the kernel's `EAGAIN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing is left to do until the descriptor is ready again.
    Drained,
    /// It stopped at [`CALLS_PER_WAKE`] with work left. A level-triggered wait reports the
    /// descriptor again; an edge-triggered loop must call again itself.
    More,
}

/// `socket`, `setsockopt(SO_REUSEADDR)`, `bind`, `listen`: a non-blocking listener, so that an
/// accept never blocks the loop even if the client that made it readable has gone.
///
/// # Errors
/// One line naming the call that failed: `bind 127.0.0.1:33333: EADDRINUSE: Address already in use`.
pub fn listen(addr: SocketAddr) -> Result<OwnedFd, String> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let listener = sys::socket(family, SockType::Stream, flags, SockProtocol::Tcp).context("socket")?;
    // The seed sets it too: a restarted server can bind while old connections sit in TIME_WAIT.
    sys::setsockopt(&listener, sockopt::ReuseAddr, &true).context("setsockopt SO_REUSEADDR")?;
    sys::bind(&listener, addr).context(format!("bind {addr}"))?;
    sys::listen(&listener, BACKLOG).context("listen")?;
    Ok(listener)
}

/// The address a socket is bound to: after port 0, which port the kernel chose.
///
/// # Errors
/// When getsockname fails or the socket is not IPv4 or IPv6.
pub fn local_addr(socket: impl AsFd) -> Result<SocketAddr, String> {
    let name = sys::getsockname(socket).context("getsockname")?;
    inet_addr(&name).ok_or_else(|| "getsockname: not an IPv4 or IPv6 address".to_string())
}

fn inet_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        Some(SocketAddr::from(*v4))
    } else {
        addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
    }
}

/// What a loop serves, with no I/O in it: events in ([`Service::join`], [`Service::received`],
/// [`Service::eof`], [`Service::failed`], [`Service::wrote`]), bytes to send
/// ([`Service::pending`]) and clients to close ([`Service::take_closes`]) out. The chat
/// [`Room`] is one; [`echo::Echo`] is another.
pub trait Service {
    /// A client connected from `peer`.
    fn join(&mut self, id: ClientId, peer: SocketAddr);
    /// Bytes arrived from a client.
    fn received(&mut self, id: ClientId, bytes: &[u8]);
    /// The client closed its side (recv returned 0).
    fn eof(&mut self, id: ClientId);
    /// The client's socket failed, or the loop saw trouble on it.
    fn failed(&mut self, id: ClientId);
    /// The loop wrote the first `n` bytes of [`Service::pending`].
    fn wrote(&mut self, id: ClientId, n: usize);
    /// The bytes waiting to be written to the client, oldest first.
    fn pending(&self, id: ClientId) -> &[u8];
    /// Whether the loop should watch the client for input (the room: always).
    fn wants_read(&self, _id: ClientId) -> bool {
        true
    }
    /// Whether input from one client can queue output for others, as the room's broadcast
    /// does. When false, a loop need only look at the clients it handled for new output.
    fn queues_for_others(&self) -> bool {
        true
    }
    /// The clients to close now, each once, with the reason.
    fn take_closes(&mut self) -> Vec<(ClientId, CloseReason)>;
}

impl Service for Room {
    fn join(&mut self, id: ClientId, peer: SocketAddr) {
        Room::join(self, id, peer);
    }
    fn received(&mut self, id: ClientId, bytes: &[u8]) {
        Room::received(self, id, bytes);
    }
    fn eof(&mut self, id: ClientId) {
        Room::eof(self, id);
    }
    fn failed(&mut self, id: ClientId) {
        Room::failed(self, id);
    }
    fn wrote(&mut self, id: ClientId, n: usize) {
        Room::wrote(self, id, n);
    }
    fn pending(&self, id: ClientId) -> &[u8] {
        Room::pending(self, id)
    }
    fn take_closes(&mut self) -> Vec<(ClientId, CloseReason)> {
        Room::take_closes(self)
    }
}

/// The room (or another [`Service`]) and the sockets of the people in it. Every method leaves
/// the two in step: when the room lets a client go, its socket is closed before the method
/// returns, or, after [`Chat::keep_departed`], handed to the loop to close.
pub struct Chat<S: Service = Room> {
    room: S,
    sockets: BTreeMap<ClientId, OwnedFd>,
    served: u64,
    /// A descriptor held in reserve (a dup of the listener). When accept4 fails with EMFILE
    /// the connection stays queued and the listener stays readable, so a loop would wake for
    /// it forever; closing the spare frees one slot to accept it and turn it away politely.
    spare: Option<OwnedFd>,
    /// Sockets the room let go, still open, when the loop closes them itself (epoll).
    departed: Option<Vec<(ClientId, OwnedFd)>>,
}

/// A client's id: its descriptor number.
fn id_of(socket: &OwnedFd) -> ClientId {
    socket.as_raw_fd() as ClientId
}

impl<S: Service> Chat<S> {
    pub fn new(room: S) -> Chat<S> {
        Chat {
            room,
            sockets: BTreeMap::new(),
            served: 0,
            spare: None,
            departed: None,
        }
    }

    /// From now on a departing client's socket is not closed here but kept, open, until the
    /// loop takes it with [`Chat::take_departed`]: epoll removes it from its interest list
    /// first. Kept open, its number cannot be handed out again by accept4 in the meantime.
    pub fn keep_departed(&mut self) {
        self.departed.get_or_insert_with(Vec::new);
    }

    /// The sockets of the clients that left since the last call, for the loop to close.
    pub fn take_departed(&mut self) -> Vec<(ClientId, OwnedFd)> {
        self.departed.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Every connected client and its socket, in id order.
    pub fn sockets(&self) -> impl Iterator<Item = (ClientId, BorrowedFd<'_>)> {
        self.sockets.iter().map(|(&id, socket)| (id, socket.as_fd()))
    }

    /// Whether one client's input can queue output for others ([`Service::queues_for_others`]).
    pub fn queues_for_others(&self) -> bool {
        self.room.queues_for_others()
    }

    /// One client's socket, if it is still connected.
    pub fn socket(&self, id: ClientId) -> Option<BorrowedFd<'_>> {
        self.sockets.get(&id).map(|socket| socket.as_fd())
    }

    /// True only while output waits for the client: the only time to ask for writability.
    pub fn wants_write(&self, id: ClientId) -> bool {
        !self.room.pending(id).is_empty()
    }

    /// False once the service reads nothing more from the client (echo, after end-of-file,
    /// while it sends the rest): a loop stops asking for readability then.
    pub fn wants_read(&self, id: ClientId) -> bool {
        self.room.wants_read(id)
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// How many clients have been let in so far.
    pub fn served(&self) -> u64 {
        self.served
    }

    /// The listener is readable: accept4 until `EAGAIN`. Each new socket is non-blocking from
    /// birth (`SOCK_NONBLOCK`; Linux does not copy O_NONBLOCK from the listener) and must pass
    /// `admit`, else it is told why and closed (select cannot watch descriptor 1024 or above).
    pub fn accept(&mut self, listener: impl AsFd, admit: impl Fn(BorrowedFd<'_>) -> Result<(), String>) -> Progress {
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        if self.spare.is_none() {
            trace::explain("a spare descriptor, kept so that running out of descriptors (EMFILE) can be handled");
            self.spare = sys::dup(&listener).ok();
        }
        for _ in 0..CALLS_PER_WAKE {
            let (socket, peer) = match sys::accept4(&listener, flags) {
                Ok(accepted) => accepted,
                Err(Errno::EAGAIN) => return Progress::Drained,
                // The client gave up between its handshake and our accept, or a signal came.
                Err(Errno::ECONNABORTED | Errno::EINTR) => continue,
                Err(Errno::EMFILE | Errno::ENFILE) if self.spare.is_some() => {
                    self.turn_away_with_spare(&listener);
                    continue;
                }
                Err(error) => {
                    trace::say(format!("accept4 failed ({error}); the connection waits in the backlog"));
                    return Progress::Drained;
                }
            };
            let peer = inet_addr(&peer).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            if let Err(reason) = admit(socket.as_fd()) {
                refuse(socket, peer, &reason);
                continue;
            }
            let id = id_of(&socket);
            trace::say(format!("{peer} is client {id} (its descriptor number)"));
            self.sockets.insert(id, socket);
            self.served += 1;
            self.room.join(id, peer);
            self.close_departed();
        }
        Progress::More
    }

    /// Out of descriptors: give the spare back, accept the waiting client into its slot, tell
    /// it why it cannot stay, close it, and take a spare again. Everyone inside is unaffected.
    fn turn_away_with_spare(&mut self, listener: impl AsFd) {
        if let Some(spare) = self.spare.take() {
            let _ = sys::close(spare);
        }
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        if let Ok((socket, peer)) = sys::accept4(&listener, flags) {
            let peer = inet_addr(&peer).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            refuse(socket, peer, "the server has no descriptors left; try again later");
        }
        self.spare = sys::dup(&listener).ok();
    }

    /// The client's socket is readable: recv until `EAGAIN`, handing every byte to the room.
    /// 0 bytes is end-of-file; an error (`ECONNRESET`: the peer reset) is a failed client.
    pub fn read(&mut self, id: ClientId) -> Progress {
        let mut buf = [0u8; READ_SIZE];
        for _ in 0..CALLS_PER_WAKE {
            let Some(socket) = self.sockets.get(&id) else {
                return Progress::Drained; // it left while we read
            };
            match sys::recv(socket, &mut buf, MsgFlags::empty()) {
                Ok(0) => {
                    // End-of-file is final: nothing more will come, so this is as drained as
                    // EAGAIN (and an edge-triggered loop must not come back for more).
                    self.room.eof(id);
                    self.close_departed();
                    return Progress::Drained;
                }
                Ok(n) => self.room.received(id, &buf[..n]),
                Err(Errno::EAGAIN) => return Progress::Drained,
                Err(Errno::EINTR) => continue,
                Err(_) => self.room.failed(id),
            }
            self.close_departed();
        }
        Progress::More
    }

    /// The client's socket is writable: send what the room holds for it until the queue is
    /// empty or the kernel's send buffer is full (`EAGAIN`: wait until writable again).
    /// `MSG_NOSIGNAL`: a peer that has gone gives `EPIPE`, not a SIGPIPE that kills the server.
    pub fn flush(&mut self, id: ClientId) -> Progress {
        for _ in 0..CALLS_PER_WAKE {
            let Some(socket) = self.sockets.get(&id) else {
                return Progress::Drained;
            };
            let pending = self.room.pending(id);
            if pending.is_empty() {
                return Progress::Drained;
            }
            match sys::send(socket, pending, MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => self.room.wrote(id, n),
                Err(Errno::EAGAIN) => return Progress::Drained,
                Err(Errno::EINTR) => continue,
                Err(_) => self.room.failed(id),
            }
            self.close_departed();
        }
        Progress::More
    }

    /// The loop saw trouble on the client's socket that no recv or send reported: it goes.
    pub fn fail(&mut self, id: ClientId, why: &str) {
        if self.sockets.contains_key(&id) {
            trace::say(format!("client {id}: {why}"));
            self.room.failed(id);
            self.close_departed();
        }
    }

    /// Closes every client's socket: the loop is stopping. Queued output is lost.
    pub fn close_all(&mut self) {
        for (_, socket) in std::mem::take(&mut self.sockets)
            .into_iter()
            .chain(self.take_departed())
        {
            let _ = sys::close(socket);
        }
        if let Some(spare) = self.spare.take() {
            let _ = sys::close(spare);
        }
    }

    /// Closes the sockets of the clients the room has let go.
    fn close_departed(&mut self) {
        for (id, why) in self.room.take_closes() {
            if let Some(socket) = self.sockets.remove(&id) {
                trace::say(format!("client {id} goes: {why}"));
                match &mut self.departed {
                    Some(departed) => departed.push((id, socket)),
                    None => {
                        let _ = sys::close(socket);
                    }
                }
            }
        }
    }
}

/// Tells a client it cannot be served, in one best-effort line, and closes it.
fn refuse(socket: OwnedFd, peer: SocketAddr, reason: &str) {
    trace::say(format!("refusing {peer}: {reason}"));
    let line = format!("! sorry, the server cannot take you: {reason}\n");
    let _ = sys::send(&socket, line.as_bytes(), MsgFlags::MSG_NOSIGNAL);
    let _ = sys::close(socket);
}
