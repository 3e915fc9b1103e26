//! The chat room with no I/O in it: a [`Service`] that every event loop in `src/serve` drives.
//!
//! A loop owns the sockets and makes every system call; the [`Room`] owns the bytes. The loop
//! reads a client's bytes straight into its inbox ([`Service::read_buffer`]), tells the room
//! how many came, sends what the room queued ([`Service::output`]), and closes whomever the
//! room names. The room never touches a socket, so the same room runs under every loop and is
//! tested here without one.
//!
//! # The protocol
//!
//! Lines of UTF-8 ending in `\n` (`\r\n` accepted). A line reaches everyone else as
//! `HH:MM:SS 127.0.0.1:40122 say: TEXT`; `/nick NAME` replaces the address with a name, `/who`
//! lists the room (in several lines in a big room: every line the room sends is shorter than
//! [`MAX_LINE`]), `exit` (or end-of-file) leaves. Notices start with `*`, errors with `!`. A
//! line over [`MAX_LINE`] is answered with an error and discarded up to its newline; the client
//! stays. Control characters and invalid UTF-8 arrive as U+FFFD.
//!
//! **Lines without newlines.** Seed 003's client strips the newline from every line it sends
//! and sends the next one 100 ms later: for such a client, a line is what arrived before it
//! fell quiet. So until a client has ended a line with `\n`, [`QUIET`] of silence after its
//! last bytes ends its line. Once it has sent a newline, only newlines end its lines, and a
//! pause in the middle of one means nothing. This is a compromise: TCP carries bytes, not
//! messages (lesson 5). Two such lines sent less than [`QUIET`] apart, or read together after
//! the server itself was held up, become one line; a half line cut off by end-of-file or a
//! reset before the quiet passed is lost, as any half line is.
//!
//! # Flow control, not drops
//!
//! The room consumes lines from its clients' inboxes one at a time, in turns: one line from
//! each client that has one, then round again, so a flood cannot starve a quiet client's line.
//! Each line said is queued in everyone else's outbox, and the loop sends it at once if it can.
//!
//! - **High- and low-water marks.** While any outbox holds more than [`HIGH_WATER`] bytes, the
//!   room consumes no lines; it starts again once every such outbox is below [`LOW_WATER`].
//!   Lines wait in their senders' inboxes meanwhile. A full inbox lends the loop no buffer, so
//!   the loop stops reading that sender, its bytes wait in the kernel, and TCP's receive window
//!   slows it down. Nobody loses a line: a client that reads, however slowly, is never dropped,
//!   and the room goes at its pace.
//! - **A grace for clients that stopped reading.** A client whose outbox stays above the
//!   high-water mark with nothing written to it for the grace ([`GRACE`] unless
//!   [`Options::grace`] says otherwise; `socklab chat-server --grace SECONDS`), and to which
//!   one more send then takes nothing, has stopped reading: it is dropped ("stopped
//!   reading"), so it holds the room up for no longer than that. (The one more send: the
//!   kernel reports a socket writable again only once a third of its send buffer is free, so
//!   a reader of a trickle shows its progress to a send, not to the wait.) (Redis's client-output-buffer-limit drops a client held above a soft limit for N
//!   seconds; here, above the mark with no progress for N seconds.)
//! - **A hard limit.** Notices (joins, leaves, a `/who` reply) are queued even while the room
//!   consumes no lines. An outbox that would pass [`HARD_LIMIT`] is dropped at once ("too far
//!   behind"), as an IRC server drops a client whose SendQ is exceeded.

mod inbox;
mod outbox;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use inbox::{Arrival, Inbox, clean_into};
use outbox::Outbox;

pub use crate::service::{ClientId, CloseReason, Service};

/// Longest line a client may send, in bytes before the `\n`: a chat line is a sentence, not a
/// file, and this bounds the memory one client's unfinished line can hold.
pub const MAX_LINE: usize = 1024;

/// Bytes of one client's inbox, and so the most one recv takes from it: four full-length lines,
/// or a burst of a few dozen short ones. Past it a sender's bytes wait in the kernel.
pub const INBOX: usize = 4096;

