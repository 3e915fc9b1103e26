//! The echo service: each client's bytes go back to it, unchanged. A [`Service`] like the chat
//! room, so every loop in `src/serve` runs it (`socklab echo-server --mux select|poll|epoll|epoll-et`).
//!
//! Backpressure, not drops: each client has one buffer of up to [`BUFFER`] bytes. The loop reads into
//! it only while it is empty, and sends it back; while an echo waits (the client is not reading
//! it fast enough) the service lends no buffer, so the loop stops reading that client, its
//! bytes wait in the kernel, and TCP's window slows it down. A client is never dropped for
//! being slow. This is what a plain C echo loop does with one buffer per connection.
//!
//! At end-of-file (the client's `shutdown(SHUT_WR)`, as `nc -N` does) the service reads
//! nothing more from that client, sends what is still waiting, and only then closes:
//! `printf 'hi\n' | nc -N 127.0.0.1 33334` gets its line back even though the line and the
//! end-of-file arrive together.

use std::net::SocketAddr;

use crate::service::{ClientId, CloseReason, Service};

/// The echo server's port when none is given: the chat room's, plus one.
pub const DEFAULT_PORT: u16 = super::DEFAULT_PORT + 1;

/// Bytes one recv may take from a client, and the most that waits to go back to it: 64 KiB, as
/// the C echo loop the benchmark compares against uses.
pub const BUFFER: usize = 64 * 1024;

/// A client's buffer to begin with: one page. Each time a recv fills it, it doubles once the
/// echo is sent, up to [`BUFFER`]: a client sending in bulk has 64 KiB after four reads, and an
/// idle one holds 4 KiB. (C's `malloc` leaves a buffer's pages untouched until they are
/// written; Rust's zeroed allocation is glibc's `calloc`, which clears any memory it reuses,
/// so 64 KiB each for 10,000 idle clients would be 640 MB written.)
const FIRST_BUFFER: usize = 4096;

struct Client {
    buf: Box<[u8]>,
    /// What is still to be sent back: `buf[start..end]`.
    start: usize,
    end: usize,
    /// It sent end-of-file: read nothing more, close once the echo is sent.
    ended: bool,
    /// In [`Echo::changed`] already.
    marked: bool,
}

impl Client {
    fn waiting(&self) -> bool {
        self.start < self.end
    }
}

/// Every client's buffer.
#[derive(Default)]
pub struct Echo {
    /// By descriptor number.
    clients: Vec<Option<Client>>,
    changed: Vec<ClientId>,
    closes: Vec<(ClientId, CloseReason)>,
}

impl Echo {
    pub fn new() -> Echo {
        Echo::default()
    }

    fn client(&self, id: ClientId) -> Option<&Client> {
        self.clients.get(id).and_then(Option::as_ref)
    }

    fn mark(&mut self, id: ClientId) {
        if let Some(Some(client)) = self.clients.get_mut(id) {
            if !client.marked {
                client.marked = true;
                self.changed.push(id);
            }
        }
    }

    fn close(&mut self, id: ClientId, why: CloseReason) {
        if let Some(slot) = self.clients.get_mut(id) {
            if slot.take().is_some() {
                self.closes.push((id, why));
            }
        }
    }
}

