//! Events from every thread and process, put in the order they happened and shaped into lines.
//!
//! Events are sorted by their CLOCK_MONOTONIC time. A call during which no other thread
//! started a call (or narrated) is one line at its enter time; a call during which another
//! thread did prints in two halves, as strace prints it, `name(args <unfinished ...>` at its
//! enter time and `<... name resumed>args) = ret` at its exit time. Because an effect's exit
//! comes after its cause's enter, the reader never sees an effect before its cause, and the
//! times on the left never go backwards. (strace also splits a call when another thread's call
//! merely returns meanwhile; a return cannot cause anything in a call already running, so
//! here it does not, and a trace has fewer halves to read.)
//!
//! Events from other processes arrive late (a pipe, a scheduler), so a caller that prints as
//! it goes releases only events older than a hold-back time, and a call still open after that
//! time shows `<unfinished ...>` (a server waiting alone in accept4 shows that it waits). A
//! caller that can wait for the end releases everything at once, in the exact order.
//!
//! Two more things happen here, because only here is the whole run seen. A table note prints
//! under the first call it applies to in the run, whichever actor or process made it. And
//! identical calls of one thread in a row (a busy loop's EAGAINs) fold into the first one and
//! a `[the same call N more times]` line.

use std::collections::{HashMap, HashSet};

use nix::errno::Errno;

use super::event::{Event, What};
use super::notes;
use super::pieces::{Args, Piece};
use super::render::{self, Form};

/// A thread: (pid, tid).
type Thread = (i32, i32);

/// A call, its two halves joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub pid: i32,
    pub tid: i32,
    pub actor: String,
    pub name: String,
    pub enter_t: u64,
    /// When the syscall itself was made: after its enter was reported.
    pub called_t: u64,
    pub exit_t: u64,
    pub before: Args,
    pub after: Args,
    /// Empty with no errno: the call never returned (`= ?`).
    pub ret: Vec<Piece>,
    pub errno: Option<i32>,
    /// The words under it: the lesson's, or a table note the first time it applies.
    pub note: Option<String>,
    /// The notes row this call's context chose (empty: none).
    pub(super) note_key: String,
    /// The lesson's own words for this call.
    pub(super) explained: Option<String>,
}

impl Call {
    /// The whole call as strace prints it, in the form asked for.
    pub fn line(&self, form: Form) -> String {
        let ret = render::ret(&self.ret, self.errno, form);
        render::whole_line(&self.name, &self.before, &self.after, &ret, form)
    }

    /// The second half, for a call that was shown `<unfinished ...>`.
    pub fn resumed(&self, form: Form) -> String {
        let ret = render::ret(&self.ret, self.errno, form);
        render::resumed_line(&self.name, &self.after, &ret, form)
    }

    /// Whether the call never returned (`= ?`).
    pub fn never_returned(&self) -> bool {
        self.ret.is_empty() && self.errno.is_none()
    }

    /// How long the call took in the kernel, in nanoseconds (0 if it never returned: then
    /// nobody knows).
    pub fn blocked(&self) -> u64 {
        if self.never_returned() {
            return 0;
        }
        self.exit_t.saturating_sub(self.called_t.max(self.enter_t))
    }
}

/// A line to print (with its note, if any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A call nothing else happened during: one line, at its enter time.
    Whole(Call),
    /// The first half of a call during which others acted, at its enter time.
    Unfinished {
        t: u64,
        pid: i32,
        tid: i32,
        actor: String,
        name: String,
        before: Args,
        fills: bool,
    },
    /// The second half, at its exit time.
    Resumed(Call),
    Say {
        t: u64,
        pid: i32,
        tid: i32,
        actor: String,
        text: String,
        measured: bool,
    },
    /// `count` more calls identical to `first`, each right after the other in its thread.
    Repeat { first: Call, count: u64, last_t: u64 },
    /// A line strace prints that is not a call: a signal arriving (`--- SIGCHLD {…} ---`) or
    /// a process ending (`+++ exited with 0 +++`). Only `socklab explain` has these.
    Mark {
        t: u64,
        pid: i32,
        tid: i32,
        actor: String,
        text: Vec<Piece>,
    },
}

impl Item {
    fn thread(&self) -> Thread {
        match self {
            Item::Whole(call) | Item::Resumed(call) | Item::Repeat { first: call, .. } => (call.pid, call.tid),
            Item::Unfinished { pid, tid, .. } | Item::Say { pid, tid, .. } | Item::Mark { pid, tid, .. } => {
                (*pid, *tid)
            }
        }
    }
}

