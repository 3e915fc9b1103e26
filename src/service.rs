//! What an event loop serves, with no I/O in it: the sans-I/O interface the loops drive.
//!
//! A loop in [`crate::serve`] owns the sockets and makes every system call; a [`Service`] (the
//! chat [`Room`](crate::chat::Room), the [`Echo`](crate::serve::echo::Echo)) owns the bytes
//! and decides what they mean. The loop tells the service what happened and asks it what to
//! do, in these words:
//!
//! - in: [`Service::join`] (a client connected), [`Service::received`] (bytes arrived, already
//!   in the buffer the service lent for them), [`Service::eof`], [`Service::failed`],
//!   [`Service::wrote`] (bytes left for the client), [`Service::tick`] (time passed),
//!   [`Service::stopping`] (the server is stopping: last words now);
//! - out: [`Service::read_buffer`] (where the next bytes go; an empty buffer means "do not
//!   read this client now", which is how a service pushes back on a sender), [`Service::output`]
//!   (what waits for a client, one contiguous slice), [`Service::wants_read`],
//!   [`Service::changed`] (which clients have new output or a new read interest since the loop
//!   last asked), [`Service::closes`] (whom to close, and why), [`Service::deadline`] (when
//!   to call `tick` next).
//!
//! So a loop never walks every client to find work, and no byte is copied between the kernel
//! and the service's own buffers: recv writes into the service's buffer, send reads from it.

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

/// How a loop names a client: its descriptor number, unique while the client is connected and
/// the number a learner sees in the trace. The kernel reuses a number once it is closed, and so
/// may a service, once it has asked for the close.
pub type ClientId = usize;

/// Why a client must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// It asked to leave (`exit` in the chat room).
    Exit,
    /// It closed its side (recv returned 0).
    EndOfFile,
    /// Its connection failed: an error or a reset, or urgent data nobody asked for.
    Failed,
    /// Its output waited above the service's high-water mark with nothing written for the
    /// whole grace: it has stopped reading.
    StoppedReading,
    /// Its output would have passed the service's hard limit.
    TooFarBehind,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::Exit => "exit",
            CloseReason::EndOfFile => "end of file",
            CloseReason::Failed => "connection failed",
            CloseReason::StoppedReading => "stopped reading",
            CloseReason::TooFarBehind => "too far behind",
        })
    }
}

/// A service an event loop drives: see the module's documentation for the conversation.
///
/// Ids the service does not know (a client it has already asked to close) are ignored by every
/// method, and get an empty buffer or output.
pub trait Service {
    /// A client connected from `peer`.
    fn join(&mut self, id: ClientId, peer: SocketAddr);

    /// Where the next bytes from the client go. Empty: do not read from it now (its bytes wait
    /// in the kernel, whose receive window then slows the sender: backpressure).
    fn read_buffer(&mut self, id: ClientId) -> &mut [u8];

    /// `n` bytes arrived in the buffer [`Service::read_buffer`] just returned.
    fn received(&mut self, id: ClientId, n: usize);

    /// The client closed its side (recv returned 0).
    fn eof(&mut self, id: ClientId);

    /// The client's connection failed, or the loop saw trouble on it; it must go.
    fn failed(&mut self, id: ClientId);

    /// The bytes waiting to be written to the client, oldest first.
    fn output(&self, id: ClientId) -> &[u8];

    /// The loop wrote the first `n` bytes of [`Service::output`]. Right after, the loop asks
    /// [`Service::wants_read`] for this client again, so a change `wrote` makes to its read
    /// interest (room to read again) need not be named by [`Service::changed`]; new output, for
    /// it or for others (a room that can go on), must be.
    fn wrote(&mut self, id: ClientId, n: usize);

    /// Whether the loop should read from the client now: false while its buffer is full, or
    /// after end-of-file.
    fn wants_read(&self, id: ClientId) -> bool;

    /// Whether the loop should try a send now even though the client's last one met EAGAIN.
    /// The kernel reports a socket writable again only once a third of its send buffer is
    /// free, so a client that reads only a trickle shows its progress to a send, not to the
    /// wait: a service about to drop a client for not reading asks for one more try first.
    fn retry_send(&self, _id: ClientId) -> bool {
        false
    }

    /// Does the work the events so far made possible, then appends to `into` each client whose
    /// output or read interest may have changed since the last call, each once.
    fn changed(&mut self, into: &mut Vec<ClientId>);

    /// Appends the clients to close now, each once, with the reason; the service has already
    /// forgotten them.
    fn closes(&mut self, into: &mut Vec<(ClientId, CloseReason)>);

    /// Whether the service keeps time: only then does the loop read the clock, once per wake,
    /// and call [`Service::tick`].
    fn keeps_time(&self) -> bool {
        false
    }

    /// The time now, once per wake, before that wake's events: timers that are due fire.
    fn tick(&mut self, _now: Instant) {}

    /// When the service next needs [`Service::tick`], if ever.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// The server is stopping (`why`: what stopped it, such as `SIGTERM`): queue any last words
    /// for the clients now. The loop then reads nothing more from anyone, sends what waits for
    /// a bounded time, and closes every client; it asks nothing else of the service.
    fn stopping(&mut self, _why: &str) {}
}
