//! The echo service: each client's bytes go back to it, unchanged. A [`Service`] like the chat
//! room, so every loop in `src/serve` runs it (`socklab echo-server --mux select|poll|epoll|epoll-et`).
//!
//! The bytes a client has sent but not yet read back wait in its queue, which is bounded
//! ([`MAX_QUEUE`]). At end-of-file (the client's `shutdown(SHUT_WR)`, as `nc -N` does) the
//! service stops reading from that client, sends what is still queued, and only then closes:
//! `printf 'hi\n' | nc -N 127.0.0.1 33334` gets its line back even though the line and the
//! end-of-file arrive together.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::Service;
use crate::chat::{ClientId, CloseReason};

/// The echo server's port when none is given: the chat room's, plus one.
pub const DEFAULT_PORT: u16 = super::DEFAULT_PORT + 1;

/// Most bytes that may wait for one client. A client that sends without reading its echo
/// fills the kernel's buffers first (a few MB on loopback), then this queue; past it, it is
/// dropped as "too slow" rather than allowed to grow the server's memory without limit.
pub const MAX_QUEUE: usize = 256 * 1024;

#[derive(Default)]
struct Client {
    output: Vec<u8>,
    /// It sent end-of-file: read nothing more, close once `output` is sent.
    ended: bool,
}

/// Every client's queue of bytes to send back.
#[derive(Default)]
pub struct Echo {
    clients: BTreeMap<ClientId, Client>,
    closes: Vec<(ClientId, CloseReason)>,
}

impl Echo {
    pub fn new() -> Echo {
        Echo::default()
    }

    fn close(&mut self, id: ClientId, why: CloseReason) {
        if self.clients.remove(&id).is_some() {
            self.closes.push((id, why));
        }
    }
}

impl Service for Echo {
    fn join(&mut self, id: ClientId, _peer: SocketAddr) {
        self.clients.insert(id, Client::default());
    }

    fn received(&mut self, id: ClientId, bytes: &[u8]) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if client.output.len() + bytes.len() > MAX_QUEUE {
            self.close(id, CloseReason::TooSlow);
        } else {
            client.output.extend_from_slice(bytes);
        }
    }

    fn eof(&mut self, id: ClientId) {
        match self.clients.get_mut(&id) {
            Some(client) if !client.output.is_empty() => client.ended = true,
            _ => self.close(id, CloseReason::EndOfFile),
        }
    }

    fn failed(&mut self, id: ClientId) {
        self.close(id, CloseReason::Failed);
    }

    fn wrote(&mut self, id: ClientId, n: usize) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        client.output.drain(..n.min(client.output.len()));
        if client.ended && client.output.is_empty() {
            self.close(id, CloseReason::EndOfFile);
        }
    }

    fn pending(&self, id: ClientId) -> &[u8] {
        self.clients.get(&id).map_or(&[], |c| &c.output)
    }

    /// Not after end-of-file: the socket stays readable (recv would return 0 again and again),
    /// and a level-triggered loop that asked would wake for it without end.
    fn wants_read(&self, id: ClientId) -> bool {
        self.clients.get(&id).is_some_and(|c| !c.ended)
    }

    /// Never: a client's queue holds only its own bytes.
    fn queues_for_others(&self) -> bool {
        false
    }

    fn take_closes(&mut self) -> Vec<(ClientId, CloseReason)> {
        std::mem::take(&mut self.closes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    #[test]
    fn bytes_come_back_in_order_and_end_of_file_waits_for_them() {
        let mut echo = Echo::new();
        echo.join(5, peer());
        echo.received(5, b"hel");
        echo.received(5, b"lo\n");
        echo.eof(5);
        assert!(!echo.wants_read(5));
        assert_eq!(echo.pending(5), b"hello\n");
        assert!(echo.take_closes().is_empty());
        echo.wrote(5, 2);
        assert_eq!(echo.pending(5), b"llo\n");
        echo.wrote(5, 4);
        assert_eq!(echo.take_closes(), vec![(5, CloseReason::EndOfFile)]);
    }

    #[test]
    fn a_client_that_never_reads_back_is_dropped_past_the_bound() {
        let mut echo = Echo::new();
        echo.join(7, peer());
        echo.received(7, &vec![b'x'; MAX_QUEUE]);
        assert!(echo.take_closes().is_empty());
        echo.received(7, b"y");
        assert_eq!(echo.take_closes(), vec![(7, CloseReason::TooSlow)]);
        assert!(echo.pending(7).is_empty());
    }

    #[test]
    fn end_of_file_with_nothing_queued_closes_at_once() {
        let mut echo = Echo::new();
        echo.join(9, peer());
        echo.eof(9);
        assert_eq!(echo.take_closes(), vec![(9, CloseReason::EndOfFile)]);
    }
}
