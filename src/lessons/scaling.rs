//! Lesson 16's harness: its echo servers under load, the last `make bench`'s figures, and its chart.
//!
//! - [`echo_rate`]: one of socklab's echo loops in a process of its own, under `socklab
//!   load`'s ping-pong (shortened), with idle connections held open beside the busy ones;
//! - [`last_bench`]: the same cells from `target/bench/results.json`, if `make bench` ran;
//! - [`svg`] and [`terminal`]: wait cost against N on log axes, one line per way of waiting;
//! - [`publish`] writes the chart and the text shown after the trace under `target/lesson-16/`,
//!   and [`print_after_trace`] prints that text (`lessons::main_then`).
//!
//! All of it is plumbing for the lesson's measurements, not the lesson: its calls are staged.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use crate::load::json::Json;
use crate::load::pingpong::{self, PingPong};
use crate::serve::{self, echo::Echo};
use crate::trace;

/// socklab's echo loops, by the names `socklab echo-server --mux` and `make bench` use.
pub const LOOPS: [&str; 4] = ["select", "poll", "epoll", "epoll-et"];

/// Where the chart and the text shown after the trace go, under the build's `target/`.
const FOLDER: &str = "lesson-16";
const CHART: &str = "wait-cost.svg";
const AFTER_TRACE: &str = "after-trace.txt";

/// What one ping-pong run measured against one loop.
#[derive(Clone, Copy, Debug)]
pub struct EchoRate {
    pub msgs_per_s: f64,
    /// Cores the server used while it was measured (1.0: one core all the time).
    pub server_cpu: Option<f64>,
}

/// How long the last idle connection of a batch waits for its echo.
const PATIENCE: Duration = Duration::from_secs(10);

/// Runs socklab's echo loop `lp` (one of [`LOOPS`]) in a child process on a port of its own,
/// and `socklab load`'s ping-pong against it from here: `conns` connections each sending 64
/// bytes and waiting for all of them to come back, again and again, for `warmup` and then
/// `secs` (measured), while `idle` more connections, opened first, say nothing. Every byte is
/// checked, and so is the idle connections' silence; then the server is ended by its PID.
///
/// # Safety
/// It forks: call it while this process has one thread (a lesson's demo does), so that no
/// lock is held by a thread the child would lack.
///
/// # Errors
/// A load that could not run, a check that failed, a server that ended before its load did.
pub unsafe fn echo_rate(
    lp: &str,
    idle: usize,
    conns: usize,
    warmup: Duration,
    secs: Duration,
) -> Result<EchoRate, String> {
    trace::stage(|| {
        let listener = serve::listen(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let server = serve::local_addr(&listener)?;
        let demo = nix::unistd::getpid();
        // SAFETY: the caller promises one thread (above); the child only serves and exits.
        let child = match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
            ForkResult::Child => serve_and_exit(lp, listener, demo),
            ForkResult::Parent { child } => child,
        };
        drop(listener);
        let load = PingPong {
            server,
            conns,
            idle: 0,
            size: 64,
            warmup,
            secs,
            server_pid: Some(child.as_raw()),
        };
        let mut quiet = Vec::new();
        let report = open_idle(server, idle, &mut quiet).and_then(|()| {
            let report = pingpong::run(&load)?;
            still_quiet(&quiet)?;
            Ok(report)
        });
        let stopped = stop(child);
        close_all(quiet);
        let report = report.map_err(|e| format!("{lp}: {e}"))?;
        if !report.failures.is_empty() {
            return Err(format!("{lp}: {}", report.failures.first()));
        }
        stopped.map_err(|e| format!("{lp}: {e}"))?;
        let figure = |name: &str| report.figures.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        Ok(EchoRate {
            msgs_per_s: figure("msgs_per_s").unwrap_or(0.0),
            server_cpu: figure("server_cpu"),
        })
    })
}

/// Connections opened before the server must have taken them all: below its listen backlog
/// (128), so no handshake waits in a full queue.
const BATCH: usize = 100;