impl Service for Echo {
    fn join(&mut self, id: ClientId, _peer: SocketAddr) {
        if self.clients.len() <= id {
            self.clients.resize_with(id + 1, || None);
        }
        self.clients[id] = Some(Client {
            buf: vec![0; FIRST_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            ended: false,
            marked: false,
        });
    }

    fn read_buffer(&mut self, id: ClientId) -> &mut [u8] {
        match self.clients.get_mut(id) {
            Some(Some(client)) if !client.waiting() && !client.ended => &mut client.buf[..],
            _ => &mut [],
        }
    }

    fn received(&mut self, id: ClientId, n: usize) {
        if let Some(Some(client)) = self.clients.get_mut(id) {
            client.start = 0;
            client.end = n.min(client.buf.len());
            self.mark(id);
        }
    }

    fn eof(&mut self, id: ClientId) {
        match self.clients.get_mut(id) {
            Some(Some(client)) if client.waiting() => {
                client.ended = true;
                self.mark(id);
            }
            _ => self.close(id, CloseReason::EndOfFile),
        }
    }

    fn failed(&mut self, id: ClientId) {
        self.close(id, CloseReason::Failed);
    }

    fn output(&self, id: ClientId) -> &[u8] {
        self.client(id).map_or(&[], |c| &c.buf[c.start..c.end])
    }

    fn wrote(&mut self, id: ClientId, n: usize) {
        let Some(Some(client)) = self.clients.get_mut(id) else {
            return;
        };
        client.start = (client.start + n).min(client.end);
        if !client.waiting() {
            if client.end == client.buf.len() && client.buf.len() < BUFFER {
                // The recv filled it, and more may wait: a bigger buffer takes it in fewer calls.
                client.buf = vec![0; 2 * client.buf.len()].into_boxed_slice();
            }
            client.start = 0;
            client.end = 0;
            if client.ended {
                self.close(id, CloseReason::EndOfFile);
            }
            // Otherwise the buffer is free and the client is read again: the loop asks
            // `wants_read` right after a send, so this needs no mark.
        }
    }

    fn wants_read(&self, id: ClientId) -> bool {
        self.client(id).is_some_and(|c| !c.waiting() && !c.ended)
    }

    fn changed(&mut self, into: &mut Vec<ClientId>) {
        for &id in &self.changed {
            if let Some(Some(client)) = self.clients.get_mut(id) {
                client.marked = false;
                into.push(id);
            }
        }
        self.changed.clear();
    }

    fn closes(&mut self, into: &mut Vec<(ClientId, CloseReason)>) {
        if !self.closes.is_empty() {
            into.append(&mut self.closes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    /// What a loop does when `bytes` arrive: read them into the lent buffer.
    fn arrive(echo: &mut Echo, id: ClientId, bytes: &[u8]) {
        let buf = echo.read_buffer(id);
        assert!(buf.len() >= bytes.len(), "the echo lent {} bytes", buf.len());
        buf[..bytes.len()].copy_from_slice(bytes);
        echo.received(id, bytes.len());
    }

    fn changed(echo: &mut Echo) -> Vec<ClientId> {
        let mut ids = Vec::new();
        echo.changed(&mut ids);
        ids
    }

    fn closes(echo: &mut Echo) -> Vec<(ClientId, CloseReason)> {
        let mut closes = Vec::new();
        echo.closes(&mut closes);
        closes
    }

    #[test]
    fn while_an_echo_waits_nothing_more_is_read_and_nobody_is_dropped() {
        let mut echo = Echo::new();
        echo.join(5, peer());
        assert_eq!(echo.read_buffer(5).len(), FIRST_BUFFER);
        arrive(&mut echo, 5, b"hello\n");
        assert_eq!(changed(&mut echo), [5]);
        assert_eq!(echo.output(5), b"hello\n");
        assert!(!echo.wants_read(5), "backpressure: its echo waits");
        assert!(echo.read_buffer(5).is_empty());
        echo.wrote(5, 2);
        assert_eq!(echo.output(5), b"llo\n", "a short send leaves the rest, in order");
        assert!(!echo.wants_read(5));
        echo.wrote(5, 4);
        assert!(echo.wants_read(5), "sent: read again");
        assert!(closes(&mut echo).is_empty());
    }

    #[test]
    fn a_buffer_that_fills_doubles_up_to_its_limit() {
        let mut echo = Echo::new();
        echo.join(5, peer());
        let mut sizes = Vec::new();
        for _ in 0..7 {
            let size = echo.read_buffer(5).len();
            sizes.push(size);
            arrive(&mut echo, 5, &vec![7; size]);
            assert_eq!(echo.output(5).len(), size, "the whole buffer waits to go back");
            echo.wrote(5, size);
        }
        assert_eq!(sizes, [4096, 8192, 16384, 32768, 65536, 65536, 65536]);
        arrive(&mut echo, 5, b"short");
        echo.wrote(5, 5);
        assert_eq!(echo.read_buffer(5).len(), BUFFER, "it never shrinks");
    }

    #[test]
    fn end_of_file_waits_for_the_echo_then_closes() {
        let mut echo = Echo::new();
        echo.join(5, peer());
        arrive(&mut echo, 5, b"hello\n");
        echo.eof(5);
        assert!(!echo.wants_read(5));
        assert!(closes(&mut echo).is_empty());
        echo.wrote(5, 6);
        assert_eq!(closes(&mut echo), [(5, CloseReason::EndOfFile)]);
        assert!(echo.output(5).is_empty());
    }

    #[test]
    fn end_of_file_with_nothing_waiting_closes_at_once() {
        let mut echo = Echo::new();
        echo.join(9, peer());
        echo.eof(9);
        assert_eq!(closes(&mut echo), [(9, CloseReason::EndOfFile)]);
        echo.eof(9);
        assert!(closes(&mut echo).is_empty(), "a client is closed once");
    }
}