/// Above this many bytes in any outbox the room stops consuming lines: a reader about 400
/// lines behind, with the kernel's own buffers (several hundred KB on loopback) full before it.
pub const HIGH_WATER: usize = 64 * 1024;

/// The room consumes lines again once every outbox that passed [`HIGH_WATER`] is below this:
/// a quarter of it, so a reader catching up does not flip the room between paused and running
/// on every line.
pub const LOW_WATER: usize = 16 * 1024;

/// An outbox that would pass this is dropped at once. Far above [`HIGH_WATER`]: only notices
/// are queued while the room is paused, and a `/who` in a room of 10,000 takes about a fifth
/// of it. A client this far behind holds a megabyte of the server's memory.
pub const HARD_LIMIT: usize = 1024 * 1024;

/// How long a client may sit above [`HIGH_WATER`] with nothing written to it before it is
/// dropped, by default. Long enough for a reader that is only slow (a terminal stopped and
/// resumed, a busy machine, a link retransmitting) to show progress; short enough that a
/// client that stopped reading holds the room's conversation up for five seconds at most.
pub const GRACE: Duration = Duration::from_secs(5);

/// Silence that ends the line of a client that has never sent a newline (seed 003's). Longer
/// than the 40 ms a delayed ACK can hold back a second segment of one message (Nagle), so a
/// message is not cut in two; shorter than the 100 ms the seed's client waits between lines,
/// with 40 ms to spare for scheduling delays.
pub const QUIET: Duration = Duration::from_millis(60);

/// After the grace, how long the one more send has before the verdict: it is tried in the same
/// wake, so any time will do; a millisecond.
const PROBE: Duration = Duration::from_millis(1);

/// Longest nickname: short enough to read at the start of every line.
pub const MAX_NICK: usize = 16;

/// Joins and leaves are announced while the room holds at most this many people. Each notice
/// goes to everyone, so N arrivals cost N² notices: 5,000 people joining would queue 12.5
/// million lines, and a burst of connections would bury the room's conversation. Above it the
/// room stays quiet about who comes and goes (`/who` still lists everyone), as Twitch's chat
/// sends no JOIN or PART for a room of more than 1,000
/// (<https://dev.twitch.tv/docs/irc/membership/>).
pub const ANNOUNCE_LIMIT: usize = 1000;

/// The names in one line of a `/who` reply: with its stamp and prefix the line stays under
/// [`MAX_LINE`], as any line a client may send.
const WHO_WIDTH: usize = 960;

/// The current time of day as `HH:MM:SS` (UTC), for [`Room::new`].
pub fn utc_clock() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// What a room may be told at its start.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// See [`GRACE`].
    pub grace: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options { grace: GRACE }
    }
}

struct Client {
    /// Which client this is, among all that ever had its id: timers and turns name it too.
    serial: u64,
    /// The peer address until `/nick`, then the nickname.
    name: String,
    inbox: Inbox,
    outbox: Outbox,
    /// In `People::changed`.
    marked: bool,
    /// In `Room::speakers`: it has a whole line waiting for its turn.
    speaking: bool,
    /// Its outbox passed [`HIGH_WATER`] and is not yet below [`LOW_WATER`].
    over: bool,
    /// When the loop last wrote to it, or when it went over the high-water mark.
    progress: Instant,
    stall_armed: bool,
    /// The grace passed with no progress: one more send is tried before it is dropped.
    probing: bool,
    /// When its last bytes arrived.
    arrived: Instant,
    quiet_armed: bool,
    /// Quiet ended its line while its inbox had no room to mark the end.
    quiet_due: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Alarm {
    /// Has the client that never sent a newline fallen quiet?
    Quiet,
    /// Has the client above the high-water mark made progress?
    Stall,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    id: ClientId,
    serial: u64,
    alarm: Alarm,
}

/// Everyone present and what the room owes each: the part of the room a delivery touches.
struct People {
    /// By descriptor number.
    slots: Vec<Option<Client>>,
    /// How many slots hold a client.
    count: usize,
    /// Clients whose output or read interest changed since the loop last asked.
    changed: Vec<ClientId>,
    /// How many outboxes are over the high-water mark: the room consumes lines only at 0.
    over: usize,
    timers: BinaryHeap<Reverse<Timer>>,
    /// The time of this wake, from [`Service::tick`].
    now: Instant,
    grace: Duration,
}

impl People {
    fn get(&self, id: ClientId) -> Option<&Client> {
        self.slots.get(id).and_then(Option::as_ref)
    }

