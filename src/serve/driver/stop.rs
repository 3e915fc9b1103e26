//! Stopping on SIGINT or SIGTERM: the self-pipe that brings the signal into the loop, and the
//! goodbye (last words, a bounded flush, every client closed).
//!
//! Why a self-pipe rather than a signalfd. A signalfd sees a signal only while every thread of
//! the process blocks it; otherwise the kernel delivers it to a thread that does not, by its
//! old disposition (SIGINT's default ends the process). The driver does not own the process's
//! threads: the trace's printer is one, started before the loop, and a program using the
//! driver may have more. And a blocked mask outlives `exec`: every program the server started
//! would begin with SIGINT and SIGTERM blocked, deaf to Ctrl-C. A handler, by contrast, is
//! process-wide: whichever thread the kernel picks runs it, and it writes one byte, the
//! signal's number, into a non-blocking pipe whose read end the backend watches like any
//! client: the four backends need nothing new, and a signal that comes between two waits
//! still finds its byte waiting (no race to close with pselect's mask).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use nix::fcntl::OFlag;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::socket::MsgFlags;

use super::{Backend, Driver, Interest, Service, Slot, narrate};
use crate::serve::STOP_FLUSH;
use crate::sys::{self, Errno};
use crate::trace;

/// The signals that stop a loop: Ctrl-C's and kill's.
const STOP_SIGNALS: [Signal; 2] = [Signal::SIGINT, Signal::SIGTERM];

/// The self-pipe's write end, for the handler; -1 while no loop listens for signals.
static WAKE: AtomicI32 = AtomicI32::new(-1);

/// The handler: one byte, the signal's number, into the self-pipe. Only async-signal-safe
/// steps: an atomic load and write(2); errno is put back as found, since the handler runs
/// between any two instructions of the code it interrupts. A full pipe (signals faster than
/// the loop reads) loses the byte, not the wake-up: the pipe is readable already.
extern "C" fn wake(signal: libc::c_int) {
    let fd = WAKE.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: __errno_location gives this thread's errno; write reads one byte from a
        // local and writes to the pipe this module owns until `restore` takes it away.
        unsafe {
            let saved = *libc::__errno_location();
            let byte = signal as u8;
            libc::write(fd, (&raw const byte).cast(), 1);
            *libc::__errno_location() = saved;
        }
    }
}

/// The self-pipe's read end, and the actions SIGINT and SIGTERM had before.
pub(super) struct Signals {
    read_end: OwnedFd,
    previous: Vec<(Signal, SigAction)>,
}

impl Signals {
    /// pipe2, then the handler for SIGINT and SIGTERM, with SA_RESTART: a signal should end
    /// the loop's wait (which is never restarted, SA_RESTART or not), not fail a write of the
    /// trace's printer in another thread.
    ///
    /// # Errors
    /// pipe2's or sigaction's failure, or another loop of this process listening already.
    pub(super) fn install() -> Result<Signals, String> {
        trace::explain(
            "the self-pipe: SIGINT's and SIGTERM's handler writes to the second, the loop watches the first",
        );
        let (read_end, write_end) =
            sys::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?;
        let write_fd = write_end.into_raw_fd();
        if WAKE
            .compare_exchange(-1, write_fd, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // SAFETY: write_fd came from into_raw_fd just above and was never shared.
            drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(write_fd) });
            return Err("another loop of this process already stops on signals".into());
        }
        let action = SigAction::new(SigHandler::Handler(wake), SaFlags::SA_RESTART, SigSet::empty());
        let mut signals = Signals {
            read_end,
            previous: Vec::new(),
        };
        for signal in STOP_SIGNALS {
            trace::explain(if signal == Signal::SIGINT {
                "Ctrl-C and kill now write a byte into the self-pipe instead of ending the process"
            } else {
                "and SIGTERM, kill's own"
            });
            // SAFETY: `wake` is async-signal-safe (see above).
            match unsafe { sys::sigaction_with(signal, &action) } {
                Ok(old) => signals.previous.push((signal, old)),
                Err(error) => {
                    signals.restore();
                    return Err(format!("sigaction {}: {error}", signal.as_str()));
                }
            }
        }
        Ok(signals)
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.read_end.as_fd()
    }

    /// The backend's token for the pipe: its descriptor number, as for a client.
    pub(super) fn token(&self) -> usize {
        self.read_end.as_raw_fd() as usize
    }

    /// Reads what the handler wrote: the name of the last signal that came, if one did.
    pub(super) fn take(&self) -> Option<&'static str> {
        let mut bytes = [0u8; 16];
        let mut last = None;
        for round in 0..16 {
            trace::explain(if round == 0 {
                "the handler's byte: the number of the signal that came"
            } else {
                "until EAGAIN: empty, the pipe is readable again only when another signal comes"
            });
            match sys::read(&self.read_end, &mut bytes) {
                Ok(n) if n > 0 => last = bytes[n - 1].into(),
                Err(Errno::EINTR) => continue,
                _ => break,
            }
        }
        last.and_then(|byte: u8| Signal::try_from(i32::from(byte)).ok())
            .map(Signal::as_str)
    }

    /// Puts the old actions back, then closes the pipe. A handler already running on another
    /// thread as its action is replaced finds the write end gone (-1) and writes nothing.
    pub(super) fn restore(self) {
        for (signal, old) in &self.previous {
            // SAFETY: the actions put back are the ones the process had before.
            let _ = unsafe { sys::sigaction_with(*signal, old) };
        }
        let write_fd = WAKE.swap(-1, Ordering::SeqCst);
        if write_fd >= 0 {
            // SAFETY: the write end was ours (install), and no handler can reach it now.
            let write_end = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(write_fd) };
            let _ = sys::close(write_end);
        }
        let _ = sys::close(self.read_end);
    }
}