/// Opens `count` connections to the echo server at `server`, into `quiet`, that will say
/// nothing. A batch at a time; the last of each batch sends one byte and waits for it to come
/// back: a listener's queue is first in, first out, so that echo means the server has
/// accepted the whole batch. (`socklab load --idle` makes every connection echo a byte: the
/// same idle clients, at four more system calls each.)
fn open_idle(server: SocketAddr, count: usize, quiet: &mut Vec<TcpStream>) -> Result<(), String> {
    quiet.reserve(count);
    let goal = quiet.len() + count;
    while quiet.len() < goal {
        let batch = BATCH.min(goal - quiet.len());
        for _ in 0..batch {
            quiet.push(TcpStream::connect(server).map_err(|e| format!("connect {server}: {e}"))?);
        }
        let last = quiet.last_mut().expect("a batch is never empty");
        last.set_read_timeout(Some(PATIENCE))
            .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
        let mut byte = [0u8];
        last.write_all(b"!")
            .and_then(|()| last.read_exact(&mut byte))
            .map_err(|e| format!("idle connection {}: no echo of its one byte: {e}", quiet.len()))?;
    }
    Ok(())
}

/// Closes the idle connections: with one `close_range` when their numbers are consecutive
/// (they are, opened one after the other), else one by one.
fn close_all(quiet: Vec<TcpStream>) {
    let numbers: Vec<i32> = quiet.into_iter().map(IntoRawFd::into_raw_fd).collect();
    let (Some(&low), Some(&high)) = (numbers.iter().min(), numbers.iter().max()) else {
        return;
    };
    if usize::try_from(high - low).is_ok_and(|span| span + 1 == numbers.len()) {
        // SAFETY: every number from `low` to `high` is one of these connections (as many
        // numbers as connections, all distinct), which into_raw_fd gave up: nothing else owns
        // them. close_range(2) takes plain integers.
        unsafe { libc::syscall(libc::SYS_close_range, low as u32, high as u32, 0u32) };
    } else {
        for number in numbers {
            // SAFETY: each number is a connection's, given up by into_raw_fd above.
            drop(unsafe { OwnedFd::from_raw_fd(number) });
        }
    }
}

/// Whether every idle connection is still open and was told nothing: one poll over all of
/// them, timeout 0, finds none readable (no bytes, no end of file, no reset).
fn still_quiet(quiet: &[TcpStream]) -> Result<(), String> {
    let mut entries: Vec<libc::pollfd> = quiet
        .iter()
        .map(|stream| libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    match crate::sys::poll::poll_raw(&mut entries, 0) {
        Ok(0) => Ok(()),
        Ok(spoken) => Err(format!(
            "{spoken} of {} idle connections were closed or spoken to by the server",
            quiet.len()
        )),
        Err(e) => Err(format!("poll: {e}")),
    }
}

/// The forked child: serves the echo on `listener` with loop `lp` until the demo ends it, or
/// dies with the demo, `demo` being its pid.
fn serve_and_exit(lp: &str, listener: OwnedFd, demo: Pid) -> ! {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes plain integers: if the demo dies, so does this
    // server, rather than wait for clients forever.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if nix::unistd::getppid() != demo {
        // The demo died before prctl: nobody will send the signal.
        // SAFETY: as below.
        unsafe { libc::_exit(1) }
    }
    let options = serve::Options::default();
    let fd = listener.as_fd();
    let served = match lp {
        "select" => serve::select::serve(fd, Echo::new(), &options),
        "poll" => serve::poll::serve(fd, Echo::new(), &options),
        "epoll" => serve::epoll::serve(fd, Echo::new(), &options),
        "epoll-et" => serve::epoll_et::serve(fd, Echo::new(), &options),
        other => Err(format!("no loop called {other:?}")),
    };
    // SAFETY: _exit ends this child at once, without running its parent's exit handlers or
    // flushing buffers it shares with the parent.
    unsafe { libc::_exit(i32::from(served.is_err())) }
}