    fn get_mut(&mut self, id: ClientId) -> Option<&mut Client> {
        self.slots.get_mut(id).and_then(Option::as_mut)
    }

    fn mark(&mut self, id: ClientId) {
        if let Some(client) = self.get_mut(id) {
            if !client.marked {
                client.marked = true;
                self.changed.push(id);
            }
        }
    }

    fn arm(&mut self, id: ClientId, serial: u64, at: Instant, alarm: Alarm) {
        self.timers.push(Reverse(Timer { at, id, serial, alarm }));
    }

    /// Queues `bytes` for `id`. False if that would pass [`HARD_LIMIT`]; nothing is queued.
    fn deliver(&mut self, id: ClientId, bytes: &[u8]) -> bool {
        let (now, grace) = (self.now, self.grace);
        let Some(client) = self.get_mut(id) else {
            return true;
        };
        if client.outbox.len() + bytes.len() > HARD_LIMIT {
            return false;
        }
        client.outbox.push(bytes);
        let mut arm = None;
        if !client.over && client.outbox.len() > HIGH_WATER {
            client.over = true;
            client.progress = now;
            if !client.stall_armed {
                client.stall_armed = true;
                arm = Some(client.serial);
            }
            self.over += 1;
        }
        if let Some(serial) = arm {
            self.arm(id, serial, now + grace, Alarm::Stall);
        }
        self.mark(id);
        true
    }

    fn remove(&mut self, id: ClientId) -> Option<Client> {
        let client = self.slots.get_mut(id)?.take()?;
        self.count -= 1;
        if client.over {
            self.over -= 1;
        }
        Some(client)
    }
}

/// Everyone connected, what each still owes the room, and what the room owes each.
pub struct Room {
    people: People,
    /// Clients with a whole line waiting, in turn order.
    speakers: VecDeque<(ClientId, u64)>,
    /// Clients to remove, and why, once the current delivery is done.
    leaving: Vec<(ClientId, CloseReason)>,
    closes: Vec<(ClientId, CloseReason)>,
    clock: Box<dyn Fn() -> String>,
    /// The clock's last answer, asked again after the next tick.
    stamp: String,
    stamp_fresh: bool,
    /// One stamped line on its way out, built once and copied to each outbox.
    out: Vec<u8>,
    /// One line read in, made clean.
    text: String,
    next_serial: u64,
    /// The server is stopping: its goodbye is the last line anyone gets.
    closing: bool,
}

/// `HH:MM:SS PARTS...\n` into `out`.
fn compose(out: &mut Vec<u8>, stamp: &str, parts: &[&str]) {
    out.clear();
    out.extend_from_slice(stamp.as_bytes());
    out.push(b' ');
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    out.push(b'\n');
}

impl Room {
    /// An empty room. `clock` returns the time of day as `HH:MM:SS` ([`utc_clock`], or a fixed
    /// text in tests and demos).
    pub fn new(clock: impl Fn() -> String + 'static) -> Room {
        Room::with_options(clock, Options::default())
    }

    pub fn with_options(clock: impl Fn() -> String + 'static, options: Options) -> Room {
        Room {
            people: People {
                slots: Vec::new(),
                count: 0,
                changed: Vec::new(),
                over: 0,
                timers: BinaryHeap::new(),
                now: Instant::now(),
                grace: options.grace,
            },
            speakers: VecDeque::new(),
            leaving: Vec::new(),
            closes: Vec::new(),
            clock: Box::new(clock),
            stamp: String::new(),
            stamp_fresh: false,
            out: Vec::new(),
            text: String::new(),
            next_serial: 0,
            closing: false,
        }
    }

    /// Asks the clock, at most once per tick.
    fn refresh_stamp(&mut self) {
        if !self.stamp_fresh {
            self.stamp = (self.clock)();
            self.stamp_fresh = true;
        }
    }

