//! The kernel's side of the lessons' claims, each made to happen in this test process on
//! loopback: one module per claim (`tests/kernel/udp.rs`, `backlog.rs`, ...), all in one test
//! program so that it is built and linked once (`cargo test --test kernel udp::` runs one).
//!
//! What shares a process here must not disturb the others: no module forks (a child would hold
//! copies of every other test's sockets: `tests/forks/`), changes a signal's disposition or mask
//! that another module relies on, lowers RLIMIT_NOFILE, holds a thousand descriptors, or needs
//! descriptor numbers no other test takes (those are programs of their own: `tests/signals.rs`,
//! `fd_setsize.rs`, `level_vs_edge.rs`, `reactor.rs`, `scale.rs`). The tests open their sockets and
//! pipes close-on-exec, so the programs one test starts (python3, strace, socat, nc) inherit
//! none of another test's.

#[path = "../util/mod.rs"]
mod util;

mod accept_after_reset;
mod addresses;
mod autotuning;
mod backlog;
mod byte_stream;
mod close_in_context;
mod connect_returns;
mod nonblocking;
mod partial_io;
mod poll_revents;
mod reset;
mod reuseaddr;
mod select_loop;
mod select_past_1024;
mod select_rewrites;
mod sockopts;
mod udp;
mod unix_sockets;