/// Ends the server by its PID and collects it. The kernel then closes its thousands of
/// sockets at once, rather than the server reading each one's end of file and closing it:
/// a graceful stop measures nothing here and costs four system calls a connection.
fn stop(child: Pid) -> Result<(), String> {
    match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => {}
        Ok(ended) => return Err(format!("the server ended before the load did: {ended:?}")),
        Err(e) => return Err(format!("waitpid: {e}")),
    }
    kill(child, Signal::SIGKILL).map_err(|e| format!("kill: {e}"))?;
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Signaled(_, Signal::SIGKILL, _)) => return Ok(()),
            Ok(other) => return Err(format!("the server ended with {other:?}, not SIGKILL")),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("waitpid: {e}")),
        }
    }
}

/// One cell of the last `make bench`: a loop's messages per second with some idle connections.
#[derive(Clone, Debug)]
pub struct BenchCell {
    pub lp: String,
    pub idle: usize,
    pub socklab: Option<f64>,
    pub c: Option<f64>,
}

/// The ping-pong cells with 50 busy connections from `target/bench/results.json`, and a line
/// saying which run they come from; None if `make bench` never wrote the file (or it is not
/// JSON).
pub fn last_bench() -> Option<(String, Vec<BenchCell>)> {
    let text = trace::stage(|| std::fs::read_to_string(target_dir()?.join("bench").join("results.json")).ok())?;
    let results = Json::parse(&text).ok()?;
    let Some(Json::List(rows)) = results.get("echo") else {
        return None;
    };
    let median = |row: &Json, server: &str| row.get(server).and_then(|s| s.number("median"));
    let cells = rows
        .iter()
        .filter_map(|row| {
            let idle = match row.text("cell")? {
                "pingpong-50" => 0,
                "pingpong-50-idle-900" => 900,
                "pingpong-50-idle-10000" => 10_000,
                _ => return None,
            };
            Some(BenchCell {
                lp: row.text("loop")?.to_string(),
                idle,
                socklab: median(row, "socklab"),
                c: median(row, "c"),
            })
        })
        .collect();
    let quick = matches!(results.get("quick"), Some(Json::Bool(true)));
    let (reps, secs) = (
        results.number("reps").unwrap_or(0.0),
        results.number("secs").unwrap_or(0.0),
    );
    let runs = if reps == 1.0 {
        format!("one run of {secs} s")
    } else {
        format!("medians of {reps} runs of {secs} s")
    };
    let about = format!(
        "your last `make bench`{} (commit {}, {runs})",
        if quick { " QUICK=1" } else { "" },
        results.text("commit").unwrap_or("?"),
    );
    Some((about, cells))
}

/// One cell of the demo's echo part: a loop, how many idle clients, and what it measured
/// (None: not run).
#[derive(Clone, Copy, Debug)]
pub struct EchoRun {
    pub lp: &'static str,
    pub idle: usize,
    pub rate: Option<EchoRate>,
}

impl EchoRate {
    /// The server's CPU time per message echoed, in microseconds: what each message cost the
    /// server, which other work on a shared machine disturbs far less than the rate.
    pub fn cpu_us_per_msg(&self) -> Option<f64> {
        let cpu = self.server_cpu.filter(|cpu| *cpu > 0.0)?;
        (self.msgs_per_s > 0.0).then(|| cpu / self.msgs_per_s * 1e6)
    }
}

/// `61.2k`: a rate, short; `—` for none.
fn short(value: Option<f64>) -> String {
    value.map_or("—".into(), |v| format!("{:.1}k", v / 1e3))
}