    /// Queues a stamped notice or answer for one client.
    fn send(&mut self, id: ClientId, text: &str) {
        self.refresh_stamp();
        compose(&mut self.out, &self.stamp, &[text]);
        if !self.people.deliver(id, &self.out) {
            self.leaving.push((id, CloseReason::TooFarBehind));
        }
        self.remove_leavers();
    }

    /// Queues the line in `out` for everyone but `from`. Whoever it would push past the hard
    /// limit leaves after everyone else has it, so their "left" notice never comes before it.
    fn deliver_out(&mut self, from: Option<ClientId>) {
        for id in 0..self.people.slots.len() {
            if Some(id) != from && self.people.slots[id].is_some() && !self.people.deliver(id, &self.out) {
                self.leaving.push((id, CloseReason::TooFarBehind));
            }
        }
    }

    /// Removes a client, orders its close and tells everyone left.
    fn leave(&mut self, id: ClientId, why: CloseReason) {
        self.leaving.push((id, why));
        self.remove_leavers();
    }

    fn remove_leavers(&mut self) {
        while let Some((id, why)) = self.leaving.pop() {
            let Some(client) = self.people.remove(id) else {
                continue;
            };
            self.closes.push((id, why));
            // Announced only if the room, the leaver still counted, was small enough.
            if self.closing || self.people.count >= ANNOUNCE_LIMIT {
                continue;
            }
            self.refresh_stamp();
            let why = why.to_string();
            compose(&mut self.out, &self.stamp, &["* ", &client.name, " left (", &why, ")"]);
            self.deliver_out(None);
        }
    }

    /// Consumes lines in turns while no outbox is over the high-water mark.
    fn pump(&mut self) {
        while self.people.over == 0 {
            let Some((id, serial)) = self.speakers.pop_front() else {
                break;
            };
            if self.people.get(id).is_none_or(|c| c.serial != serial) {
                continue; // it left
            }
            self.speak(id);
            if let Some(client) = self.people.get_mut(id).filter(|c| c.serial == serial) {
                if client.inbox.has_line() {
                    self.speakers.push_back((id, serial));
                } else {
                    client.speaking = false;
                }
            }
        }
    }

    /// Takes one whole line from the client's inbox and acts on it.
    fn speak(&mut self, id: ClientId) {
        let Some(client) = self.people.get_mut(id) else {
            return;
        };
        let was_full = client.inbox.is_full();
        let Some(range) = client.inbox.next_line() else {
            return;
        };
        let too_long = range.len() > MAX_LINE;
        if !too_long {
            clean_into(client.inbox.bytes(range), &mut self.text);
        }
        if client.quiet_due && client.inbox.end_line() {
            client.quiet_due = false;
        }
        if was_full {
            self.people.mark(id); // room again: read from it
        }
        if too_long {
            self.send(id, &format!("! line longer than {MAX_LINE} bytes; ignored"));
        } else {
            let text = std::mem::take(&mut self.text);
            self.act(id, &text);
            self.text = text;
        }
    }

    /// Says whatever whole lines the client still has, out of turn: end-of-file or a failure
    /// ends it, and what it sent before that is not lost.
    fn last_words(&mut self, id: ClientId) {
        while self.people.get(id).is_some_and(|c| c.inbox.has_line()) {
            self.speak(id);
        }
    }

