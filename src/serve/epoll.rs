//! The chat room (or any [`Service`]) on epoll(7), level- or edge-triggered ([`Trigger`]).
//!
//! Where select and poll take the whole list of descriptors on every call, epoll keeps the
//! interest list in the kernel: a descriptor is added once (`EPOLL_CTL_ADD`, with its number
//! as the event's `data`, handed back with every event), changed when what we want from it
//! changes (`EPOLL_CTL_MOD`), and removed before it is closed (`EPOLL_CTL_DEL`). epoll_wait
//! returns only the ready descriptors, so 10,000 idle clients cost the kernel nothing per wait.
//!
//! Level-triggered (the default): an event is reported on every wait for as long as the
//! condition holds, as select and poll do. So a handler may stop early ([`Progress::More`]):
//! the next wait reports the descriptor again. EPOLLOUT is asked for with `EPOLL_CTL_MOD`
//! only while output waits, and turned off again once it is sent: an idle socket is
//! writable, and a level-triggered EPOLLOUT would wake the loop on every wait for nothing.
//!
//! Edge-triggered (`EPOLLET`): an event is reported once, when the condition *changes* (new
//! bytes arrive, room appears in a full send buffer). A handler that stops before `EAGAIN`
//! will not hear of that descriptor again until something else arrives: it starves. So every
//! handler runs until [`Progress::Drained`]; one that stops at the per-wake bound to let the
//! others have a turn is carried over and continued on the next pass, which then waits with
//! timeout 0. EPOLLOUT is registered once, for good, with the rest (the usual practice with
//! ET): on its own it wakes the loop only when a full send buffer gets room again (it also
//! rides along with other events, since the kernel reports every ready bit of a socket it
//! reports, and once after EPOLL_CTL_ADD, as a new socket is writable), and it saves an
//! `EPOLL_CTL_MOD` pair per message. The price: output queued for a client gets no edge of
//! its own (the socket was writable all along), so the loop sends at once whatever it
//! queued, and waits for EPOLLOUT only after a send met `EAGAIN`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::{Chat, Options, Progress, Service, Summary};
use crate::chat::ClientId;
use crate::context::Context;
use crate::sys::{self, Errno, epoll};
use crate::trace;

/// Events taken from the kernel per epoll_wait. More may be ready; the next wait returns them
/// (the kernel rotates its ready list, so nobody is left behind).
pub const EVENTS_PER_WAIT: usize = 128;

/// How epoll reports a descriptor that stays ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// On every wait while the condition holds (the default; like select and poll).
    Level,
    /// Once per change (`EPOLLET`): every handler must run until `EAGAIN`.
    Edge,
}

/// What the loop knows about each client beyond the room.
#[derive(Default)]
struct Clients {
    /// The events each client is registered for, as last told to the kernel.
    registered: BTreeMap<ClientId, EpollFlags>,
    /// Edge-triggered: clients whose last send met EAGAIN. They wait for an EPOLLOUT edge.
    blocked: BTreeSet<ClientId>,
    /// Edge-triggered: clients whose read stopped at the per-wake bound, to continue.
    unread: BTreeSet<ClientId>,
    /// Edge-triggered: the accept loop stopped at its bound with arrivals still waiting.
    unaccepted: bool,
    /// Edge-triggered: clients whose send stopped at its bound with output still waiting.
    unsent: BTreeSet<ClientId>,
    /// The clients this pass let in, read from or wrote to. Unless one client's input can
    /// queue output for others (the chat's broadcast), only their queues can have changed.
    touched: BTreeSet<ClientId>,
    /// The epoll_ctl calls whose meaning the trace has already explained.
    explained: BTreeSet<&'static str>,
}

impl Clients {
    /// Whether a pass left work that no edge will announce: then wait with timeout 0.
    fn owes_work(&self) -> bool {
        !self.unread.is_empty() || self.unaccepted || !self.unsent.is_empty()
    }

    /// Gives the next call the note `text`, the first time only.
    fn explain_once(&mut self, text: &'static str) {
        if self.explained.insert(text) {
            trace::explain(text);
        }
    }
}