/// A call shown `<unfinished ...>`, waiting for its exit.
struct Open {
    t: u64,
    actor: String,
    name: String,
    before: Args,
}

/// Identical calls being folded into one line.
struct Fold {
    first: Call,
    line: String,
    count: u64,
    last_t: u64,
}

#[derive(Default)]
pub struct Order {
    /// Not yet released, sorted by time (events with the same time in the order they came).
    pending: Vec<Event>,
    open: HashMap<Thread, Open>,
    /// Table rows already printed in this run: (syscall or key of the row, its errno).
    noted: HashSet<(&'static str, Option<i32>)>,
    /// Per thread: its last line if that was a whole call, and the calls folded into it.
    folds: HashMap<Thread, Fold>,
}

impl Order {
    pub fn new() -> Order {
        Order::default()
    }

    pub fn push(&mut self, event: Event) {
        let at = self.pending.partition_point(|e| e.t <= event.t);
        self.pending.insert(at, event);
    }

    /// Releases, in order, every event at or before `limit` (CLOCK_MONOTONIC ns) whose shape
    /// is settled; `None` means the stream has ended: everything, and calls that never
    /// returned end with `= ?`.
    pub fn release(&mut self, limit: Option<u64>) -> Vec<Item> {
        let mut out = Vec::new();
        let due = |t: u64| limit.is_none_or(|l| t <= l);
        while let Some(first) = self.pending.first() {
            if !due(first.t) {
                break;
            }
            let thread = (first.pid, first.tid);
            match &first.what {
                What::Enter { .. } => {
                    let next = self.pending[1..]
                        .iter()
                        .position(|e| (e.pid, e.tid) == thread)
                        .map(|i| i + 1);
                    match next {
                        Some(j) if matches!(self.pending[j].what, What::Exit { .. }) => {
                            // Wait until everything up to its exit is in.
                            if !due(self.pending[j].t) {
                                break;
                            }
                            // Identical to this thread's last call: folded, whatever other
                            // threads did meanwhile (so folding is the same on every run).
                            if self.folds_into_last(thread, j) {
                                let exit = self.pending.remove(j);
                                self.pending.remove(0);
                                if let Some(fold) = self.folds.get_mut(&thread) {
                                    fold.count += 1;
                                    fold.last_t = exit.t;
                                }
                                continue;
                            }
                            let overlapped = self.pending[1..j].iter().any(may_cause);
                            let enter = self.pending.remove(0);
                            if overlapped {
                                self.open_call(enter, &mut out);
                            } else {
                                let exit = self.pending.remove(j - 1);
                                let call = joined(enter, exit);
                                self.end_collected(&call.name, &call.ret, call.enter_t, &mut out);
                                self.emit(Item::Whole(call), &mut out);
                            }
                        }
                        // Its thread went on without returning from it (it cannot, unless
                        // the record was lost): it never returned.
                        Some(_) => {
                            let enter = self.pending.remove(0);
                            let t = enter.t;
                            self.open_call(enter, &mut out);
                            self.end_open(thread, t, &mut out);
                        }
                        // Still running, as far as anyone knows.
                        None => {
                            let enter = self.pending.remove(0);
                            self.open_call(enter, &mut out);
                        }
                    }
                }
                What::Exit { .. } => {
                    let exit = self.pending.remove(0);
                    if let What::Exit { name, ret, .. } = &exit.what {
                        self.end_collected(name, ret, exit.t, &mut out);
                    }
                    let call = match self.open.remove(&thread) {
                        Some(open) => joined_open(open, exit),
                        None => joined_open(
                            Open {
                                t: exit.t,
                                actor: exit.actor.clone(),
                                name: String::new(),
                                before: Args::new(),
                            },
                            exit,
                        ),
                    };
                    self.emit(Item::Resumed(call), &mut out);
                }
                What::Say { .. } => {
                    let event = self.pending.remove(0);
                    if let What::Say { text, measured } = event.what {
                        let item = Item::Say {
                            t: event.t,
                            pid: event.pid,
                            tid: event.tid,
                            actor: event.actor,
                            text,
                            measured,
                        };
                        self.emit(item, &mut out);
                    }
                }
                // Stage markers bound plumbing that is not shown; they print nothing.
                What::StageBegin | What::StageEnd => {
                    self.pending.remove(0);
                }
            }
        }
        if limit.is_none() {
            let mut open: Vec<(u64, Thread)> = self.open.iter().map(|(k, o)| (o.t, *k)).collect();
            open.sort();
            for (t, thread) in open {
                self.end_open(thread, t, &mut out);
            }
            let mut folds: Vec<(u64, Thread)> = self.folds.iter().map(|(k, f)| (f.last_t, *k)).collect();
            folds.sort();
            for (_, thread) in folds {
                self.flush_fold(thread, &mut out);
            }
        }
        out
    }