    /// One whole line from a client: `exit`, a command, or something to say.
    fn act(&mut self, id: ClientId, text: &str) {
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
                self.refresh_stamp();
                let Some(client) = self.people.get(id) else {
                    return;
                };
                compose(&mut self.out, &self.stamp, &[&client.name, " say: ", text]);
                self.deliver_out(Some(id));
                self.remove_leavers();
            }
        }
    }

    /// Answers the asker alone, in id order, in as many lines as it takes.
    fn who(&mut self, id: ClientId) {
        let mut lines = vec![String::new()];
        for (other, client) in self.people.slots.iter().enumerate() {
            let Some(client) = client else { continue };
            let you = if other == id { " (you)" } else { "" };
            let line = lines.last_mut().expect("one line at least");
            if !line.is_empty() && line.len() + client.name.len() + you.len() + 2 > WHO_WIDTH {
                lines.push(String::new());
            }
            let line = lines.last_mut().expect("one line at least");
            if !line.is_empty() {
                line.push_str(", ");
            }
            line.push_str(&client.name);
            line.push_str(you);
        }
        let count = lines.len();
        for (number, names) in lines.iter().enumerate() {
            if count == 1 {
                self.send(id, &format!("* in the room: {names}"));
            } else {
                self.send(id, &format!("* in the room ({}/{count}): {names}", number + 1));
            }
        }
    }

    fn nick(&mut self, id: ClientId, new: &str) {
        // Letters, digits, '-' and '_' only: no spaces to confuse "NAME say:", and no '.' or ':'
        // so a nickname can never pass for someone's address.
        let valid = (1..=MAX_NICK).contains(&new.len())
            && new.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let taken = self
            .people
            .slots
            .iter()
            .enumerate()
            .any(|(other, c)| other != id && c.as_ref().is_some_and(|c| c.name.eq_ignore_ascii_case(new)));
        if !valid {
            self.send(
                id,
                &format!("! a nickname is 1 to {MAX_NICK} letters, digits, '-' or '_'"),
            );
        } else if taken {
            self.send(id, &format!("! {new} is taken"));
        } else if let Some(client) = self.people.get_mut(id) {
            let old = std::mem::replace(&mut client.name, new.to_string());
            self.send(id, &format!("* you are now {new}"));
            self.refresh_stamp();
            compose(&mut self.out, &self.stamp, &["* ", &old, " is now ", new]);
            self.deliver_out(Some(id));
            self.remove_leavers();
        }
    }

    /// A timer went off.
    fn alarm(&mut self, timer: Timer) {
        let (now, grace) = (self.people.now, self.people.grace);
        let Some(client) = self.people.get_mut(timer.id).filter(|c| c.serial == timer.serial) else {
            return; // it left
        };
        let again = match timer.alarm {
            Alarm::Quiet => {
                client.quiet_armed = false;
                if client.inbox.newline_seen() || client.inbox.partial() == 0 {
                    return;
                }
                let due = client.arrived + QUIET;
                if due > now {
                    Some(due) // more bytes came since: wait for the quiet after them
                } else {
                    client.quiet_due = !client.inbox.end_line();
                    if client.inbox.has_line() && !client.speaking {
                        client.speaking = true;
                        self.speakers.push_back((timer.id, timer.serial));
                    }
                    None
                }
            }
            Alarm::Stall => {
                client.stall_armed = false;
                if !client.over {
                    return;
                }
                let due = client.progress + grace;
                if due > now {
                    Some(due) // it made progress: a grace from then
                } else if !client.probing {
                    // Writability comes back only once a third of the kernel's send buffer is
                    // free: a reader of a trickle may be reading. One send will tell.
                    client.probing = true;
                    self.people.mark(timer.id);
                    Some(now + PROBE)
                } else {
                    self.leave(timer.id, CloseReason::StoppedReading);
                    None
                }
            }
        };
        if let Some(at) = again {
            if let Some(client) = self.people.get_mut(timer.id) {
                match timer.alarm {
                    Alarm::Quiet => client.quiet_armed = true,
                    Alarm::Stall => client.stall_armed = true,
                }
            }
            self.people.arm(timer.id, timer.serial, at, timer.alarm);
        }
    }
}

impl Service for Room {
    /// Welcomes the newcomer and tells the others.
    fn join(&mut self, id: ClientId, peer: SocketAddr) {
        let now = self.people.now;
        if self.people.slots.len() <= id {
            self.people.slots.resize_with(id + 1, || None);
        }
        self.next_serial += 1;
        let name = peer.to_string();
        self.people.slots[id] = Some(Client {
            serial: self.next_serial,
            name: name.clone(),
            inbox: Inbox::default(),
            outbox: Outbox::default(),
            marked: false,
            speaking: false,
            over: false,
            progress: now,
            stall_armed: false,
            probing: false,
            arrived: now,
            quiet_armed: false,
            quiet_due: false,
        });
        self.people.count += 1;
        self.send(
            id,
            &format!("* welcome, you are {name}; say something, or /nick NAME, /who, exit"),
        );
        if self.people.count <= ANNOUNCE_LIMIT {
            self.refresh_stamp();
            compose(&mut self.out, &self.stamp, &["* ", &name, " joined"]);
            self.deliver_out(Some(id));
        }
        self.remove_leavers();
    }

