//! The annotated syscall trace: one record per call, rendered as strace 6.1 renders it.
//!
//! - `render`: strace's formats for each kind of argument;
//! - `notes`: the table of what a call (or its errno) means;
//! - `sink`: where records go (human, JSON lines, plain, off) and how blocking is shown;
//! - `expected`: the normalised form `expected.trace` files and tests compare.
//!
//! A wrapper in `src/sys` brackets each syscall with [`enter`] and [`Call::exit`]. Lessons name
//! their threads with [`set_actor`], explain a particular call with [`explain`], and narrate
//! with [`say`] (or [`measured`] for numbers that change from run to run).

pub mod expected;
pub mod notes;
pub mod render;
mod sink;

use std::cell::{Cell, RefCell};
use std::time::Instant;

pub use sink::{CLOCK_ENV, Mode, after_fork_in_child, clock_origin, mode, set_mode};

thread_local! {
    static ACTOR: RefCell<String> = RefCell::new(String::from("main"));
    static EXPLAIN: RefCell<Option<String>> = const { RefCell::new(None) };
    static TID: Cell<i32> = const { Cell::new(0) };
}

/// Names the calling thread in the trace: `server`, `client#2`, `child#1`.
pub fn set_actor(name: impl Into<String>) {
    ACTOR.with(|a| *a.borrow_mut() = name.into());
}

/// The calling thread's actor name.
pub fn actor() -> String {
    ACTOR.with(|a| a.borrow().clone())
}

/// The lesson's own words for the next call this thread makes (they replace the table's note).
pub fn explain(text: impl Into<String>) {
    EXPLAIN.with(|e| *e.borrow_mut() = Some(text.into()));
}

/// A line of narration from this actor, shown in order with the calls.
pub fn say(text: impl AsRef<str>) {
    sink::narrate(text.as_ref(), false);
}

/// Narration carrying a measurement (a time, a count of spins): shown as is, but the numbers
/// in it are not compared against `expected.trace`.
pub fn measured(text: impl AsRef<str>) {
    sink::narrate(text.as_ref(), true);
}

/// Runs `body` on a new thread that appears in the trace as `actor`.
pub fn spawn<T: Send + 'static>(
    actor: impl Into<String>,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let name = actor.into();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            set_actor(name);
            body()
        })
        .expect("spawning a thread")
}

fn tid() -> i32 {
    TID.with(|t| {
        if t.get() == 0 {
            t.set(nix::unistd::gettid().as_raw());
        }
        t.get()
    })
}

/// A forked child is a new thread with the same memory: forget the cached thread id, and the
/// note meant for the parent's fork call, which the child never finishes.
fn forget_thread_state() {
    TID.with(|t| t.set(0));
    EXPLAIN.with(|e| e.borrow_mut().take());
}

/// A syscall under way. Made by [`enter`] before the call, finished by [`Call::exit`] after it.
#[must_use = "a call must be finished with exit()"]
pub struct Call {
    /// The row of the notes table this call is explained by (its name, unless changed).
    note_key: &'static str,
    /// None when tracing is off: nothing is rendered and nothing recorded.
    id: Option<u64>,
    /// None when tracing is off: the clock is not read.
    started: Option<Instant>,
}

/// Starts a record for `name` (the kernel's name for the call) whose arguments are all known
/// before the call: strace prints them all before `<unfinished ...>` if it blocks.
pub fn enter(name: &'static str, args: impl FnOnce() -> Vec<String>) -> Call {
    start(name, args, false)
}

/// Starts a record for a call that fills in more arguments (a buffer, an address) when it
/// returns: `args` are those known before; [`Call::exit`] renders the rest.
pub fn enter_filling(name: &'static str, args: impl FnOnce() -> Vec<String>) -> Call {
    start(name, args, true)
}

fn start(name: &'static str, args: impl FnOnce() -> Vec<String>, filling: bool) -> Call {
    // Off costs one relaxed atomic load: no clock, no lock, no rendering.
    if mode() == Mode::Off {
        return Call {
            note_key: name,
            id: None,
            started: None,
        };
    }
    let started = Instant::now();
    let id = sink::begin(name, args().join(", "), filling, started);
    Call {
        note_key: name,
        id: Some(id),
        started: Some(started),
    }
}

impl Call {
    /// Files this call's note under `key` instead of its syscall name: `send` arrives as
    /// `sendto` with no address, and means something else than a datagram's sendto.
    pub fn noted_as(mut self, key: &'static str) -> Call {
        self.note_key = key;
        self
    }

    /// Finishes the record: `out_args` are the arguments strace prints after the call returns
    /// (buffers it filled, value-result lengths), `ok` renders a successful result.
    pub fn exit<T>(
        self,
        result: &nix::Result<T>,
        out_args: impl FnOnce() -> Vec<String>,
        ok: impl FnOnce(&T) -> String,
    ) {
        let explained = EXPLAIN.with(|e| e.borrow_mut().take());
        let (Some(id), Some(started)) = (self.id, self.started) else {
            return;
        };
        let errno = result.as_ref().err().copied();
        let finish = sink::Finish {
            id,
            note_key: self.note_key,
            out_args: out_args().join(", "),
            ret: render::result(result, ok),
            errno,
            explained,
            elapsed: started.elapsed(),
        };
        sink::end(finish);
    }

    /// Finishes a call whose success prints as a plain number (`= 3`, `= 0`).
    pub fn exit_num<T: ToRet>(self, result: &nix::Result<T>, out_args: impl FnOnce() -> Vec<String>) {
        self.exit(result, out_args, ToRet::ret);
    }
}

/// How a successful result reads after `=`.
pub trait ToRet {
    fn ret(&self) -> String;
}

impl ToRet for () {
    fn ret(&self) -> String {
        "0".into()
    }
}

impl ToRet for usize {
    fn ret(&self) -> String {
        self.to_string()
    }
}

impl ToRet for i32 {
    fn ret(&self) -> String {
        self.to_string()
    }
}

impl ToRet for std::os::fd::OwnedFd {
    fn ret(&self) -> String {
        use std::os::fd::AsRawFd;
        self.as_raw_fd().to_string()
    }
}