/// The echo runs as a table, a row per loop and number of idle clients, with the last `make
/// bench`'s figures for the same cells beside them (socklab's loop, and the same loop written
/// plainly in C), when there are any.
pub fn echo_table(runs: &[EchoRun], busy: usize, bench: Option<&(String, Vec<BenchCell>)>, secs: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Echo, {busy} clients in ping-pong beside idle ones:");
    let _ = writeln!(
        out,
        "  demo: messages per second in this run, {} s a loop; CPU: the server's CPU time per message",
        secs.as_secs_f64()
    );
    match bench {
        Some((about, _)) => {
            let _ = writeln!(
                out,
                "  bench: messages per second in {about}; C: the same loop written plainly in C"
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  bench: no target/bench/results.json: `make bench` measures the same cells longer, beside C and mio"
            );
        }
    }
    let _ = writeln!(out, "\n{:<24}{:>9}{:>10}{:>10}{:>10}", "", "demo", "CPU", "bench", "C");
    for &EchoRun { lp, idle, rate } in runs {
        let cell = bench.and_then(|(_, cells)| cells.iter().find(|c| c.lp == lp && c.idle == idle));
        let cpu = rate
            .and_then(|r| r.cpu_us_per_msg())
            .map_or("—".into(), |us| format!("{us:.0} µs"));
        let _ = writeln!(
            out,
            "{:<24}{:>9}{:>10}{:>10}{:>10}",
            format!("{lp} + {} idle", thousands(idle)),
            short(rate.map(|r| r.msgs_per_s)),
            cpu,
            short(cell.and_then(|c| c.socklab)),
            short(cell.and_then(|c| c.c)),
        );
    }
    out
}

/// One line of the chart: a way of waiting, its mark, and its cost at each N (µs).
pub struct Series {
    pub name: &'static str,
    /// The letter the terminal chart draws it with; its points in capitals.
    pub mark: char,
    /// Its colour in the SVG.
    pub colour: &'static str,
    pub points: Vec<(usize, f64)>,
}

/// The chart's ranges: N and the cost, both as powers of ten.
struct Axes {
    x: (f64, f64),
    y: (i32, i32),
}

impl Axes {
    fn of(series: &[Series]) -> Option<Axes> {
        let points = || {
            series
                .iter()
                .flat_map(|s| s.points.iter())
                .filter(|(n, us)| *n > 0 && *us > 0.0)
        };
        let (lo_n, hi_n) = points().fold((usize::MAX, 0), |(lo, hi), (n, _)| (lo.min(*n), hi.max(*n)));
        let (lo_us, hi_us) = points().fold((f64::MAX, 0.0f64), |(lo, hi), (_, us)| (lo.min(*us), hi.max(*us)));
        if lo_n >= hi_n || hi_us <= 0.0 {
            return None;
        }
        let bottom = lo_us.log10().floor() as i32;
        let top = (hi_us.log10().ceil() as i32).max(bottom + 1);
        Some(Axes {
            x: ((lo_n as f64).log10(), (hi_n as f64).log10()),
            y: (bottom, top),
        })
    }

    /// 0.0 at the smallest N, 1.0 at the largest.
    fn across(&self, n: f64) -> f64 {
        (n.log10() - self.x.0) / (self.x.1 - self.x.0)
    }

    /// 0.0 at the top decade, 1.0 at the bottom one.
    fn down(&self, us: f64) -> f64 {
        (f64::from(self.y.1) - us.log10()) / f64::from(self.y.1 - self.y.0)
    }
}

/// `10 µs`, `0.1 µs`, `1 ms`: a power of ten of microseconds.
fn decade(power: i32) -> String {
    match power {
        p if p < 0 => format!("{} µs", 10f64.powi(p)),
        p if p < 3 => format!("{} µs", 10i64.pow(p as u32)),
        p if p < 6 => format!("{} ms", 10i64.pow((p - 3) as u32)),
        p => format!("{} s", 10i64.pow((p - 6) as u32)),
    }
}