    /// Notes and folding for an item whose shape was decided elsewhere (strace's own lines,
    /// read back by `strace.rs`): what to print now, in order.
    pub fn shaped(&mut self, item: Item) -> Vec<Item> {
        let mut out = Vec::new();
        self.emit(item, &mut out);
        out
    }

    /// Whether the call whose enter is first in `pending` and whose exit is at `exit` prints
    /// the same line as the thread's last one, with nothing of the thread's between them.
    fn folds_into_last(&self, thread: Thread, exit: usize) -> bool {
        let Some(fold) = self.folds.get(&thread) else {
            return false;
        };
        let (
            What::Enter { name, args, .. },
            What::Exit {
                args: after,
                ret,
                errno,
                explained: None,
                ..
            },
        ) = (&self.pending[0].what, &self.pending[exit].what)
        else {
            return false;
        };
        let ret = render::ret(ret, *errno, Form::Verbatim);
        fold.line == render::whole_line(name, args, after, &ret, Form::Verbatim)
    }

    fn open_call(&mut self, enter: Event, out: &mut Vec<Item>) {
        let What::Enter { name, args, fills } = enter.what else {
            return;
        };
        let item = Item::Unfinished {
            t: enter.t,
            pid: enter.pid,
            tid: enter.tid,
            actor: enter.actor.clone(),
            name: name.to_string(),
            before: args.clone(),
            fills,
        };
        self.emit(item, out);
        self.open.insert(
            (enter.pid, enter.tid),
            Open {
                t: enter.t,
                actor: enter.actor,
                name: name.into_owned(),
                before: args,
            },
        );
    }

    /// A wait4 that collected a child proves the child is gone: calls it was still in never
    /// returned, and end at `t`, before the wait4 says so (whether the wait4 prints whole or in
    /// two halves).
    fn end_collected(&mut self, name: &str, ret: &[Piece], t: u64, out: &mut Vec<Item>) {
        if let ("wait4", Some(Piece::Pid(child))) = (name, ret.first()) {
            let child = *child;
            // A call whose own exit is still to come did return (exit_group records its
            // `= ?` itself): it is joined with that exit, not ended here.
            let returns = |thread: &Thread| {
                self.pending
                    .iter()
                    .any(|e| (e.pid, e.tid) == *thread && matches!(e.what, What::Exit { .. }))
            };
            let mut dead: Vec<(u64, Thread)> = self
                .open
                .iter()
                .filter(|(k, _)| k.0 == child && !returns(k))
                .map(|(k, o)| (o.t, *k))
                .collect();
            dead.sort();
            for (_, thread) in dead {
                self.end_open(thread, t, out);
            }
        }
    }

    /// A call that never returned: `<... name resumed>) = ?`.
    fn end_open(&mut self, thread: Thread, t: u64, out: &mut Vec<Item>) {
        if let Some(open) = self.open.remove(&thread) {
            let call = Call {
                pid: thread.0,
                tid: thread.1,
                actor: open.actor,
                name: open.name,
                enter_t: open.t,
                called_t: open.t,
                exit_t: t,
                before: open.before,
                after: Args::new(),
                ret: Vec::new(),
                errno: None,
                note: None,
                note_key: String::new(),
                explained: None,
            };
            self.emit(Item::Resumed(call), out);
        }
    }

    /// Folds repeats, picks notes, and hands the item on.
    fn emit(&mut self, mut item: Item, out: &mut Vec<Item>) {
        let thread = item.thread();
        if let Item::Whole(call) = &item {
            let line = call.line(Form::Verbatim);
            self.flush_fold(thread, out);
            if let Item::Whole(call) = &mut item {
                self.pick_note(call);
                self.folds.insert(
                    thread,
                    Fold {
                        first: call.clone(),
                        line,
                        count: 0,
                        last_t: call.enter_t,
                    },
                );
            }
            out.push(item);
            return;
        }
        self.flush_fold(thread, out);
        self.folds.remove(&thread);
        if let Item::Resumed(call) = &mut item {
            self.pick_note(call);
            // A call printed in two halves is still a line that identical calls fold into:
            // whether a busy loop's first call was split depends on other threads' timing.
            if !call.never_returned() {
                self.folds.insert(
                    thread,
                    Fold {
                        first: call.clone(),
                        line: call.line(Form::Verbatim),
                        count: 0,
                        last_t: call.exit_t,
                    },
                );
            }
        }
        out.push(item);
    }

