//! Event loops that drive a [`Service`] (the chat room, the echo service): one driver over four
//! small backends, in mio's shape.
//!
//! - `select`, `poll`, `epoll`, `epoll_et`: the backends, one short file each. A backend only
//!   watches descriptors and waits: [`Backend::register`], [`Backend::reregister`],
//!   [`Backend::deregister`], and [`Backend::wait`], which returns (token, readiness) pairs;
//! - `driver` (private): everything the four share (below);
//! - `echo`: the echo service; `client`: the chat client, which watches stdin and its socket
//!   with one select.
//!
//! Each backend's `serve(listener, service, &options)` runs a service on a listener made by
//! [`listen`]. A client's token is its descriptor number: unique while it is connected, and
//! the number a learner sees in the trace.
//!
//! # What the driver does, the same for every backend
//!
//! One wake: wait (at most [`Options::tick`], less if the service has a deadline); read the
//! clock once, only if the service keeps time, and let its timers fire; then, for each ready
//! client in the order the backend reported them:
//!
//! - urgent data (select's exceptional set, POLLPRI, EPOLLPRI): the client is dropped, since no
//!   service here uses it;
//! - hang-up or error: read first, so bytes that came before it are delivered and recv says
//!   what happened (0, ECONNRESET), then close;
//! - readable: **one recv** per client per round, into the buffer the service lends (none lent:
//!   the service pushes back, the bytes wait in the kernel). Level-triggered, the kernel reports
//!   the socket again if more is left. Edge-triggered, a recv that filled the buffer may have
//!   left more, so the client is owed a read (carry-over); a shorter recv is proof enough that
//!   the input is exhausted (epoll(7)), and so is EAGAIN;
//! - writable: only a client whose last send met EAGAIN is waiting for it: send again.
//!
//! Then accepts, last, so a number closed in this wake and handed out again by accept4 is never
//! taken for the old client; at most [`ACCEPTS_PER_WAKE`] (edge-triggered, a listener that
//! still has arrivals is carried over like a client). Then the service does the work the wake
//! made possible and names the clients that changed: their output is sent **at once**
//! (optimistic send; writability is asked for only after a send met EAGAIN or was short), and
//! their read interest is told to a level-triggered backend when it changed. That is the same
//! number of system calls per echoed message as a plain C loop of the same kind.
//!
//! Edge-triggered, the clients owed a read are then read again at once, a round at a time (each
//! of them once per round, so they share the wake fairly), up to [`ROUNDS_PER_WAKE`] rounds;
//! any still owed make the next wait's timeout 0, so a client that became ready meanwhile waits
//! that many rounds at most. A client sending in bulk costs one wait per few buffers, not one
//! per buffer.
//!
//! Work per wake is proportional to what is ready: no walk over every client (only select's
//! and poll's own walk inside the kernel, and over the ready bits or entries they return), no
//! allocation per event, and a trace that is off reads no clock and takes no lock.
//!
//! Stopping (when [`Options::stop_on_signals`] says so, as `socklab chat-server` and
//! `echo-server` do): SIGINT (Ctrl-C) or SIGTERM (kill) ends the wake it arrives in, then the
//! loop accepts no more, the service says its last words ([`Service::stopping`]: the chat room
//! tells everyone why), and the loop sends what waits for at most [`STOP_FLUSH`], reading and
//! dropping what clients still send (so each close sends FIN, not a reset), closing each
//! client as soon as its output is out. Those still waiting then are closed all the same: a
//! client that does not read holds the stop up for no longer than that. A second signal ends
//! the wait at once. The signal reaches the loop through a self-pipe registered with the
//! backend like any client (`driver/stop.rs` says why not a signalfd).
//!
//! Accept errors, each on purpose: `ECONNABORTED` (the client gave up first) and the network
//! errors accept(2) says to treat like `EAGAIN`: next. `EMFILE`/`ENFILE`: the spare descriptor
//! is given back to accept the newcomer and turn it away politely, then taken again. `ENOBUFS`,
//! `ENOMEM` (or EMFILE with no spare): stop accepting for [`ACCEPT_RETRY`]; the connections
//! wait in the backlog. `EINTR`: again.

