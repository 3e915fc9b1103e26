//! The annotated syscall trace: every call, in causal order, printed as strace 6.1 prints it.
//!
//! - `pieces`: a call's arguments and result as typed data ([`Piece`], [`Args`], [`Finish`]);
//! - `render`: strace's formats, verbatim or normalised;
//! - `event`: what a thread reports (enter, exit, narration, stage markers) and its wire format;
//! - `order`: events from every thread and process in time order, shaped into lines;
//! - `human`, `json`, `plain`: the three ways to print those lines;
//! - `sink`: the mode, and where events go; `collector`: one printer for a demo's processes;
//! - `notes`, `context`: what a call means, chosen by what its descriptor is;
//! - `expected`: how `tests/programs/lessons.rs` compares a trace with `expected.trace`;
//! - `strace`: strace's own output read back into the same items, for `socklab explain`.
//!
//! Every wrapper in `src/sys` makes its call through [`syscall`] (or [`syscall_into`], when
//! the kernel fills in a buffer): the one place a call is recorded, and one that cannot be
//! left unfinished. Lessons name their threads with [`set_actor`], explain a particular call
//! with [`explain`], narrate with [`say`] (or [`measured`] for numbers that change from run to
//! run), and hide plumbing that is not the lesson with [`stage`].

mod collector;
pub(crate) mod context;
pub mod event;
pub mod expected;
mod human;
mod json;
pub mod notes;
mod order;
pub mod pieces;
mod plain;
pub mod render;
mod sink;
pub(crate) mod strace;

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicI32, Ordering};

pub use collector::collect;
use event::{Event, What};
pub use pieces::{Args, Finish, Piece, Spec, ToRet};
pub use sink::{Mode, TRACE_ENV, finish, is_on, mode, set_mode};

thread_local! {
    static ACTOR: RefCell<String> = RefCell::new(String::from("main"));
    static EXPLAIN: RefCell<Option<String>> = const { RefCell::new(None) };
    static TID: Cell<i32> = const { Cell::new(0) };
    /// Set between a call's enter and exit; a forked child clears it (the call is its parent's).
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
    /// How many [`stage`]s this thread is inside.
    static STAGE: Cell<u32> = const { Cell::new(0) };
}

/// This process's id, asked once (getpid is a syscall; a forked child asks again).
static PID: AtomicI32 = AtomicI32::new(0);

/// Names the calling thread in the trace: `server`, `client#2`, `child#1`.
pub fn set_actor(name: impl Into<String>) {
    ACTOR.with(|a| *a.borrow_mut() = name.into());
}

/// The calling thread's actor name.
pub fn actor() -> String {
    ACTOR.with(|a| a.borrow().clone())
}

/// The lesson's own words for the next call this thread makes: they print every time, in
/// place of the table's note.
pub fn explain(text: impl Into<String>) {
    if is_on() && !in_stage() {
        EXPLAIN.with(|e| *e.borrow_mut() = Some(text.into()));
    }
}

/// A line of narration from this actor, shown in order with the calls.
pub fn say(text: impl AsRef<str>) {
    narrate(text.as_ref(), false);
}

/// Narration carrying a measurement (a time, a count of spins): shown as is, but the numbers
/// in it are not compared against `expected.trace`.
pub fn measured(text: impl AsRef<str>) {
    narrate(text.as_ref(), true);
}

fn narrate(text: &str, measured: bool) {
    if is_on() && !in_stage() {
        emit(What::Say {
            text: text.to_string(),
            measured,
        });
    }
}

/// Runs `body` on a new thread that appears in the trace as `actor`. Starting it is staged:
/// glibc's clone3, and the signal handler its first thread installs (`rt_sigaction`), are
/// std's plumbing, not the lesson's calls.
pub fn spawn<T: Send + 'static>(
    actor: impl Into<String>,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let name = actor.into();
    let builder = std::thread::Builder::new().name(name.clone());
    stage(|| {
        builder.spawn(move || {
            set_actor(name);
            body()
        })
    })
    .expect("spawning a thread")
}

/// Runs `body`, plumbing that is not the lesson (a demo's terminals and control pipes, a
/// library function's own syscalls), without recording its calls or narration. A begin and an
/// end marker are recorded instead: on the wire they are writes to fd 1, so a test holding
/// the trace against real strace knows which of this thread's calls to leave out.
pub fn stage<R>(body: impl FnOnce() -> R) -> R {
    if !is_on() {
        return body();
    }
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            let depth = STAGE.with(|s| {
                s.set(s.get() - 1);
                s.get()
            });
            if depth == 0 {
                emit(What::StageEnd);
            }
        }
    }
    if !in_stage() {
        emit(What::StageBegin);
    }
    STAGE.with(|s| s.set(s.get() + 1));
    let _leave = Leave;
    body()
}

fn in_stage() -> bool {
    STAGE.with(|s| s.get() > 0)
}

