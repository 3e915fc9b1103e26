//! The shape of one wait's cost (lesson 16; seed 003: select's and poll's cost "grows linearly"
//! with the number of descriptors, epoll's does not). Idle UDP sockets that nobody sends to,
//! and one more, the last, that is ready (a datagram waits in it, unread); one wait of each
//! kind on sets of 10, 1,000 and 10,000 of them, all open at once, timed in turns.
//!
//! Asserted, as ratios of medians taken in the same run, never as times:
//! - poll over 10,000 costs at least 10 times poll over 10. The kernel asks each of 1,000 times
//!   as many sockets whether it is ready (and hooks itself on each one's wait queue); on this
//!   machine the ratio is in the hundreds to thousands, so 10 holds on any machine that
//!   really does per-descriptor work, and fails only if it does not;
//! - epoll over 10,000 costs at most 3 times epoll over 10: only the ready one is looked at
//!   (on this machine the ratio is about 1); 3 leaves room for noise and a colder cache;
//! - select over 1,000 costs at least 5 times select over 10 (100 times the descriptors; about
//!   40 to 50 times here);
//! - where poll's time goes: the same 10,001 entries, every fd -1 but the ready one, cost at
//!   most a tenth of poll over the 10,001 sockets. The array is copied in and out all the same
//!   and the kernel steps over each entry, but asks nothing (poll(2): "If this field is
//!   negative, then the corresponding events field is ignored"); here it is a few hundredths.
//!
//! The calls of every size take turns, so noise on this shared machine falls on all of them.
//! Cost: opening 11,000 sockets and about half a second of waits.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, SockaddrIn, bind, getsockname, sendto, socket};

/// Every wait may sleep this long; none does.
const TIMEOUT_MS: u16 = 1000;
/// Turns: in each, every (way, size) makes calls for at least one call and up to [`TURN`].
const TURNS: usize = 40;
const TURN: Duration = Duration::from_millis(1);

/// N idle sockets and a ready one, watched every way.
struct Watched {
    _idle: Vec<OwnedFd>,
    ready: OwnedFd,
    entries: Vec<libc::pollfd>,
    skipping: Vec<libc::pollfd>,
    epoll: Epoll,
}

fn udp() -> OwnedFd {
    socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).expect("socket")
}

fn entry(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

impl Watched {
    fn open(n: usize) -> Watched {
        let idle: Vec<OwnedFd> = (0..n).map(|_| udp()).collect();
        let ready = udp();
        bind(ready.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).expect("bind");
        let itself: SockaddrIn = getsockname(ready.as_raw_fd()).expect("getsockname");
        sendto(ready.as_raw_fd(), b"x", &itself, MsgFlags::empty()).expect("sendto");
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll_create1");
        let mut entries = Vec::new();
        for fd in idle.iter().chain([&ready]) {
            epoll
                .add(fd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, 0))
                .expect("epoll_ctl");
            entries.push(entry(fd.as_raw_fd()));
        }
        let mut skipping = vec![entry(-1); n];
        skipping.push(entry(ready.as_raw_fd()));
        Watched {
            _idle: idle,
            ready,
            entries,
            skipping,
            epoll,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Way {
    Select,
    Poll,
    PollSkipping,
    Epoll,
}

/// One wait; the number of ready descriptors it found.
fn wait(way: Way, watched: &mut Watched) -> i32 {
    let ready = match way {
        Way::Select => {
            // SAFETY: an fd_set zeroed and then given descriptors below FD_SETSIZE (checked by
            // the caller's sizes: the highest is the ready one, under 1024), a valid timeval.
            unsafe {
                let mut set: libc::fd_set = std::mem::zeroed();
                for e in &watched.entries {
                    libc::FD_SET(e.fd, &mut set);
                }
                let mut timeout = libc::timeval { tv_sec: 1, tv_usec: 0 };
                let nfds = watched.ready.as_raw_fd() + 1;
                libc::select(nfds, &mut set, std::ptr::null_mut(), std::ptr::null_mut(), &mut timeout)
            }
        }
        Way::Poll | Way::PollSkipping => {
            let entries = if matches!(way, Way::Poll) {
                &mut watched.entries
            } else {
                &mut watched.skipping
            };
            // SAFETY: the pointer and length describe a live Vec of pollfd, borrowed mutably.
            unsafe {
                libc::poll(
                    entries.as_mut_ptr(),
                    entries.len() as libc::nfds_t,
                    i32::from(TIMEOUT_MS),
                )
            }
        }
        Way::Epoll => {
            let mut events = [EpollEvent::empty(); 4];
            let ready = watched
                .epoll
                .wait(&mut events, EpollTimeout::from(TIMEOUT_MS))
                .expect("epoll_wait");
            ready as i32
        }
    };
    assert_eq!(ready, 1, "{way:?} over {} found {ready} ready", watched.entries.len());
    ready
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Raises the soft RLIMIT_NOFILE to `wanted`; `Err` says why it cannot.
fn room_for(wanted: u64) -> Result<(), String> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit: {e}"))?;
    if soft >= wanted {
        return Ok(());
    }
    if hard < wanted {
        return Err(format!(
            "RLIMIT_NOFILE's hard limit is {hard}, below the {wanted} this test needs"
        ));
    }
    setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).map_err(|e| format!("setrlimit: {e}"))
}

#[test]
fn poll_and_select_cost_grows_with_idle_descriptors_and_epoll_does_not() {
    if let Err(reason) = room_for(11_200) {
        println!("skipped: {reason}");
        return;
    }
    // Opened smallest first: the 1,001 sockets of the select set lie below FD_SETSIZE.
    let mut small = Watched::open(10);
    let mut middle = Watched::open(1_000);
    assert!(middle.ready.as_raw_fd() < libc::FD_SETSIZE as i32);
    let mut large = Watched::open(10_000);

    let runs: [(Way, usize); 7] = [
        (Way::Select, 10),
        (Way::Select, 1_000),
        (Way::Poll, 10),
        (Way::Poll, 10_000),
        (Way::PollSkipping, 10_000),
        (Way::Epoll, 10),
        (Way::Epoll, 10_000),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); runs.len()];
    for _ in 0..TURNS {
        for ((way, n), times) in runs.iter().zip(&mut times) {
            let watched = match n {
                10 => &mut small,
                1_000 => &mut middle,
                _ => &mut large,
            };
            let turn = Instant::now();
            loop {
                let before = Instant::now();
                wait(*way, watched);
                times.push(before.elapsed());
                if turn.elapsed() >= TURN {
                    break;
                }
            }
        }
    }
    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    let shown: Vec<String> = runs
        .iter()
        .zip(&medians)
        .map(|((way, n), m)| format!("{way:?} over {n}: {m:?}"))
        .collect();
    let shown = shown.join(", ");
    let ratio = |a: usize, b: usize| medians[a].as_secs_f64() / medians[b].as_secs_f64();

    assert!(
        ratio(3, 2) >= 10.0,
        "poll over 10,000 is not 10 times poll over 10: {shown}"
    );
    assert!(
        ratio(6, 5) <= 3.0,
        "epoll over 10,000 is more than 3 times epoll over 10: {shown}"
    );
    assert!(
        ratio(1, 0) >= 5.0,
        "select over 1,000 is not 5 times select over 10: {shown}"
    );
    assert!(
        ratio(4, 3) <= 0.1,
        "poll stepping over 10,000 fds of -1 is not under a tenth of asking 10,000 sockets: {shown}"
    );
    println!("{shown}");
}