mod driver;

pub mod client;
pub mod echo;
pub mod epoll;
pub mod epoll_et;
pub mod poll;
pub mod select;

use std::net::SocketAddr;
use std::ops::BitOr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, SockaddrStorage, sockopt};

use crate::context::Context;
pub use crate::service::Service;
use crate::sys;

/// The seed's port: `Server(host, port=33333)`.
pub const DEFAULT_PORT: u16 = 33333;

/// The listen backlog: how many finished handshakes the kernel holds for us between accepts.
/// A room can see a burst of arrivals; the seed's `listen(10)` would hold only 10. When the
/// queue is full, Linux drops the client's final ACK (or SYN) rather than refusing it, and the
/// client retransmits, 1 s later, then 3 s...; nobody is refused unless
/// `net.ipv4.tcp_abort_on_overflow` is set ([listen(2)](https://man7.org/linux/man-pages/man2/listen.2.html),
/// [tcp(7)](https://man7.org/linux/man-pages/man7/tcp.7.html)).
pub const BACKLOG: i32 = 128;

/// At most this many accepts per wake: a whole backlog's worth, so one wake empties the queue
/// (and the notices a burst of arrivals causes go out in one send per client), yet a burst
/// cannot keep the loop from the clients already inside for more than that many accepts (Redis
/// takes up to 1000). A level-triggered listener is reported again; an edge-triggered one is
/// carried over.
pub const ACCEPTS_PER_WAKE: usize = BACKLOG as usize;

/// Edge-triggered: rounds of reads a wake makes for the clients owed one (their last recv filled
/// the buffer, and no edge will come for what is left) before the next wait looks at everyone
/// else. Each round is a recv and a send per such client: four rounds of 64 KiB echoes take a
/// fraction of a millisecond, and a bulk sender pays a wait per four buffers instead of each.
pub const ROUNDS_PER_WAKE: usize = 4;

/// How long accepting stops after the kernel ran out of memory or descriptors for a new socket:
/// at once would spin on the same failure; a tenth of a second is soon for a client whose
/// handshake is done and waits in the backlog.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How long a stopping loop keeps sending what waits for its clients. A reader on loopback or
/// a LAN takes a line in microseconds, one across the world in a fraction of a second; one that
/// has not taken it in a second is not reading, and Ctrl-C should not wait on it longer.
pub const STOP_FLUSH: Duration = Duration::from_secs(1);

/// When a loop stops. The command line runs until Ctrl-C; tests and demos set a bound.
#[derive(Clone, Debug)]
pub struct Options {
    /// The longest one wait may block (the seed's `g_select_timeout = 10`).
    pub tick: Duration,
    /// Stop after this many waits.
    pub max_iterations: Option<u64>,
    /// Stop once every client has left again, after at least one came.
    pub until_empty: bool,
    /// Stop cleanly on SIGINT or SIGTERM (see the module's documentation): the loop installs
    /// handlers for both while it runs, and puts the old ones back when it returns. One loop
    /// at a time in a process may ask for this.
    pub stop_on_signals: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            tick: Duration::from_secs(10),
            max_iterations: None,
            until_empty: false,
            stop_on_signals: false,
        }
    }
}

/// What a loop did, for a demo to report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// How many times it waited.
    pub iterations: u64,
    /// How many clients it let in.
    pub served: u64,
    /// The signal that stopped it (`SIGINT`, `SIGTERM`), if one did.
    pub stopped_by: Option<&'static str>,
    /// Stopping, how many clients were closed with output still unsent after [`STOP_FLUSH`].
    pub cut_off: u64,
}

/// What a descriptor is watched for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
    /// Urgent (out-of-band) data: select's exceptional set, POLLPRI, EPOLLPRI.
    pub urgent: bool,
}