/// Makes a system call and records it: the one choke point of `src/sys`.
///
/// `before` gives the arguments known before the call, `call` makes it, `after` gives what
/// the kernel filled in and the result as strace prints it. `before` and `after` run only
/// when tracing is on: off, this costs one relaxed atomic load and then `call()`. The record
/// is finished even if `call` panics (it prints `= ?`, as a call that never returned).
#[inline]
pub fn syscall<T>(
    spec: &Spec,
    before: impl FnOnce() -> Args,
    call: impl FnOnce() -> nix::Result<T>,
    after: impl FnOnce(&nix::Result<T>) -> Finish,
) -> nix::Result<T> {
    syscall_into(spec, &mut (), |_| before(), |_| call(), |_, result| after(result))
}

/// [`syscall`] for a call that writes into `out` (a buffer, an array of pollfds, fd_sets):
/// `call` gets it to fill, then `after` gets it to read.
#[inline]
pub fn syscall_into<O: ?Sized, T>(
    spec: &Spec,
    out: &mut O,
    before: impl FnOnce(&O) -> Args,
    call: impl FnOnce(&mut O) -> nix::Result<T>,
    after: impl FnOnce(&O, &nix::Result<T>) -> Finish,
) -> nix::Result<T> {
    if !is_on() || in_stage() {
        return call(out);
    }
    record(spec, out, before, call, after)
}

/// [`syscall_into`] with the trace on: kept out of line, so that with the trace off a call is
/// the one test above and the call itself, with nothing of this in the caller's way.
#[inline(never)]
fn record<O: ?Sized, T>(
    spec: &Spec,
    out: &mut O,
    before: impl FnOnce(&O) -> Args,
    call: impl FnOnce(&mut O) -> nix::Result<T>,
    after: impl FnOnce(&O, &nix::Result<T>) -> Finish,
) -> nix::Result<T> {
    let entered = now_ns();
    let args = before(out);
    let first_fd = match args.0.first().map(Vec::as_slice) {
        Some([Piece::Fd(fd)]) => Some(*fd),
        _ => None,
    };
    emit_at(
        entered,
        What::Enter {
            name: spec.name.into(),
            args,
            fills: spec.fills,
        },
    );

    /// Finishes the record of a call that panicked.
    struct Unreturned(&'static str);
    impl Drop for Unreturned {
        fn drop(&mut self) {
            if IN_CALL.with(|c| c.replace(false)) {
                emit(What::Exit {
                    name: self.0.into(),
                    called: 0,
                    args: Args::new(),
                    ret: Vec::new(),
                    errno: None,
                    note: self.0.into(),
                    explained: None,
                });
            }
        }
    }
    IN_CALL.with(|c| c.set(true));
    let unreturned = Unreturned(spec.name);
    let called = now_ns();
    let result = call(out);
    let returned = now_ns();
    std::mem::forget(unreturned);
    // A forked child returns from its parent's fork: the record is the parent's to finish.
    if !IN_CALL.with(|c| c.replace(false)) {
        return result;
    }
    let finish = after(out, &result);
    let errno = result.as_ref().err().copied();
    if let (Some(fd), Some(errno)) = (first_fd, errno) {
        context::table().failed(fd, errno);
    }
    emit_at(
        returned,
        What::Exit {
            name: spec.name.into(),
            called,
            args: finish.args,
            ret: finish.ret,
            errno: errno.map(|e| e as i32),
            note: finish.note.unwrap_or(spec.note).into(),
            explained: EXPLAIN.with(|e| e.borrow_mut().take()),
        },
    );
    result
}

fn emit(what: What) {
    emit_at(now_ns(), what);
}

fn emit_at(t: u64, what: What) {
    sink::emit(Event {
        t,
        pid: pid(),
        tid: tid(),
        actor: actor(),
        what,
    });
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the machine.
pub fn now_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec to write into; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn pid() -> i32 {
    let mut pid = PID.load(Ordering::Relaxed);
    if pid == 0 {
        pid = nix::unistd::getpid().as_raw();
        PID.store(pid, Ordering::Relaxed);
    }
    pid
}

fn tid() -> i32 {
    TID.with(|t| {
        if t.get() == 0 {
            t.set(nix::unistd::gettid().as_raw());
        }
        t.get()
    })
}

/// Call in a forked child before it traces anything. The child is a new process with one
/// thread: it forgets the parent's ids, the call it returned from (fork, the parent's to
/// finish), the note meant for that call, and the parent's printer; its descriptor table is a
/// copy of the parent's, every socket in it now shared.
pub fn after_fork_in_child() {
    PID.store(0, Ordering::Relaxed);
    TID.with(|t| t.set(0));
    IN_CALL.with(|c| c.set(false));
    EXPLAIN.with(|e| e.borrow_mut().take());
    sink::after_fork_in_child();
    context::after_fork_in_child();
}

/// In the parent, after a fork: its sockets are shared with the child now.
pub fn after_fork_in_parent() {
    if is_on() {
        context::table().forked();
    }
}