    fn read_buffer(&mut self, id: ClientId) -> &mut [u8] {
        match self.people.get_mut(id) {
            Some(client) => client.inbox.space(),
            None => &mut [],
        }
    }

    /// Frames what arrived; whole lines wait for the client's turn.
    fn received(&mut self, id: ClientId, n: usize) {
        let now = self.people.now;
        let Some(client) = self.people.get_mut(id) else {
            return;
        };
        client.arrived = now;
        let arrival = client.inbox.push(n);
        if client.inbox.has_line() && !client.speaking {
            client.speaking = true;
            self.speakers.push_back((id, client.serial));
        }
        let quiet = !client.inbox.newline_seen() && client.inbox.partial() > 0 && !client.quiet_armed;
        if quiet {
            client.quiet_armed = true;
        }
        let (serial, full) = (client.serial, client.inbox.is_full());
        if quiet {
            self.people.arm(id, serial, now + QUIET, Alarm::Quiet);
        }
        if full {
            self.people.mark(id); // stop reading it
        }
        if arrival == Arrival::TooLong {
            self.send(
                id,
                &format!("! line longer than {MAX_LINE} bytes; ignored up to its newline"),
            );
        }
    }

    /// The client closed its side: its whole lines are said, its half line is lost, it leaves.
    fn eof(&mut self, id: ClientId) {
        self.last_words(id);
        self.leave(id, CloseReason::EndOfFile);
    }

    /// The client's connection failed: as at end-of-file, but the others read why.
    fn failed(&mut self, id: ClientId) {
        self.last_words(id);
        self.leave(id, CloseReason::Failed);
    }

    fn output(&self, id: ClientId) -> &[u8] {
        self.people.get(id).map_or(&[], |c| c.outbox.pending())
    }

    fn wrote(&mut self, id: ClientId, n: usize) {
        let now = self.people.now;
        let Some(client) = self.people.get_mut(id) else {
            return;
        };
        client.outbox.advance(n);
        client.progress = now;
        client.probing = false;
        if client.over && client.outbox.len() < LOW_WATER {
            client.over = false;
            self.people.over -= 1;
        }
    }

    fn wants_read(&self, id: ClientId) -> bool {
        self.people.get(id).is_some_and(|c| !c.inbox.is_full())
    }

    fn retry_send(&self, id: ClientId) -> bool {
        self.people.get(id).is_some_and(|c| c.probing)
    }

    fn changed(&mut self, into: &mut Vec<ClientId>) {
        self.pump();
        for id in self.people.changed.drain(..) {
            if let Some(Some(client)) = self.people.slots.get_mut(id) {
                client.marked = false;
                into.push(id);
            }
        }
    }

    fn closes(&mut self, into: &mut Vec<(ClientId, CloseReason)>) {
        into.append(&mut self.closes);
    }

    fn keeps_time(&self) -> bool {
        true
    }

    fn tick(&mut self, now: Instant) {
        self.people.now = now;
        self.stamp_fresh = false;
        while self.people.timers.peek().is_some_and(|Reverse(t)| t.at <= now) {
            if let Some(Reverse(timer)) = self.people.timers.pop() {
                self.alarm(timer);
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.people.timers.peek().map(|Reverse(t)| t.at)
    }

    /// Tells everyone the room is closing, and why: `* the server is stopping (SIGTERM); goodbye`.
    fn stopping(&mut self, why: &str) {
        self.refresh_stamp();
        compose(
            &mut self.out,
            &self.stamp,
            &["* the server is stopping (", why, "); goodbye"],
        );
        self.deliver_out(None);
        self.closing = true;
        self.remove_leavers();
    }
}
