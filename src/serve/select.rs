//! The select(2) backend: three master fd_sets, copied before every call, as a C loop keeps
//! them; seed 003's `Server.run` passes `inputs`, `outputs` and `inputs` again to `select.select`.
//!
//! - read: the listener and every client the service reads from; write: only clients whose
//!   last send met EAGAIN (an idle socket is almost always writable, and would wake the loop
//!   for nothing); except: every client (on TCP, urgent data);
//! - select rewrites the sets it is given, so it gets copies, and the masters stay as they are;
//!   `nfds`, the highest descriptor watched plus one, is kept up to date as descriptors come
//!   and go, as a C loop keeps `maxfd`, and only the words below it are copied;
//! - the ready descriptors are found by scanning the returned sets word by word, 64 descriptors
//!   at a time, up to nfds.
//!
//! An fd_set is C's 1024-bit `fd_set` here ([`SETSIZE`]): a client whose descriptor is 1024 or
//! above is told why and turned away (lesson 12), as a C loop built on `FD_SET` must.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::sys::time::TimeVal;

use super::{Backend, Event, Interest, Options, Readiness, Service, Summary};
use crate::sys::select::{self, FdSet, SETSIZE, bits};
use crate::trace;

/// Runs `service` on `listener` (non-blocking, listening: see [`super::listen`]) until
/// `options` says stop. Every client socket is closed on the way out; the listener is the
/// caller's.
///
/// # Errors
/// A select that fails other than with `EINTR`, or a listener select cannot watch.
pub fn serve<S: Service>(listener: impl AsFd, service: S, options: &Options) -> Result<Summary, String> {
    super::driver::run(Select::new(), listener.as_fd(), service, options)
}

/// The master sets, and the copies select rewrites.
pub struct Select {
    read: FdSet,
    write: FdSet,
    except: FdSet,
    /// The highest descriptor in any master set, plus one.
    nfds: usize,
    ready: [FdSet; 3],
    explained: bool,
}

impl Select {
    pub fn new() -> Select {
        let set = FdSet::with_room(SETSIZE);
        Select {
            read: set.clone(),
            write: set.clone(),
            except: set.clone(),
            nfds: 0,
            ready: [set.clone(), set.clone(), set],
            explained: false,
        }
    }

    fn watch(&mut self, fd: i32, interest: Interest) {
        for (set, on) in [
            (&mut self.read, interest.read),
            (&mut self.write, interest.write),
            (&mut self.except, interest.urgent),
        ] {
            if on {
                set.insert(fd);
            } else {
                set.remove(fd);
            }
        }
        let fd = fd as usize;
        if interest != Interest::NONE {
            self.nfds = self.nfds.max(fd + 1);
        } else if fd + 1 == self.nfds {
            // The highest went: down to the next one still watched.
            while self.nfds > 0 && !self.watches(self.nfds as i32 - 1) {
                self.nfds -= 1;
            }
        }
    }

    fn watches(&self, fd: i32) -> bool {
        self.read.contains(fd) || self.write.contains(fd) || self.except.contains(fd)
    }
}

impl Default for Select {
    fn default() -> Select {
        Select::new()
    }
}

impl Backend for Select {
    const NAME: &'static str = "select";

    fn register(&mut self, fd: BorrowedFd<'_>, _token: usize, interest: Interest) -> Result<(), String> {
        // Only descriptors 0 to 1023 fit in an fd_set: nix's `FdSet::insert` panics past that,
        // and C's `FD_SET` writes past the end of the bitmap. Refuse the client instead.
        if !select::fits(fd) {
            return Err(format!(
                "descriptor {} is past select's limit of {SETSIZE} (FD_SETSIZE)",
                fd.as_raw_fd()
            ));
        }
        self.watch(fd.as_raw_fd(), interest);
        Ok(())
    }

    fn reregister(&mut self, fd: BorrowedFd<'_>, _token: usize, interest: Interest) -> nix::Result<()> {
        self.watch(fd.as_raw_fd(), interest);
        Ok(())
    }

    fn deregister(&mut self, fd: BorrowedFd<'_>, _token: usize) -> nix::Result<()> {
        self.watch(fd.as_raw_fd(), Interest::NONE);
        Ok(())
    }

    fn wait(&mut self, events: &mut Vec<Event>, timeout: Duration) -> nix::Result<()> {
        let [read, write, except] = &mut self.ready;
        read.copy_below(&self.read, self.nfds);
        write.copy_below(&self.write, self.nfds);
        except.copy_below(&self.except, self.nfds);
        if !std::mem::replace(&mut self.explained, true) {
            trace::explain("read: the listener and every client; write: only clients whose last send met EAGAIN");
        }
        let mut time = TimeVal::new(
            timeout.as_secs() as libc::time_t,
            libc::suseconds_t::from(timeout.subsec_micros()),
        );
        if select::select(Some(read), Some(write), Some(except), Some(&mut time))? == 0 {
            return Ok(());
        }
        let nfds = self.nfds;
        let (read, write, except) = (
            read.words_below(nfds),
            write.words_below(nfds),
            except.words_below(nfds),
        );
        for index in 0..read.len() {
            let (r, w, e) = (read[index], write[index], except[index]);
            for bit in bits(r | w | e) {
                let mask = 1 << bit;
                events.push(Event {
                    token: index * 64 + bit,
                    readiness: Readiness::when(r & mask != 0, Readiness::READABLE)
                        | Readiness::when(w & mask != 0, Readiness::WRITABLE)
                        | Readiness::when(e & mask != 0, Readiness::URGENT),
                });
            }
        }
        Ok(())
    }

    fn close(self) {}
}