    fn flush_fold(&mut self, thread: Thread, out: &mut Vec<Item>) {
        if let Some(fold) = self.folds.get_mut(&thread) {
            if fold.count > 0 {
                let mut first = fold.first.clone();
                first.note = None;
                out.push(Item::Repeat {
                    first,
                    count: fold.count,
                    last_t: fold.last_t,
                });
                fold.count = 0;
            }
        }
    }

    /// The lesson's words, or the table's the first time its row applies in this run.
    fn pick_note(&mut self, call: &mut Call) {
        if let Some(words) = call.explained.take() {
            call.note = Some(words);
            return;
        }
        if call.note_key.is_empty() {
            return;
        }
        let errno = call.errno.map(Errno::from_raw);
        if let Some(row) = notes::row(&call.note_key, errno) {
            if self.noted.insert((row.syscall, row.errno.map(|e| e as i32))) {
                call.note = Some(row.text.to_string());
            }
        }
    }
}

/// Events that may cause what a call running meanwhile returns: another call starting (its
/// arguments act from then on) or narration (a demo typing). Another call's *return* inside a
/// call's run cannot be its cause, so it does not split the line: printed after the whole call,
/// it still follows everything that could have caused it.
fn may_cause(event: &Event) -> bool {
    matches!(event.what, What::Enter { .. } | What::Say { .. })
}

fn joined(enter: Event, exit: Event) -> Call {
    let What::Enter { name, args, .. } = enter.what else {
        unreachable!("joined() is given an enter event")
    };
    joined_open(
        Open {
            t: enter.t,
            actor: enter.actor,
            name: name.into_owned(),
            before: args,
        },
        exit,
    )
}

fn joined_open(open: Open, exit: Event) -> Call {
    let What::Exit {
        name,
        called,
        args,
        ret,
        errno,
        note,
        explained,
    } = exit.what
    else {
        unreachable!("joined_open() is given an exit event")
    };
    Call {
        pid: exit.pid,
        tid: exit.tid,
        actor: open.actor,
        name: if open.name.is_empty() {
            name.into_owned()
        } else {
            open.name
        },
        enter_t: open.t,
        called_t: called,
        exit_t: exit.t,
        before: open.before,
        after: args,
        ret,
        errno,
        note: None,
        note_key: note.into_owned(),
        explained,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: u64, pid: i32, actor: &str, what: What) -> Event {
        Event {
            t,
            pid,
            tid: pid,
            actor: actor.into(),
            what,
        }
    }

    fn enter(name: &'static str, fd: i32) -> What {
        What::Enter {
            name: name.into(),
            args: Args::new().fd(fd),
            fills: true,
        }
    }

    fn exit(name: &'static str, ret: i64) -> What {
        What::Exit {
            name: name.into(),
            called: 0,
            args: Args::new().text("NULL"),
            ret: vec![Piece::Int(ret)],
            errno: None,
            note: name.into(),
            explained: None,
        }
    }

    fn say(text: &str) -> What {
        What::Say {
            text: text.into(),
            measured: false,
        }
    }

    /// Each item as a short line: `actor kind text`.
    fn lines(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|item| match item {
                Item::Whole(c) => format!(
                    "{} {}",
                    c.actor,
                    c.line(Form::Verbatim).split_whitespace().collect::<Vec<_>>().join(" ")
                ),
                Item::Unfinished { actor, name, .. } => format!("{actor} {name} unfinished"),
                Item::Resumed(c) => format!(
                    "{} {} resumed = {}",
                    c.actor,
                    c.name,
                    render::ret(&c.ret, c.errno, Form::Verbatim)
                ),
                Item::Say { actor, text, .. } => format!("{actor} » {text}"),
                Item::Repeat { first, count, .. } => format!("{} {} x{count}", first.actor, first.name),
                Item::Mark { actor, text, .. } => format!("{actor} {}", render::pieces(text, Form::Verbatim)),
            })
            .collect()
    }

