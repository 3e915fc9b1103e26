//! The chat room with no I/O in it: events in, bytes to send and clients to close out.
//!
//! An event loop (select, poll, epoll: see `src/serve`) owns the sockets. It tells the
//! [`Room`] what happened ([`Room::join`], [`Room::received`], [`Room::eof`], [`Room::wrote`],
//! [`Room::failed`]), writes what [`Room::pending`] holds while [`Room::wants_write`] is true,
//! and closes whatever [`Room::take_closes`] names. The room never touches a socket, so the
//! same room runs under every loop and is tested here without one.
//!
//! The protocol is lines of UTF-8 ending in `\n` (`\r\n` accepted). A line reaches everyone
//! else as `HH:MM:SS 127.0.0.1:40122 say: TEXT`; `/nick NAME` replaces the address with a
//! name, `/who` lists the room, `exit` (or end-of-file) leaves. Notices start with `*`,
//! errors with `!`. A line over [`MAX_LINE`] is answered with an error and discarded up to its
//! newline; the client stays. Leaving or being dropped closes at once: queued output is lost.

mod line;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use line::{Frame, Lines};

/// Longest line a client may send, in bytes before the `\n`: a chat line is a sentence, not a
/// file, and this bounds the memory one client's unfinished line can hold.
pub const MAX_LINE: usize = 1024;

/// Most bytes that may wait for one client: about 60 full-length lines, 20 if every byte of
/// each became a 3-byte U+FFFD, so one line always fits an empty queue. A reader this far behind
/// is not reading; waiting longer would let it grow the server's memory without limit, so it is
/// dropped as "too slow".
pub const MAX_QUEUE: usize = 64 * 1024;

/// Longest nickname: short enough to read at the start of every line.
pub const MAX_NICK: usize = 16;

/// How a loop names a client: any number unique among the clients present (a descriptor, a
/// slot, an epoll token). It may be reused once the room has closed the client it named.
pub type ClientId = u64;

/// Why a client must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// It sent `exit`.
    Exit,
    /// It closed its side (read returned 0).
    EndOfFile,
    /// Its output queue would have passed [`MAX_QUEUE`].
    TooSlow,
    /// The loop reported an error on its socket ([`Room::failed`]).
    Failed,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::Exit => "exit",
            CloseReason::EndOfFile => "end of file",
            CloseReason::TooSlow => "too slow",
            CloseReason::Failed => "connection failed",
        })
    }
}

/// The current time of day as `HH:MM:SS` (UTC), for [`Room::new`].
pub fn utc_clock() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

struct Client {
    /// The peer address until `/nick`, then the nickname.
    name: String,
    input: Lines,
    output: Vec<u8>,
}

impl Client {
    /// Queues a line unless that would pass the bound; false means the client is too slow.
    fn queue(&mut self, line: &str) -> bool {
        if self.output.len() + line.len() > MAX_QUEUE {
            return false;
        }
        self.output.extend_from_slice(line.as_bytes());
        true
    }
}

/// Everyone connected, what each still owes the room, and what the room owes each.
pub struct Room {
    clients: BTreeMap<ClientId, Client>,
    closes: Vec<(ClientId, CloseReason)>,
    clock: Box<dyn Fn() -> String>,
}

impl Room {
    /// An empty room. `clock` returns the time of day as `HH:MM:SS` ([`utc_clock`], or a fixed
    /// text in tests).
    pub fn new(clock: impl Fn() -> String + 'static) -> Room {
        Room {
            clients: BTreeMap::new(),
            closes: Vec::new(),
            clock: Box::new(clock),
        }
    }

    /// A client connected from `peer`: welcome it and tell the others.
    pub fn join(&mut self, id: ClientId, peer: SocketAddr) {
        let name = peer.to_string();
        let client = Client {
            name: name.clone(),
            input: Lines::default(),
            output: Vec::new(),
        };
        self.clients.insert(id, client);
        self.send(
            id,
            &format!("* welcome, you are {name}; say something, or /nick NAME, /who, exit"),
        );
        self.broadcast(Some(id), &format!("* {name} joined"));
    }

