//! Lesson 16: scaling. What one wait costs as the descriptors it watches grow from 10 to
//! 10,000, for select, poll and epoll, measured on this machine; what idle clients cost an
//! echo server under each loop; and the chart of it.
//!
//! Seed 003 says the cost of select and poll grows linearly with the number of descriptors
//! (线性增长: the whole set is copied in and scanned on every call) and that epoll, which keeps
//! its interest list in the kernel and learns of readiness by callback, performs best on Linux
//! 2.6 (性能最好). Here the kernel shows it: N idle UDP sockets (nobody sends to them) and one
//! that is ready (a datagram waits in it, unread), and one wait of each kind on all of them,
//! timed again and again. The ready one is the last descriptor, so select and poll look at
//! every idle one first, as they do whenever a server sleeps in them.
//!
//!   make lesson-16              the demo: the waits at N = 10, 100, 1,000, 10,000, and a chart
//!                               of them (SVG and text), in a second or two
//!   make lesson-16 ARGS=echo    socklab's echo loops with 0, 900 and 10,000 idle clients, beside
//!                               your last `make bench` (ten seconds or so: most of it is the
//!                               kernel setting up some 30,000 idle connections)
//!
//! The trace shows the set-up and one wait of each kind at N = 10, where a line is short
//! enough to read. Everything timed runs inside `trace::stage`: the trace is paused there, so
//! what is measured is the system call, not the trace of it.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use socklab::lessons::scaling::{self, EchoRun, Series, thousands};
use socklab::lessons::{self, Args, Context, Outcome, Role};
use socklab::sys::{self, select};
use socklab::trace;

/// How many idle descriptors each wait watches.
const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
/// Descriptors the demo holds besides the idle ones: stdio, the ready one, epoll's, spares.
const BESIDES: usize = 16;
/// Every wait may sleep this long; none does, since one descriptor is always ready.
const TIMEOUT_MS: u16 = 1000;
/// How long each N is measured for: the three ways take turns of [`TURN`] until then.
const BUDGET: Duration = Duration::from_millis(60);
const TURN: Duration = Duration::from_millis(2);
/// Each median is of at least this many calls, and at most of [`MOST_CALLS`].
const FEWEST_CALLS: usize = 15;
const MOST_CALLS: usize = 20_000;
/// The echo part: idle clients held open beside [`BUSY`] clients in ping-pong.
const IDLE: [usize; 3] = [0, 900, 10_000];
const BUSY: usize = 50;
/// Each echo run: a warm-up, then the part that counts (`make bench` runs 1 s, three times).
const WARMUP: Duration = Duration::from_millis(50);
const MEASURED: Duration = Duration::from_millis(200);

fn main() {
    let started = SystemTime::now();
    lessons::main_then(0, run, || scaling::print_after_trace(started));
}

fn run(args: Args) -> Outcome {
    match args.role {
        Role::Demo => match args.rest.first().map(String::as_str) {
            None => demo(),
            Some("echo") => echo_part(),
            Some(other) => Err(format!("unknown part {other:?}: the part is echo").into()),
        },
        Role::Server | Role::Client => Err("lesson 16 is a measurement: its demo is all of it. \
             For a server and a load of your own: `cargo run -q --bin socklab -- echo-server --mux poll` \
             and, in another terminal, `cargo run -q --bin socklab -- load pingpong --conns 50 --idle 900`"
            .into()),
    }
}

/// The ways of waiting measured: the three system calls, epoll as a loop that changes its
/// interest on every wake, and poll taken apart (at the largest N only).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Select,
    Poll,
    Epoll,
    /// Two epoll_ctl (write interest on, then off again) before each epoll_wait.
    EpollCtl,
    /// poll over the same number of entries, every fd -1 but the ready one: the kernel copies
    /// the array in and out and steps over each entry without asking anything.
    PollSkipping,
    /// poll with the ready one first: once it has found one, the kernel asks each socket
    /// and hangs itself on no wait queue.
    PollReadyFirst,
}

