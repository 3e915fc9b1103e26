//! The chat room on select(2): three fd_sets built afresh every time round, as seed 003's
//! `Server.run` passes `inputs`, `outputs` and `inputs` again to `select.select`.
//!
//! One iteration:
//! 1. build the sets: read = the listener and every client (that the service still reads
//!    from: the echo service stops at end-of-file); write = only the clients with
//!    output waiting (an idle socket is almost always writable and would wake us for
//!    nothing); except = every client;
//! 2. select, with the timeout set again (select rewrites it with the time left);
//! 3. copy the ready descriptors out and let the sets go (they borrow the sockets, and the
//!    client list is about to change);
//! 4. act: exceptional first, then reads, then writes, and accepts last, so a number that a
//!    close freed this round and accept4 handed out again is never taken for the old client.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use super::{Chat, Options, Service, Summary};
use crate::chat::ClientId;
use crate::sys::Errno;
use crate::sys::select::{self, FdSet};
use crate::trace;

/// Runs the room (or any [`Service`]) on `listener` (non-blocking, listening: see
/// [`super::listen`]) until `options` says stop. Every client socket is closed on the way out;
/// the listener is the caller's.
///
/// # Errors
/// A select that fails other than with `EINTR` (a signal: ask again), or a listener
/// select cannot watch.
pub fn serve<S: Service>(listener: impl AsFd, room: S, options: &Options) -> Result<Summary, String> {
    let listener = listener.as_fd();
    if !select::fits(listener) {
        return Err(format!(
            "the listener is descriptor {}: select can only watch 0 to {}",
            listener.as_raw_fd(),
            select::SETSIZE - 1
        ));
    }
    let mut chat = Chat::new(room);
    let mut iterations = 0;
    while !options.done(iterations, &chat) {
        iterations += 1;
        if iterations == 1 {
            trace::explain("read: the listener and every client; write: only clients with output waiting");
        }
        let ready = match wait(listener, &chat, options.tick) {
            Ok(ready) => ready,
            Err(Errno::EINTR) => continue, // select is never restarted after a signal: ask again
            Err(error) => {
                chat.close_all();
                return Err(format!("select: {error}"));
            }
        };
        for id in ready.exceptional {
            // On a TCP socket the exceptional set means urgent (MSG_OOB) data, not an error:
            // errors and resets show up as readable. The chat has no urgent data: drop it.
            chat.fail(
                id,
                "in the exceptional set: urgent (out-of-band) data, which the chat does not use",
            );
        }
        for id in ready.readable {
            chat.read(id);
        }
        for id in ready.writable {
            chat.flush(id);
        }
        if ready.listener {
            chat.accept(listener, admit);
        }
    }
    chat.close_all();
    Ok(Summary {
        iterations,
        served: chat.served(),
    })
}

/// What one select found, copied out of the sets.
struct Ready {
    listener: bool,
    readable: Vec<ClientId>,
    writable: Vec<ClientId>,
    exceptional: Vec<ClientId>,
}

/// Builds the three sets, waits at most `tick`, and says which descriptors are ready.
fn wait<S: Service>(listener: BorrowedFd<'_>, chat: &Chat<S>, tick: Duration) -> nix::Result<Ready> {
    let mut read = FdSet::new();
    let mut write = FdSet::new();
    let mut except = FdSet::new();
    read.insert(listener.as_raw_fd());
    for (id, socket) in chat.sockets() {
        let fd = socket.as_raw_fd();
        if chat.wants_read(id) {
            read.insert(fd);
        }
        except.insert(fd);
        if chat.wants_write(id) {
            write.insert(fd);
        }
    }
    let mut timeout = select::timeout_ms(i64::try_from(tick.as_millis()).unwrap_or(i64::MAX));
    select::select(Some(&mut read), Some(&mut write), Some(&mut except), Some(&mut timeout))?;
    let ready_in = |set: &FdSet| -> Vec<ClientId> {
        chat.sockets()
            .filter(|&(_, socket)| set.contains(socket.as_raw_fd()))
            .map(|(id, _)| id)
            .collect()
    };
    Ok(Ready {
        listener: read.contains(listener.as_raw_fd()),
        readable: ready_in(&read),
        writable: ready_in(&write),
        exceptional: ready_in(&except),
    })
}

/// Only descriptors 0 to 1023 fit in an fd_set: nix's `FdSet::insert` panics past that, and
/// C's `FD_SET` writes past the end of the bitmap. Refuse the client instead.
fn admit(socket: BorrowedFd<'_>) -> Result<(), String> {
    if select::fits(socket) {
        Ok(())
    } else {
        Err(format!(
            "descriptor {} is past select's limit of {} (FD_SETSIZE)",
            socket.as_raw_fd(),
            select::SETSIZE
        ))
    }
}
