//! Claims whose tests fork children of their own from this test process: what fork copies
//! (`fork.rs`), the thundering herd (`herd.rs`, `herd_epoll.rs`), SIGPIPE (`sigpipe.rs`). One
//! module per claim, in one test program (`cargo test --test forks herd::` runs one).
//!
//! A forked child gets a copy of every descriptor of this process, other tests' sockets
//! included, and a copy keeps a connection open after the test that owns it closed it. So every
//! test here holds one lock, `util::herd::FORKING`, while it forks or has children: they take
//! turns (they are short), and nothing else shares this process.

#[path = "../util/mod.rs"]
mod util;

mod fork;
mod herd;
mod herd_epoll;
mod sigpipe;