impl<B: Backend, S: Service> Driver<'_, B, S> {
    /// A signal came (`why`): no more accepting; the service says its last words; what waits
    /// for each client is sent for at most [`STOP_FLUSH`], while what they send is read and
    /// dropped (a close with unread input would send a reset, not FIN); each client is closed
    /// once its output is out. Returns how many still had output waiting when time ran out,
    /// or a second signal came; those the caller closes with everyone else.
    pub(super) fn stop(&mut self, why: &'static str) -> u64 {
        narrate(|| {
            format!(
                "{why}: the server stops: no more accepts; {} ms at most to send what waits; then everyone is closed",
                STOP_FLUSH.as_millis()
            )
        });
        let token = self.listener.as_raw_fd() as usize;
        let _ = self.backend.deregister(self.listener, token);
        self.service.stopping(why);
        self.close_departed();
        let deadline = Instant::now() + STOP_FLUSH;
        loop {
            let mut waiting = false;
            for id in 0..self.clients.len() {
                if self.clients[id].socket.is_some() {
                    waiting |= self.flush(id);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !waiting || left.is_zero() {
                break;
            }
            self.events.clear();
            if !matches!(self.backend.wait(&mut self.events, left), Ok(()) | Err(Errno::EINTR)) {
                break;
            }
            let signals = self.signals.as_ref();
            if self
                .events
                .iter()
                .any(|e| signals.is_some_and(|s| s.token() == e.token))
                && signals.and_then(Signals::take).is_some()
            {
                narrate(|| "a second signal: no more waiting".to_string());
                break;
            }
            for index in 0..self.events.len() {
                let id = self.events[index].token;
                if let Some(slot) = self.clients.get_mut(id) {
                    slot.blocked = false;
                }
            }
        }
        let cut_off = self.open as u64;
        if cut_off > 0 {
            narrate(|| format!("{cut_off} client(s) still had output waiting: closed all the same"));
        }
        cut_off
    }

    /// One client, stopping: drop what it sent, send what waits; close it once nothing waits.
    /// Returns whether it still waits for room to send.
    fn flush(&mut self, id: usize) -> bool {
        self.drop_input(id);
        if self.clients[id].socket.is_some() && !self.clients[id].blocked {
            self.send(id);
        }
        if self.clients[id].socket.is_none() {
            return false; // the send failed: the client went
        }
        if self.service.output(id).is_empty() {
            self.close_quietly(id, "nothing left to send: close sends FIN after what was sent");
            return false;
        }
        // Level-triggered: wake for room to send, and for input to drop.
        let slot = &mut self.clients[id];
        let wanted = Interest {
            read: !slot.peer_done,
            write: true,
            urgent: false,
        };
        if let Some(socket) = slot.socket.as_ref().filter(|_| wanted != slot.watched) {
            if !self.backend.edge_triggered() {
                let _ = self.backend.reregister(socket.as_fd(), id, wanted);
            }
            slot.watched = wanted;
        }
        true
    }

    /// Closes a client without telling the service, which has said its last words.
    fn close_quietly(&mut self, id: usize, why: &str) {
        if let Some(socket) = self.clients[id].socket.take() {
            self.clients[id] = Slot::default();
            self.open -= 1;
            let _ = self.backend.deregister(socket.as_fd(), id);
            trace::explain(why);
            let _ = sys::close(socket);
        }
    }

    /// Reads and drops what the client sent (until EAGAIN, at most 256 KiB a round).
    fn drop_input(&mut self, id: usize) {
        let mut scratch = [0u8; 4096];
        for _ in 0..64 {
            let slot = &mut self.clients[id];
            let Some(socket) = slot.socket.as_ref().filter(|_| !slot.peer_done) else {
                return;
            };
            match sys::recv(socket, &mut scratch, MsgFlags::empty()) {
                Ok(0) => slot.peer_done = true,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    self.close_quietly(id, "its connection failed while the server stopped");
                    return;
                }
            }
        }
    }
}