/// Runs the room (or any [`Service`]) on `listener` (non-blocking, listening: see
/// [`super::listen`]) until `options` says stop. Every client socket is closed on the way out,
/// and the epoll instance; the listener is the caller's.
///
/// # Errors
/// An epoll_create1, epoll_ctl on the listener, or epoll_wait that fails (`EINTR` from
/// epoll_wait is a signal: ask again).
pub fn serve<S: Service>(listener: impl AsFd, room: S, options: &Options, trigger: Trigger) -> Result<Summary, String> {
    let listener = listener.as_fd();
    trace::explain(
        "an epoll instance: the interest list lives in the kernel, not in each call; \
         EPOLL_CLOEXEC keeps it out of programs we might exec",
    );
    let ep = epoll::epoll_create1(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
    let edge = if trigger == Trigger::Edge {
        EpollFlags::EPOLLET
    } else {
        EpollFlags::empty()
    };
    trace::explain("the listener, added once; data = its descriptor, handed back with each event");
    let listener_event = EpollEvent::new(EpollFlags::EPOLLIN | edge, fd_number(listener));
    let added =
        epoll::epoll_ctl_add(&ep, listener, listener_event).context("epoll_ctl(EPOLL_CTL_ADD) for the listener");
    if let Err(message) = added {
        let _ = sys::close(ep.0);
        return Err(message);
    }
    let mut chat = Chat::new(room);
    chat.keep_departed();
    let mut clients = Clients::default();
    let outcome = run(&ep, listener, &mut chat, &mut clients, options, trigger);
    chat.close_all();
    let _ = sys::close(ep.0);
    outcome.map(|iterations| Summary {
        iterations,
        served: chat.served(),
    })
}

/// The loop itself; returns how many times it waited.
fn run<S: Service>(
    ep: &Epoll,
    listener: BorrowedFd<'_>,
    chat: &mut Chat<S>,
    clients: &mut Clients,
    options: &Options,
    trigger: Trigger,
) -> Result<u64, String> {
    let edge = trigger == Trigger::Edge;
    let explained_add = Cell::new(false);
    let joined = RefCell::new(Vec::new());
    // A new client is added once, with its number as data. Should the kernel refuse
    // (ENOMEM, or ENOSPC past max_user_watches), the client is told so and closed.
    let admit = |socket: BorrowedFd<'_>| -> Result<(), String> {
        if !explained_add.replace(true) {
            trace::explain(if edge {
                "added once, edge-triggered: each change is reported once, so we read until \
                 EAGAIN; EPOLLOUT stays on for good (alone, it wakes us only when a full send \
                 buffer gets room)"
            } else {
                "added once: EPOLLIN for lines, EPOLLPRI for urgent data; EPOLLOUT comes and \
                 goes with EPOLL_CTL_MOD"
            });
        }
        let event = EpollEvent::new(initial_interest(trigger), fd_number(socket));
        epoll::epoll_ctl_add(ep, socket, event).map_err(|error| format!("epoll cannot watch it ({error})"))?;
        joined.borrow_mut().push(fd_number(socket));
        Ok(())
    };
    let mut events = vec![EpollEvent::empty(); EVENTS_PER_WAIT];
    let mut iterations = 0;
    while !options.done(iterations, chat) {
        iterations += 1;
        let timeout = if clients.owes_work() {
            EpollTimeout::ZERO
        } else {
            EpollTimeout::from(u16::try_from(options.tick.as_millis()).unwrap_or(u16::MAX))
        };
        let ready = match epoll::epoll_wait(ep, &mut events, timeout) {
            Ok(ready) => ready,
            Err(Errno::EINTR) => continue, // epoll_wait is never restarted after a signal
            Err(error) => return Err(format!("epoll_wait: {error}")),
        };
        let mut listener_ready = std::mem::take(&mut clients.unaccepted);
        let mut happened: Vec<(ClientId, EpollFlags)> = Vec::with_capacity(ready);
        for event in &events[..ready] {
            if event.data() == fd_number(listener) {
                listener_ready = true;
            } else {
                happened.push((event.data(), event.events()));
            }
        }
        // Edge-triggered reads left over from the last pass come first; one that also has a new
        // event is read once.
        let carried = std::mem::take(&mut clients.unread);
        let mut reads: Vec<ClientId> = carried.iter().copied().collect();
        for &(id, flags) in &happened {
            if flags.contains(EpollFlags::EPOLLPRI) {
                chat.fail(id, "EPOLLPRI: urgent (out-of-band) data, which the chat does not use");
            } else if flags.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) {
                // Read first: recv says what happened (0 for end-of-file, ECONNRESET, ...), and
                // any bytes that came before it are still delivered.
                match read(chat, clients, id, edge) {
                    Progress::Drained => chat.fail(id, "EPOLLHUP or EPOLLERR: the connection is finished"),
                    Progress::More => {}
                }
            } else if flags.contains(EpollFlags::EPOLLIN) && !carried.contains(&id) {
                reads.push(id);
            }
        }
        for id in reads {
            read(chat, clients, id, edge);
        }
        for &(id, flags) in &happened {
            if flags.contains(EpollFlags::EPOLLOUT) {
                clients.blocked.remove(&id);
                flush(chat, clients, id, edge);
            }
        }
        if listener_ready && chat.accept(listener, admit) == Progress::More && edge {
            clients.unaccepted = true; // no new edge will come for the ones still waiting
        }
        for id in joined.borrow_mut().drain(..) {
            clients.registered.insert(id, initial_interest(trigger));
            clients.touched.insert(id);
        }
        settle(ep, chat, clients, trigger);
    }
    Ok(iterations)
}

/// Reads from a client. Edge-triggered, a read that stopped at its bound is continued on the
/// next pass; level-triggered, the next wait reports the socket again by itself.
fn read<S: Service>(chat: &mut Chat<S>, clients: &mut Clients, id: ClientId, edge: bool) -> Progress {
    clients.touched.insert(id);
    let progress = chat.read(id);
    if edge && progress == Progress::More {
        clients.unread.insert(id);
    }
    progress
}