/// What the chart draws, at every N.
const DRAWN: [Way; 4] = [Way::Select, Way::Poll, Way::Epoll, Way::EpollCtl];

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Select => "select",
            Way::Poll => "poll",
            Way::Epoll => "epoll",
            Way::EpollCtl => "epoll + 2 epoll_ctl",
            Way::PollSkipping => "poll, every fd -1",
            Way::PollReadyFirst => "poll, the ready one first",
        }
    }
}

/// N idle sockets, one ready, and what each way of waiting needs to watch all of them.
struct Watched {
    /// Held only so that they stay open: nothing reads them.
    _idle: Vec<OwnedFd>,
    ready: OwnedFd,
    /// select's set of every descriptor, as a C loop keeps it; None past FD_SETSIZE.
    every: Option<select::FdSet>,
    /// The set handed to the kernel, which rewrites it: refilled from `every` for each call.
    set: select::FdSet,
    /// poll's array, kept from call to call: the idle ones first, the ready one last.
    entries: Vec<libc::pollfd>,
    /// The same length, every fd -1 (skipped by the kernel) but the ready one, last.
    skipping: Vec<libc::pollfd>,
    /// The same entries, the ready one first.
    ready_first: Vec<libc::pollfd>,
    epoll: Epoll,
    events: Vec<EpollEvent>,
}

fn udp_socket() -> Result<OwnedFd, String> {
    sys::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Udp,
    )
    .context("socket")
}

