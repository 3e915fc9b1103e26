//! socklab: Linux network programming at the level of the system call.
//!
//! - [`trace`]: every call recorded and printed as strace prints it, with a note;
//! - [`sys`]: the traced wrappers over nix that lessons call;
//! - [`service`]: what an event loop drives, with no I/O in it (the sans-I/O interface);
//! - [`chat`]: the chat room, a service;
//! - [`serve`]: one driver over four backends (select, poll, epoll level- and edge-triggered)
//!   that runs a service, the echo service, and the chat client;
//! - [`lessons`]: the lesson table, and what every lesson's command line accepts;
//! - [`context`]: an error as one line, saying what was being done;
//! - [`load`]: `socklab load`, the load generator `make bench` measures the loops with;
//! - [`explain`]: `socklab explain -- CMD`: any program's system calls, explained the same way.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod chat;
pub mod context;
pub mod explain;
pub mod lessons;
pub mod load;
pub mod serve;
pub mod service;
pub mod sys;
pub mod trace;