impl Interest {
    pub const NONE: Interest = Interest {
        read: false,
        write: false,
        urgent: false,
    };
    pub const READ: Interest = Interest {
        read: true,
        write: false,
        urgent: false,
    };
    pub const READ_URGENT: Interest = Interest {
        read: true,
        write: false,
        urgent: true,
    };
    pub const ALL: Interest = Interest {
        read: true,
        write: true,
        urgent: true,
    };
}

/// What a wait found ready on a descriptor: a set of the bits below.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness(u8);

impl Readiness {
    pub const READABLE: Readiness = Readiness(1);
    pub const WRITABLE: Readiness = Readiness(2);
    pub const ERROR: Readiness = Readiness(4);
    pub const HANG_UP: Readiness = Readiness(8);
    /// The peer shut down its sending side (POLLRDHUP, EPOLLRDHUP): a read returns the rest, then 0.
    pub const READ_HANG_UP: Readiness = Readiness(16);
    pub const URGENT: Readiness = Readiness(32);

    pub fn contains(self, other: Readiness) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn intersects(self, other: Readiness) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// `bit` if `on`, else nothing: for building a readiness from a kernel's flags.
    pub fn when(on: bool, bit: Readiness) -> Readiness {
        if on { bit } else { Readiness(0) }
    }
}

impl BitOr for Readiness {
    type Output = Readiness;
    fn bitor(self, other: Readiness) -> Readiness {
        Readiness(self.0 | other.0)
    }
}

/// One ready descriptor, named by the token it was registered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub token: usize,
    pub readiness: Readiness,
}

/// A way to wait for many descriptors: it watches and waits, and the driver does the rest.
pub trait Backend {
    /// The system call a wait makes, for error messages.
    const NAME: &'static str;

    /// Starts watching `fd` for `interest`; its events carry `token`.
    ///
    /// # Errors
    /// Why the descriptor cannot be watched, in words to tell its client (select: past
    /// FD_SETSIZE; epoll: `ENOMEM`, `ENOSPC`).
    fn register(&mut self, fd: BorrowedFd<'_>, token: usize, interest: Interest) -> Result<(), String>;

    /// Watches `fd` for `interest` from now on.
    ///
    /// # Errors
    /// The kernel's refusal (epoll_ctl).
    fn reregister(&mut self, fd: BorrowedFd<'_>, token: usize, interest: Interest) -> nix::Result<()>;

    /// Stops watching `fd`; called before it is closed.
    ///
    /// # Errors
    /// The kernel's refusal (epoll_ctl).
    fn deregister(&mut self, fd: BorrowedFd<'_>, token: usize) -> nix::Result<()>;

    /// Waits at most `timeout` and appends what is ready to `events`.
    ///
    /// # Errors
    /// `EINTR` (a signal: wait again), or the wait's own failure.
    fn wait(&mut self, events: &mut Vec<Event>, timeout: Duration) -> nix::Result<()>;

    /// Whether readiness is reported once per change (epoll's EPOLLET) rather than on every
    /// wait while it holds: then the driver must remember what it has not finished.
    fn edge_triggered(&self) -> bool {
        false
    }

    /// Closes what the backend itself holds (epoll's instance).
    fn close(self);
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

/// A client's address as accept4 gave it (0.0.0.0:0 if it was neither IPv4 nor IPv6).
fn peer_addr(addr: &SockaddrStorage) -> SocketAddr {
    inet_addr(addr).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Milliseconds for poll and epoll_wait, rounded up: a deadline 0.3 ms away must not become
/// a timeout of 0, which would spin until it passes.
fn millis(timeout: Duration) -> i32 {
    // In u64, not as_micros's u128, whose division is a library call on every wait.
    let millis = timeout.as_secs().saturating_mul(1000) + u64::from(timeout.subsec_micros().div_ceil(1000));
    i32::try_from(millis).unwrap_or(i32::MAX)
}