    #[test]
    fn effects_never_print_before_their_causes() {
        let mut order = Order::new();
        // The client's events arrive (from its pipe) after the server's exit was pushed.
        order.push(at(10, 1, "server", enter("accept4", 3)));
        order.push(at(50, 1, "server", exit("accept4", 4)));
        order.push(at(20, 2, "client", enter("connect", 3)));
        order.push(at(40, 2, "client", exit("connect", 0)));
        let items = order.release(None);
        assert_eq!(
            lines(&items),
            [
                "server accept4 unfinished",
                "client connect(3, NULL) = 0",
                "server accept4 resumed = 4",
            ]
        );
    }

    #[test]
    fn a_call_alone_is_one_line_and_notes_print_once_per_run() {
        let mut order = Order::new();
        order.push(at(10, 1, "server", enter("listen", 3)));
        order.push(at(11, 1, "server", exit("listen", 0)));
        order.push(at(20, 2, "client", enter("listen", 3)));
        order.push(at(21, 2, "client", exit("listen", 0)));
        let items = order.release(None);
        assert_eq!(
            lines(&items),
            ["server listen(3, NULL) = 0", "client listen(3, NULL) = 0"]
        );
        let notes: Vec<bool> = items
            .iter()
            .map(|i| matches!(i, Item::Whole(c) if c.note.is_some()))
            .collect();
        assert_eq!(notes, [true, false], "the table's note once, for whoever came first");
    }

    #[test]
    fn a_hold_back_waits_for_late_events_and_shows_a_long_wait_as_unfinished() {
        let mut order = Order::new();
        order.push(at(10, 1, "server", enter("accept4", 3)));
        assert!(order.release(Some(5)).is_empty(), "nothing is due yet");
        assert_eq!(lines(&order.release(Some(10))), ["server accept4 unfinished"]);
        order.push(at(30, 2, "client", say("hello")));
        order.push(at(40, 1, "server", exit("accept4", 4)));
        assert_eq!(lines(&order.release(Some(35))), ["client » hello"]);
        assert_eq!(lines(&order.release(Some(100))), ["server accept4 resumed = 4"]);

        // A short call whose exit is known waits for everything before its exit.
        order.push(at(110, 1, "server", enter("listen", 3)));
        order.push(at(130, 1, "server", exit("listen", 0)));
        assert!(order.release(Some(120)).is_empty());
        order.push(at(125, 2, "client", say("late")));
        assert_eq!(
            lines(&order.release(Some(200))),
            ["server listen unfinished", "client » late", "server listen resumed = 0"]
        );
    }

    #[test]
    fn a_call_that_never_returns_ends_with_a_question_mark() {
        let mut order = Order::new();
        order.push(at(10, 1, "child", enter("sendto", 4)));
        order.push(at(20, 2, "server", say("waiting")));
        assert_eq!(
            lines(&order.release(None)),
            [
                "child sendto unfinished",
                "server » waiting",
                "child sendto resumed = ?"
            ]
        );
    }

    #[test]
    fn a_child_killed_in_a_call_ends_where_its_parent_learns_it() {
        let mut order = Order::new();
        order.push(at(10, 1, "server", enter("wait4", 7)));
        order.push(at(20, 7, "child", enter("sendto", 4)));
        order.push(at(
            30,
            1,
            "server",
            What::Exit {
                name: "wait4".into(),
                called: 0,
                args: Args::new(),
                ret: vec![Piece::Pid(7)],
                errno: None,
                note: "wait4".into(),
                explained: None,
            },
        ));
        order.push(at(40, 1, "server", say("child#1 was killed")));
        assert_eq!(
            lines(&order.release(None)),
            [
                "server wait4 unfinished",
                "child sendto unfinished",
                "child sendto resumed = ?",
                "server wait4 resumed = 7",
                "server » child#1 was killed",
            ]
        );
    }