impl Watched {
    /// Opens the sockets and fills epoll's interest list. The first of each kind of call is
    /// traced (unless the caller staged it all), the repetitions are not.
    fn open(n: usize) -> Result<Watched, String> {
        trace::explain("an idle descriptor: a UDP socket that nobody sends to; it never becomes readable");
        let mut idle = vec![udp_socket()?];
        trace::stage(|| -> Result<(), String> {
            while idle.len() < n {
                idle.push(udp_socket()?);
            }
            Ok(())
        })?;
        trace::say(format!(
            "and {} more like it, untraced: descriptors 4 to {}",
            n - 1,
            n + 2
        ));
        let ready = ready_socket()?;

        let epoll = sys::epoll::epoll_create1(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
        let watch = |fd: &OwnedFd| {
            let event = EpollEvent::new(EpollFlags::EPOLLIN, fd.as_raw_fd() as u64);
            sys::epoll::epoll_ctl_add(&epoll, fd, event).context("epoll_ctl")
        };
        trace::explain("epoll is told the set once, one epoll_ctl per descriptor, before any wait");
        watch(&idle[0])?;
        trace::stage(|| idle[1..].iter().chain([&ready]).try_for_each(watch))?;
        trace::say(format!("and one for each of the other {n}, untraced"));

        let mut every = select::fits(&ready).then(|| select::FdSet::with_room(select::SETSIZE));
        let entry = |fd: i32| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let mut entries = Vec::with_capacity(n + 1);
        for fd in idle.iter().chain([&ready]) {
            if let Some(set) = every.as_mut() {
                set.insert(fd.as_raw_fd());
            }
            entries.push(entry(fd.as_raw_fd()));
        }
        let mut skipping = vec![entry(-1); n];
        skipping.push(entry(ready.as_raw_fd()));
        let mut ready_first = entries.clone();
        ready_first.rotate_right(1);
        Ok(Watched {
            _idle: idle,
            ready,
            set: select::FdSet::with_room(select::SETSIZE),
            every,
            entries,
            skipping,
            ready_first,
            epoll,
            events: vec![EpollEvent::empty(); 16],
        })
    }

    /// Which of `ways` can watch these descriptors: select only below FD_SETSIZE.
    fn can(&self, ways: &[Way]) -> Vec<Way> {
        ways.iter()
            .copied()
            .filter(|way| *way != Way::Select || self.every.is_some())
            .collect()
    }

    /// One wait, `way`'s system call; it returns the number of ready descriptors: 1.
    fn wait(&mut self, way: Way) -> sys::Result<i32> {
        match way {
            Way::Select => {
                // The kernel rewrote the set: every select loop refills it before each call.
                self.set.clone_from(self.every.as_ref().ok_or(sys::Errno::EBADF)?);
                let mut timeout = select::timeout_ms(TIMEOUT_MS.into());
                select::select(Some(&mut self.set), None, None, Some(&mut timeout))
            }
            Way::Poll => sys::poll::poll_raw(&mut self.entries, TIMEOUT_MS.into()),
            Way::PollSkipping => sys::poll::poll_raw(&mut self.skipping, TIMEOUT_MS.into()),
            Way::PollReadyFirst => sys::poll::poll_raw(&mut self.ready_first, TIMEOUT_MS.into()),
            Way::Epoll => sys::epoll::epoll_wait(&self.epoll, &mut self.events, EpollTimeout::from(TIMEOUT_MS))
                .map(|ready| ready as i32),
            Way::EpollCtl => {
                self.interest(EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT)?;
                self.interest(EpollFlags::EPOLLIN)?;
                self.wait(Way::Epoll)
            }
        }
    }

    /// Changes what epoll watches the ready socket for, as a loop does that wants to know
    /// when it may write while a reply waits, and no longer once it is sent.
    fn interest(&self, flags: EpollFlags) -> sys::Result<()> {
        let event = EpollEvent::new(flags, self.ready.as_raw_fd() as u64);
        sys::epoll::epoll_ctl_mod(&self.epoll, &self.ready, event)
    }

    /// Closes every descriptor, untraced: the kernel drops each from epoll's list as it goes.
    fn close(self) {
        trace::stage(|| drop(self));
    }
}

/// A socket that stays readable: bound to a port of its own, it sends itself one datagram and
/// never reads it.
fn ready_socket() -> Result<OwnedFd, String> {
    trace::explain("the one that will be ready, the last descriptor: it sends itself a datagram and never reads it");
    let ready = udp_socket()?;
    sys::bind(&ready, SocketAddr::from(([127, 0, 0, 1], 0))).context("bind")?;
    let itself = sys::getsockname(&ready).context("getsockname")?;
    trace::explain("the datagram waits, unread: from now on every wait finds this socket readable at once");
    sys::sendto(&ready, b"x", itself, MsgFlags::empty()).context("sendto")?;
    Ok(ready)
}

/// Each way's median cost of one wait on `watched`: the ways take turns of [`TURN`] until
/// [`BUDGET`] has passed and each has made [`FEWEST_CALLS`] calls.
fn median_costs(watched: &mut Watched, ways: &[Way]) -> Result<Vec<(Way, Duration)>, String> {
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); ways.len()];
    let started = Instant::now();
    while started.elapsed() < BUDGET || times.iter().any(|t| t.len() < FEWEST_CALLS) {
        for (way, times) in ways.iter().zip(&mut times) {
            let turn = Instant::now();
            while times.len() < MOST_CALLS {
                let before = Instant::now();
                let ready = watched.wait(*way).context(way.name())?;
                times.push(before.elapsed());
                if ready != 1 {
                    return Err(format!("{} found {ready} descriptors ready, not 1", way.name()));
                }
                if turn.elapsed() >= TURN {
                    break;
                }
            }
        }
        if times.iter().all(|t| t.len() >= MOST_CALLS) {
            break;
        }
    }
    Ok(ways
        .iter()
        .zip(times)
        .map(|(way, mut times)| {
            times.sort();
            (*way, times[times.len() / 2])
        })
        .collect())
}

fn micros(time: Duration) -> f64 {
    time.as_secs_f64() * 1e6
}

/// The demo: the waits at every N, and the chart.
fn demo() -> Outcome {
    trace::set_actor("main");
    let limit = raise_descriptor_limit();
    let series = wait_costs(limit)?;
    let chart = scaling::svg(&series, &chart_note());
    match scaling::publish(&chart, &scaling::terminal(&series)) {
        Ok(path) => trace::say(format!(
            "the chart: {} (open it in a browser); below the trace, the same in characters; \
             `make lesson-16 ARGS=echo` measures socklab's echo loops with idle clients",
            scaling::shown(&path)
        )),
        Err(error) => trace::say(format!("the chart could not be written: {error}")),
    }
    Ok(())
}