/// Sends what waits for a client. Edge-triggered, a send that met EAGAIN waits for the
/// EPOLLOUT edge; one that stopped at its bound is continued on the next pass.
fn flush<S: Service>(chat: &mut Chat<S>, clients: &mut Clients, id: ClientId, edge: bool) {
    clients.touched.insert(id);
    let progress = chat.flush(id);
    if edge && chat.wants_write(id) {
        match progress {
            Progress::Drained => {
                clients.blocked.insert(id); // EAGAIN: the send buffer is full
            }
            Progress::More => {
                clients.unsent.insert(id);
            }
        }
    }
}

/// After a pass: the sockets of the clients that left are taken out of the interest list and
/// closed, and the output the room queued is sent (edge) or asked for (level).
fn settle<S: Service>(ep: &Epoll, chat: &mut Chat<S>, clients: &mut Clients, trigger: Trigger) {
    close_departed(ep, chat, clients);
    // Whose queue may have changed: with the chat's broadcast, anyone's (the room does not
    // say whose), so everyone is looked at, in memory, with no syscall unless something
    // changed; otherwise only the clients this pass handled, so a wait costs what is ready,
    // not what is connected.
    let touched = std::mem::take(&mut clients.touched);
    let unsent = std::mem::take(&mut clients.unsent);
    let candidates: Vec<ClientId> = if chat.queues_for_others() {
        chat.sockets().map(|(id, _)| id).collect()
    } else {
        touched.union(&unsent).copied().collect()
    };
    for id in candidates {
        match trigger {
            // What the room queued this pass will get no edge of its own: send it now.
            Trigger::Edge if chat.wants_write(id) && !clients.blocked.contains(&id) => {
                flush(chat, clients, id, true);
            }
            Trigger::Edge => {}
            Trigger::Level => {
                let Some(&registered) = clients.registered.get(&id) else {
                    continue; // it has left
                };
                let wanted = level_interest(chat, id);
                if wanted != registered {
                    modify(ep, chat, clients, id, wanted);
                }
            }
        }
    }
    clients.touched.clear(); // the flushes above are settled already
    close_departed(ep, chat, clients);
}

/// What a new client is registered for.
fn initial_interest(trigger: Trigger) -> EpollFlags {
    let watch = EpollFlags::EPOLLIN | EpollFlags::EPOLLPRI;
    match trigger {
        Trigger::Level => watch,
        Trigger::Edge => watch | EpollFlags::EPOLLOUT | EpollFlags::EPOLLET,
    }
}

/// Level-triggered: input unless the service has stopped reading, urgent data always, and
/// EPOLLOUT only while output waits.
fn level_interest<S: Service>(chat: &Chat<S>, id: ClientId) -> EpollFlags {
    let mut flags = EpollFlags::EPOLLPRI;
    if chat.wants_read(id) {
        flags |= EpollFlags::EPOLLIN;
    }
    if chat.wants_write(id) {
        flags |= EpollFlags::EPOLLOUT;
    }
    flags
}

/// `EPOLL_CTL_MOD` to `wanted`. Should the kernel refuse, the client goes: the loop could no
/// longer hear from it, or would spin on it.
fn modify<S: Service>(ep: &Epoll, chat: &mut Chat<S>, clients: &mut Clients, id: ClientId, wanted: EpollFlags) {
    let was = clients.registered.insert(id, wanted).unwrap_or_else(EpollFlags::empty);
    let Some(socket) = chat.socket(id) else {
        return;
    };
    if wanted.contains(EpollFlags::EPOLLOUT) && !was.contains(EpollFlags::EPOLLOUT) {
        clients.explain_once("output waits: EPOLLOUT on, until the queue is sent");
    } else if !wanted.contains(EpollFlags::EPOLLOUT) && was.contains(EpollFlags::EPOLLOUT) {
        clients.explain_once("the queue is sent: EPOLLOUT off, or every wait would report this idle socket");
    }
    let result = epoll::epoll_ctl_mod(ep, socket, EpollEvent::new(wanted, id));
    if let Err(error) = result {
        chat.fail(id, &format!("epoll_ctl(EPOLL_CTL_MOD) failed: {error}"));
    }
}

/// Takes each departed client out of the interest list, then closes it. close alone would
/// remove it too, but only once no other descriptor refers to the same socket (a dup, a
/// forked child's copy): until then the kernel would keep reporting events for a number we
/// have closed, and which accept4 may already have given to someone else.
fn close_departed<S: Service>(ep: &Epoll, chat: &mut Chat<S>, clients: &mut Clients) {
    for (id, socket) in chat.take_departed() {
        clients.registered.remove(&id);
        clients.blocked.remove(&id);
        clients.unread.remove(&id);
        clients.explain_once("out of the interest list first: close removes it only with the last reference");
        let _ = epoll::epoll_ctl_del(ep, &socket);
        let _ = sys::close(socket);
    }
}

/// A descriptor's number as an event's `data`.
fn fd_number(fd: BorrowedFd<'_>) -> u64 {
    fd.as_raw_fd() as u64
}