    #[test]
    fn a_child_killed_before_its_parent_waits_ends_before_the_whole_wait4() {
        let mut order = Order::new();
        order.push(at(10, 7, "child", enter("sendto", 4)));
        order.push(at(20, 1, "server", enter("wait4", 7)));
        order.push(at(
            21,
            1,
            "server",
            What::Exit {
                name: "wait4".into(),
                called: 0,
                args: Args::new(),
                ret: vec![Piece::Pid(7)],
                errno: None,
                note: "wait4".into(),
                explained: None,
            },
        ));
        order.push(at(30, 1, "server", say("child#1 was killed")));
        let items = order.release(None);
        assert_eq!(
            lines(&items),
            [
                "child sendto unfinished",
                "child sendto resumed = ?",
                "server wait4(7) = 7",
                "server » child#1 was killed",
            ]
        );
        let times: Vec<u64> = items
            .iter()
            .map(|item| match item {
                Item::Whole(c) => c.enter_t,
                Item::Resumed(c) => c.exit_t,
                Item::Unfinished { t, .. } | Item::Say { t, .. } | Item::Mark { t, .. } => *t,
                Item::Repeat { last_t, .. } => *last_t,
            })
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "times go forward: {times:?}");
    }

    #[test]
    fn a_child_whose_exit_group_is_split_ends_once_though_its_parent_waits_whole() {
        let mut order = Order::new();
        order.push(at(10, 7, "child", enter("exit_group", 0)));
        order.push(at(11, 1, "server", say("meanwhile")));
        order.push(at(12, 1, "server", enter("wait4", 7)));
        order.push(at(
            13,
            7,
            "child",
            What::Exit {
                name: "exit_group".into(),
                called: 0,
                args: Args::new(),
                ret: vec![Piece::text("?")],
                errno: None,
                note: "exit_group".into(),
                explained: None,
            },
        ));
        order.push(at(
            14,
            1,
            "server",
            What::Exit {
                name: "wait4".into(),
                called: 0,
                args: Args::new(),
                ret: vec![Piece::Pid(7)],
                errno: None,
                note: "wait4".into(),
                explained: None,
            },
        ));
        let items = order.release(None);
        let ends = items
            .iter()
            .filter(|item| matches!(item, Item::Resumed(c) if c.name == "exit_group"))
            .count();
        assert_eq!(ends, 1, "{:?}", lines(&items));
    }

    #[test]
    fn identical_calls_in_a_row_fold_into_one_line() {
        let mut order = Order::new();
        let eagain = || What::Exit {
            name: "recvfrom".into(),
            called: 0,
            args: Args::new(),
            ret: Vec::new(),
            errno: Some(libc::EAGAIN),
            note: "recv".into(),
            explained: None,
        };
        for i in 0..5 {
            order.push(at(10 + 4 * i, 1, "server", enter("recvfrom", 4)));
            order.push(at(12 + 4 * i, 1, "server", eagain()));
        }
        // Inside the third call: it is folded all the same.
        order.push(at(19, 2, "client", say("thinking")));
        order.push(at(40, 1, "server", say("done")));
        let items = order.release(None);
        assert_eq!(
            lines(&items),
            [
                "server recvfrom(4) = -1 EAGAIN (Resource temporarily unavailable)",
                "client » thinking",
                "server recvfrom x4",
                "server » done",
            ]
        );
    }

    #[test]
    fn identical_calls_fold_into_a_first_call_printed_in_two_halves() {
        let mut order = Order::new();
        let eagain = || What::Exit {
            name: "recvfrom".into(),
            called: 0,
            args: Args::new(),
            ret: Vec::new(),
            errno: Some(libc::EAGAIN),
            note: "recv".into(),
            explained: None,
        };
        order.push(at(10, 1, "server", enter("recvfrom", 4)));
        // Another thread starts a call meanwhile: the first recvfrom prints in two halves.
        order.push(at(11, 2, "client", enter("poll", 3)));
        order.push(at(12, 1, "server", eagain()));
        for i in 0..3 {
            order.push(at(20 + 4 * i, 1, "server", enter("recvfrom", 4)));
            order.push(at(22 + 4 * i, 1, "server", eagain()));
        }
        order.push(at(40, 2, "client", exit("poll", 1)));
        order.push(at(50, 1, "server", say("done")));
        assert_eq!(
            lines(&order.release(None)),
            [
                "server recvfrom unfinished",
                "client poll unfinished",
                "server recvfrom resumed = -1 EAGAIN (Resource temporarily unavailable)",
                "client poll resumed = 1",
                "server recvfrom x3",
                "server » done",
            ]
        );
    }

    #[test]
    fn stage_markers_print_nothing_and_split_nothing() {
        let mut order = Order::new();
        order.push(at(10, 1, "server", enter("listen", 3)));
        order.push(at(11, 2, "terminals", What::StageBegin));
        order.push(at(12, 2, "terminals", What::StageEnd));
        order.push(at(13, 1, "server", exit("listen", 0)));
        assert_eq!(lines(&order.release(None)), ["server listen(3, NULL) = 0"]);
    }
}