/// The echo part: socklab's loops with idle clients, beside the last `make bench`.
fn echo_part() -> Outcome {
    trace::set_actor("main");
    let limit = raise_descriptor_limit();
    let echo = echo_with_idle_clients(limit)?;
    let table = scaling::echo_table(&echo, BUSY, scaling::last_bench().as_ref(), MEASURED);
    match scaling::leave_after_trace(&table) {
        Ok(()) => trace::say("below the trace, the figures beside your last `make bench`"),
        Err(error) => trace::say(format!("the figures could not be written: {error}")),
    }
    Ok(())
}

/// Part 1: each way's median cost of one wait at every N that fits the descriptor limit, and
/// at the largest, poll taken apart.
fn wait_costs(limit: usize) -> Result<Vec<Series>, String> {
    trace::say("1. one wait with N idle descriptors and one ready: first N = 10, each kind of call traced once");
    let looks = [('S', "#d08000"), ('P', "#c0304a"), ('E', "#2060c0"), ('C', "#309060")];
    let mut series: Vec<Series> = DRAWN
        .iter()
        .zip(looks)
        .map(|(way, (mark, colour))| Series {
            name: way.name(),
            mark,
            colour,
            points: Vec::new(),
        })
        .collect();
    let largest = SIZES.into_iter().filter(|n| n + BESIDES <= limit).max();
    for n in SIZES {
        if n + BESIDES > limit {
            trace::say(format!(
                "N = {}: skipped: RLIMIT_NOFILE's hard limit, {limit}, leaves no room (only root can raise it: ulimit -Hn)",
                thousands(n)
            ));
            continue;
        }
        let mut ways = DRAWN.to_vec();
        if Some(n) == largest {
            ways.extend([Way::PollSkipping, Way::PollReadyFirst]);
        }
        let costs = if n == SIZES[0] {
            let mut watched = Watched::open(n)?;
            show_one_wait_each(&mut watched)?;
            let ways = watched.can(&ways);
            let costs = trace::stage(|| median_costs(&mut watched, &ways));
            watched.close();
            costs?
        } else {
            trace::stage(|| -> Result<_, String> {
                let mut watched = Watched::open(n)?;
                let ways = watched.can(&ways);
                let costs = median_costs(&mut watched, &ways);
                watched.close();
                costs
            })?
        };
        let cost = |way: Way| costs.iter().find(|(w, _)| *w == way).map(|(_, time)| micros(*time));
        let shown: Vec<String> = DRAWN
            .iter()
            .map(|way| match cost(*way) {
                Some(us) => format!("{} {us:.2} µs", way.name()),
                None => format!("{} cannot (past FD_SETSIZE)", way.name()),
            })
            .collect();
        trace::measured(format!("N = {}: {}", thousands(n), shown.join(", ")));
        if let (Some(skipping), Some(asking), Some(all)) =
            (cost(Way::PollSkipping), cost(Way::PollReadyFirst), cost(Way::Poll))
        {
            trace::measured(format!(
                "poll at N = {} taken apart: {skipping:.1} µs to copy the array in and out (every fd -1: the kernel skips them); \
                 {asking:.1} µs when it also asks each socket whether it is ready (the ready one first: no wait queues); \
                 {all:.1} µs when it also hooks itself on each idle socket's wait queue and off again (the ready one last)",
                thousands(n)
            ));
        }
        for (index, way) in DRAWN.iter().enumerate() {
            if let Some(us) = cost(*way) {
                series[index].points.push((n, us));
            }
        }
    }
    for s in &series {
        if let (Some(first), Some(last)) = (s.points.first(), s.points.last()) {
            trace::measured(format!(
                "{}: {:.1} times as much at N = {} as at N = {}",
                s.name,
                last.1 / first.1,
                thousands(last.0),
                thousands(first.0)
            ));
        }
    }
    Ok(series)
}

