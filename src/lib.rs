//! socklab: Linux network programming at the level of the system call.
//!
//! - [`trace`]: every call recorded and printed as strace prints it, with a note;
//! - [`sys`]: the traced wrappers over nix that lessons call;
//! - [`chat`]: the chat room with no I/O in it, which every event loop drives;
//! - [`serve`]: the event loops (select, later poll and epoll) that drive the room, and its client;
//! - [`lessons`]: the lesson table, and what every lesson's command line accepts;
//! - [`explain`]: `socklab explain -- CMD`: any program's system calls, explained the same way.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod chat;
pub mod explain;
pub mod lessons;
pub mod serve;
pub mod sys;
pub mod trace;