    /// Bytes arrived from a client. Whole lines are acted on; a partial line waits for the rest.
    pub fn received(&mut self, id: ClientId, bytes: &[u8]) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        for frame in client.input.push(bytes) {
            if !self.clients.contains_key(&id) {
                return; // it left or was dropped: the rest of what it sent goes nowhere
            }
            match frame {
                Frame::TooLong => self.send(
                    id,
                    &format!("! line longer than {MAX_LINE} bytes; ignored up to its newline"),
                ),
                Frame::Line(text) => self.line(id, &text),
            }
        }
    }

    /// The client closed its side (read returned 0): it leaves, its partial line is lost.
    pub fn eof(&mut self, id: ClientId) {
        self.leave(id, CloseReason::EndOfFile);
    }

    /// The client's socket failed (`ECONNRESET`, `EPIPE`, an error in select's exceptional set):
    /// it is forgotten and the others are told.
    pub fn failed(&mut self, id: ClientId) {
        self.leave(id, CloseReason::Failed);
    }

    /// The loop wrote the first `n` bytes of [`Room::pending`] to the client's socket.
    pub fn wrote(&mut self, id: ClientId, n: usize) {
        if let Some(client) = self.clients.get_mut(&id) {
            client.output.drain(..n.min(client.output.len()));
        }
    }

    /// The bytes waiting to be written to the client, oldest first.
    pub fn pending(&self, id: ClientId) -> &[u8] {
        self.clients.get(&id).map_or(&[], |c| &c.output)
    }

    /// True only while output waits: a loop asks for writability then, and only then, since an
    /// idle socket is almost always writable and would wake the loop for nothing.
    pub fn wants_write(&self, id: ClientId) -> bool {
        !self.pending(id).is_empty()
    }

    /// The clients the loop must close now, each once, with the reason. The room has already
    /// forgotten them; events that still name them are ignored.
    pub fn take_closes(&mut self) -> Vec<(ClientId, CloseReason)> {
        std::mem::take(&mut self.closes)
    }

    /// One whole line from a client: `exit`, a command, or something to say.
    fn line(&mut self, id: ClientId, text: &str) {
        let words = text.trim();
        let (command, argument) = words.split_once(char::is_whitespace).unwrap_or((words, ""));
        match command {
            "" => {} // a blank line says nothing
            _ if words.eq_ignore_ascii_case("exit") => self.leave(id, CloseReason::Exit),
            "/who" => self.who(id),
            "/nick" => self.nick(id, argument.trim()),
            _ if command.starts_with('/') => {
                self.send(id, &format!("! unknown command {command}; try /nick NAME, /who, exit"))
            }
            _ => {
                let name = &self.clients[&id].name;
                self.broadcast(Some(id), &format!("{name} say: {text}"));
            }
        }
    }

    /// Answers the asker alone, in id order.
    fn who(&mut self, id: ClientId) {
        let names: Vec<String> = self
            .clients
            .iter()
            .map(|(&other, c)| {
                if other == id {
                    format!("{} (you)", c.name)
                } else {
                    c.name.clone()
                }
            })
            .collect();
        self.send(id, &format!("* in the room: {}", names.join(", ")));
    }

    fn nick(&mut self, id: ClientId, new: &str) {
        // Letters, digits, '-' and '_' only: no spaces to confuse "NAME say:", and no '.' or ':'
        // so a nickname can never pass for someone's address.
        let valid = (1..=MAX_NICK).contains(&new.len())
            && new.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let taken = self
            .clients
            .iter()
            .any(|(&other, c)| other != id && c.name.eq_ignore_ascii_case(new));
        if !valid {
            self.send(
                id,
                &format!("! a nickname is 1 to {MAX_NICK} letters, digits, '-' or '_'"),
            );
        } else if taken {
            self.send(id, &format!("! {new} is taken"));
        } else {
            let old = std::mem::replace(&mut self.clients.get_mut(&id).unwrap().name, new.to_string());
            self.send(id, &format!("* you are now {new}"));
            self.broadcast(Some(id), &format!("* {old} is now {new}"));
        }
    }

    /// Removes a client, orders its close and tells everyone left.
    fn leave(&mut self, id: ClientId, why: CloseReason) {
        if let Some(client) = self.clients.remove(&id) {
            self.closes.push((id, why));
            self.broadcast(None, &format!("* {} left ({why})", client.name));
        }
    }

    /// Queues a stamped line for one client.
    fn send(&mut self, id: ClientId, text: &str) {
        let line = self.stamp(text);
        if let Some(client) = self.clients.get_mut(&id) {
            if !client.queue(&line) {
                self.leave(id, CloseReason::TooSlow);
            }
        }
    }

    /// Queues a stamped line for everyone but `from`. The slow are dropped only after everyone
    /// else has the line, so their "left" notice never arrives ahead of it.
    fn broadcast(&mut self, from: Option<ClientId>, text: &str) {
        let line = self.stamp(text);
        let mut slow = Vec::new();
        for (&id, client) in &mut self.clients {
            if Some(id) != from && !client.queue(&line) {
                slow.push(id);
            }
        }
        for id in slow {
            self.leave(id, CloseReason::TooSlow);
        }
    }

    fn stamp(&self, text: &str) -> String {
        format!("{} {text}\n", (self.clock)())
    }
}