/// One traced call of each kind on the N = 10 set, each with what it makes the kernel do.
fn show_one_wait_each(watched: &mut Watched) -> Result<(), String> {
    trace::explain(
        "select: all the bits below nfds go in, the kernel asks each socket in the set, and the set \
         comes back holding only the ready one",
    );
    watched.wait(Way::Select).context("select")?;
    trace::explain("poll: every entry goes in, the kernel asks each socket, and writes revents back into every entry");
    watched.wait(Way::Poll).context("poll")?;
    trace::explain(format!(
        "epoll: nothing goes in but the epoll descriptor; {} is on the kernel's ready list (epoll_ctl \
         found it readable as it added it; level-triggered, it stays there while unread), and only it \
         comes back",
        watched.ready.as_raw_fd()
    ));
    watched.wait(Way::Epoll).context("epoll_wait")?;
    trace::explain(
        "a loop that wants to know when it may write while a reply waits, and no longer once it is sent, \
         tells epoll each time: two system calls per wake that poll never makes (it edits its array)",
    );
    watched
        .interest(EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT)
        .context("epoll_ctl")?;
    trace::explain("and readable only again: the reply went out");
    watched.interest(EpollFlags::EPOLLIN).context("epoll_ctl")?;
    watched.wait(Way::Epoll).context("epoll_wait")?;
    trace::say(
        "the same calls again and again with the trace paused, the median of each: N = 10 here, \
         then 100, 1,000 and 10,000, each set opened and closed untraced",
    );
    Ok(())
}

/// Raises the soft RLIMIT_NOFILE to the hard one (untraced: lesson 12 shows the calls) and
/// returns the limit now in force: how many descriptors each process of the demo may hold.
fn raise_descriptor_limit() -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let limits = trace::stage(|| {
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map(|()| (soft, hard))
    });
    let needed = SIZES[SIZES.len() - 1] + BESIDES;
    match limits {
        Ok((soft, hard)) => {
            trace::measured(format!(
                "RLIMIT_NOFILE was {soft} soft, {hard} hard; the soft one raised to the hard (untraced: \
                 lesson 12 shows these calls). N = 10,000 needs {needed} descriptors here, and the echo \
                 part about as many in each of its two processes"
            ));
            usize::try_from(hard).unwrap_or(usize::MAX)
        }
        Err(error) => {
            trace::say(format!(
                "RLIMIT_NOFILE could not be raised ({error}): the demo keeps to 1,024"
            ));
            1024
        }
    }
}

/// The echo part: each of socklab's loops, a process of its own, with idle clients.
fn echo_with_idle_clients(limit: usize) -> Result<Vec<EchoRun>, String> {
    trace::say(format!(
        "2. socklab's echo server, each loop in a process of its own: {BUSY} clients in ping-pong (64 bytes \
         each way) for {} s, beside idle clients that connected first and say nothing",
        MEASURED.as_secs_f64()
    ));
    let mut rows = Vec::new();
    for idle in IDLE {
        for lp in scaling::LOOPS {
            let label = format!("{lp} + {} idle", thousands(idle));
            if lp == "select" && idle + BUSY + BESIDES > select::SETSIZE {
                trace::say(format!(
                    "{label}: not run: its clients would be descriptors past 1023 (FD_SETSIZE)"
                ));
                rows.push(EchoRun { lp, idle, rate: None });
                continue;
            }
            if idle + BUSY + BESIDES > limit {
                trace::say(format!("{label}: not run: RLIMIT_NOFILE's hard limit is {limit}"));
                rows.push(EchoRun { lp, idle, rate: None });
                continue;
            }
            // SAFETY: the demo's process has this one thread: its trace goes straight down the
            // collector's pipe (no printer thread), and the load runs here.
            let rate = unsafe { scaling::echo_rate(lp, idle, BUSY, WARMUP, MEASURED) }?;
            let cpu = rate.cpu_us_per_msg().unwrap_or(f64::NAN);
            trace::measured(format!(
                "{label}: {:.0} messages/s; the server spent {cpu:.1} µs of CPU on each",
                rate.msgs_per_s
            ));
            rows.push(EchoRun {
                lp,
                idle,
                rate: Some(rate),
            });
        }
    }
    Ok(rows)
}

/// The chart's foot: what was measured, where.
fn chart_note() -> String {
    let release = trace::stage(|| std::fs::read_to_string("/proc/sys/kernel/osrelease")).unwrap_or_default();
    format!(
        "Median of at least {FEWEST_CALLS} calls each. N idle UDP sockets and one ready (the last); timeout {TIMEOUT_MS} ms, \
         never reached. Linux {}, socklab lesson 16.",
        release.trim()
    )
}