/// `10,000`: a count with thousands separated.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The chart as an SVG document: cost of one wait against N, both axes logarithmic, a line
/// and markers per series, select's FD_SETSIZE ceiling, and `note` at the foot.
pub fn svg(series: &[Series], note: &str) -> String {
    let (width, height) = (820.0, 530.0);
    let (left, right, top, bottom) = (90.0, 700.0, 60.0, 430.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="30" font-size="17" font-weight="bold">One wait call, one descriptor ready, the others idle</text>"#
    );
    let Some(axes) = Axes::of(series) else {
        let _ = writeln!(out, r#"<text x="{left}" y="80">no measurements to draw</text></svg>"#);
        return out;
    };
    let x = |n: f64| left + axes.across(n) * (right - left);
    let y = |us: f64| top + axes.down(us) * (bottom - top);
    // Grid: every power of ten, fainter lines at 2..9 times it.
    for power in axes.y.0..=axes.y.1 {
        let at = y(10f64.powi(power));
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{at:.1}" x2="{right}" y2="{at:.1}" stroke="#bbb"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left - 8.0,
            at + 4.0,
            decade(power)
        );
        for step in 2..10 {
            let value = f64::from(step) * 10f64.powi(power);
            if power < axes.y.1 {
                let at = y(value);
                let _ = writeln!(
                    out,
                    r##"<line x1="{left}" y1="{at:.1}" x2="{right}" y2="{at:.1}" stroke="#eee"/>"##
                );
            }
        }
    }
    let mut n = 10f64.powf(axes.x.0.ceil());
    while n <= 10f64.powf(axes.x.1) * 1.0001 {
        let at = x(n);
        let _ = writeln!(
            out,
            r##"<line x1="{at:.1}" y1="{top}" x2="{at:.1}" y2="{bottom}" stroke="#bbb"/><text x="{at:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            bottom + 20.0,
            thousands(n.round() as usize)
        );
        n *= 10.0;
    }
    let ceiling = x(1024.0);
    if (left..=right).contains(&ceiling) {
        let _ = writeln!(
            out,
            r##"<line x1="{ceiling:.1}" y1="{top}" x2="{ceiling:.1}" y2="{bottom}" stroke="#c08000" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#c08000">FD_SETSIZE: select stops here</text>"##,
            ceiling - 6.0,
            top + 18.0
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        right - left,
        bottom - top
    );
    let dashes = ["", r#" stroke-dasharray="9 5""#, r#" stroke-dasharray="2 4""#];
    let _ = writeln!(
        out,
        r##"<rect x="{:.1}" y="{:.1}" width="190" height="{:.1}" fill="white" stroke="#999"/>"##,
        left + 6.0,
        top + 8.0,
        22.0 * series.len() as f64 + 6.0
    );
    for (index, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(n, us)| format!("{:.1},{:.1}", x(n as f64), y(us)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5"{}/>"#,
            points.join(" "),
            s.colour,
            dashes[index % dashes.len()]
        );
        for &(n, us) in &s.points {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4.5" fill="{}"><title>{}, N = {}: {us:.2} µs</title></circle>"#,
                x(n as f64),
                y(us),
                s.colour,
                s.name,
                thousands(n)
            );
        }
        if let Some(&(n, us)) = s.points.last() {
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" fill="{}">{us:.1} µs</text>"#,
                x(n as f64) + 8.0,
                y(us) + 4.0,
                s.colour
            );
        }
        // The legend, in the plot's top left corner: the costs grow to the right.
        let row = top + 22.0 + 22.0 * index as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{row:.1}" x2="{:.1}" y2="{row:.1}" stroke="{}" stroke-width="2.5"{}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            left + 14.0,
            left + 46.0,
            s.colour,
            dashes[index % dashes.len()],
            left + 54.0,
            row + 4.0,
            s.name
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">N: idle descriptors watched (log scale)</text>"#,
        (left + right) / 2.0,
        bottom + 45.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">one wait call, median (log scale)</text>"#,
        (top + bottom) / 2.0
    );
    // The note at the foot, in lines of at most 120 characters, broken between sentences.
    let mut lines = vec![String::new()];
    for sentence in note.split_inclusive(". ") {
        let last = lines.last_mut().expect("never empty");
        if !last.is_empty() && last.len() + sentence.len() > 120 {
            lines.push(String::new());
        }
        lines.last_mut().expect("never empty").push_str(sentence);
    }
    for (index, line) in lines.iter().enumerate() {
        let _ = writeln!(
            out,
            r##"<text x="{left}" y="{:.1}" font-size="11" fill="#555">{}</text>"##,
            height - 12.0 - 15.0 * (lines.len() - 1 - index) as f64,
            escape(line.trim_end())
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Columns and rows of the terminal chart's plotting area.
const COLUMNS: usize = 61;
const ROWS: usize = 16;

/// The same chart in characters: each series a trail of its letter, its measured points in
/// capitals (`*` where two meet), log axes labelled by powers of ten.
pub fn terminal(series: &[Series]) -> String {
    let Some(axes) = Axes::of(series) else {
        return "no measurements to draw\n".into();
    };
    let column = |n: f64| (axes.across(n) * (COLUMNS - 1) as f64).round() as usize;
    let row = |us: f64| (axes.down(us).clamp(0.0, 1.0) * (ROWS - 1) as f64).round() as usize;
    let mut grid = vec![vec![' '; COLUMNS]; ROWS];
    for s in series {
        let trail = s.mark.to_ascii_lowercase();
        for pair in s.points.windows(2) {
            let ((n0, us0), (n1, us1)) = (pair[0], pair[1]);
            let (c0, c1) = (column(n0 as f64), column(n1 as f64));
            // Between two points the line is straight on log axes: log(cost) grows evenly.
            let trail_at = (c0..=c1.min(COLUMNS - 1)).map(|c| {
                let t = if c1 > c0 {
                    (c - c0) as f64 / (c1 - c0) as f64
                } else {
                    0.0
                };
                (row(10f64.powf(us0.log10() + t * (us1.log10() - us0.log10()))), c)
            });
            for (r, c) in trail_at {
                if grid[r][c] == ' ' {
                    grid[r][c] = trail;
                }
            }
        }
    }
    for s in series {
        for &(n, us) in &s.points {
            let cell = &mut grid[row(us)][column(n as f64).min(COLUMNS - 1)];
            *cell = if cell.is_ascii_uppercase() && *cell != s.mark {
                '*'
            } else {
                s.mark
            };
        }
    }
    let labels: Vec<(usize, String)> = (axes.y.0..=axes.y.1)
        .map(|power| (row(10f64.powi(power)), decade(power)))
        .collect();
    let mut out = String::new();
    let _ = writeln!(out, "{:>9}one wait call, median (log scale)", "");
    for (r, line) in grid.iter().enumerate() {
        let label = labels.iter().find(|(at, _)| *at == r);
        let (text, axis) = label.map_or((String::new(), '│'), |(_, text)| (text.clone(), '┤'));
        let _ = writeln!(out, "{text:>8} {axis}{}", line.iter().collect::<String>().trim_end());
    }
    let mut axis: Vec<char> = std::iter::repeat_n('─', COLUMNS).collect();
    let mut ticks = String::new();
    let mut n = 10f64.powf(axes.x.0.ceil());
    while n <= 10f64.powf(axes.x.1) * 1.0001 {
        let c = column(n).min(COLUMNS - 1);
        axis[c] = '┬';
        let text = thousands(n.round() as usize);
        let start = (c + 1)
            .saturating_sub(text.len().div_ceil(2))
            .max(ticks.chars().count() + 1);
        ticks.push_str(&" ".repeat(start.saturating_sub(ticks.chars().count())));
        ticks.push_str(&text);
        n *= 10.0;
    }
    let _ = writeln!(out, "{:>8} └{}", "", axis.iter().collect::<String>());
    let _ = writeln!(out, "{:>9}{ticks}   N: idle descriptors (log scale)", "");
    let legend: Vec<String> = series.iter().map(|s| format!("{} {}", s.mark, s.name)).collect();
    let _ = writeln!(out, "{:>9}{}   (* where two meet)", "", legend.join("   "));
    out
}

/// The build's `target/` folder: this program is `target/<profile>/examples/lesson-16`.
fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let examples = exe.parent()?;
    if examples.file_name()? != "examples" {
        return None;
    }
    examples.parent()?.parent().map(Path::to_path_buf)
}

/// `target/lesson-16/NAME` as the learner would type it: relative to the current folder
/// when it lies below it.
pub fn shown(path: &Path) -> String {
    let here = std::env::current_dir().ok();
    here.and_then(|here| path.strip_prefix(here).ok().map(|p| p.display().to_string()))
        .unwrap_or_else(|| path.display().to_string())
}

/// Writes the SVG chart and the text [`print_after_trace`] shows into `target/lesson-16/`
/// (or a folder under the system's temporary one, if this program is not in a `target/`);
/// returns the chart's path.
///
/// # Errors
/// The folder or a file could not be written.
pub fn publish(chart: &str, after_trace: &str) -> Result<PathBuf, String> {
    let path = write_out(CHART, chart)?;
    write_out(AFTER_TRACE, after_trace)?;
    Ok(path)
}

/// Writes only the text [`print_after_trace`] shows (a part with no chart).
///
/// # Errors
/// The folder or the file could not be written.
pub fn leave_after_trace(text: &str) -> Result<(), String> {
    write_out(AFTER_TRACE, text).map(drop)
}

/// Writes `text` as `name` in the lesson's folder, whole and then renamed into place, so two
/// demos at once never leave half a file; returns its path.
fn write_out(name: &str, text: &str) -> Result<PathBuf, String> {
    trace::stage(|| {
        let folder = target_dir().unwrap_or_else(std::env::temp_dir).join(FOLDER);
        std::fs::create_dir_all(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        let path = folder.join(name);
        let partial = folder.join(format!(".{name}.{}", std::process::id()));
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    })
}

/// Prints the text the demo left for after its trace (the chart in characters, the echo
/// figures beside the last `make bench`), if this run wrote it: after `since`.
pub fn print_after_trace(since: SystemTime) {
    let Some(folder) = target_dir().or_else(|| Some(std::env::temp_dir())) else {
        return;
    };
    let path = folder.join(FOLDER).join(AFTER_TRACE);
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|written| written >= since);
    if let (true, Ok(text)) = (fresh, std::fs::read_to_string(&path)) {
        print!("\n{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Series> {
        vec![
            Series {
                name: "poll",
                mark: 'P',
                colour: "red",
                points: vec![(10, 1.0), (100, 3.0), (1000, 30.0), (10_000, 1000.0)],
            },
            Series {
                name: "epoll",
                mark: 'E',
                colour: "green",
                points: vec![(10, 1.0), (100, 0.9), (1000, 0.9), (10_000, 1.1)],
            },
        ]
    }

    #[test]
    fn the_terminal_chart_puts_the_points_where_the_log_axes_say() {
        let chart = terminal(&sample());
        let lines: Vec<&str> = chart.lines().collect();
        // The top row is the top decade, 1 ms: poll's last point, at the right edge.
        assert!(lines[1].starts_with("    1 ms ┤"), "{chart}");
        assert!(lines[1].ends_with('P'), "{chart}");
        // Both start at 1 µs at N = 10: the same cell.
        let one_us = lines.iter().find(|l| l.starts_with("    1 µs ┤")).expect(&chart);
        assert!(one_us.contains('*'), "{chart}");
        assert!(chart.contains("10,000"), "{chart}");
        assert!(chart.contains("P poll   E epoll"), "{chart}");
    }

    #[test]
    fn the_svg_has_a_line_and_a_point_per_measurement() {
        let svg = svg(&sample(), "a <note> & more");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 8);
        assert!(svg.contains("poll, N = 10,000: 1000.00 µs"));
        assert!(svg.contains("a &lt;note&gt; &amp; more"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn counts_and_decades_read_as_people_write_them() {
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(decade(-1), "0.1 µs");
        assert_eq!(decade(2), "100 µs");
        assert_eq!(decade(3), "1 ms");
    }
}
