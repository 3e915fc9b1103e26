//! The programs' side of the lessons' claims: `socklab`, the lesson programs and real peers
//! (nc, socat, Python, strace) run as processes and talked to on loopback. One module per
//! subject (`chat_select.rs`, `stop.rs`, `trace_vs_strace.rs`, ...), all in one test program so
//! that it is built and linked once (`cargo test --test programs stop::` runs one module).
//!
//! The tests here start processes and hold sockets; they change nothing the process shares
//! beyond raising the soft descriptor limit (`chat_lesson11.rs`) and the in-process trace's
//! mode (`trace_order.rs`, which only this module's trace uses). std opens its sockets and
//! pipes close-on-exec, so a child one test starts inherits none of another test's.

#[path = "../util/mod.rs"]
mod util;

#[macro_use]
mod chat;

mod chat_epoll;
mod chat_epoll_et;
mod chat_lesson11;
mod chat_poll;
mod chat_select;
mod concurrency;
mod echo_peers;
mod explain;
mod lessons;
mod load;
mod poll_epoll_echo;
mod python_programs;
mod readme_traces;
mod select_echo;
mod stop;
mod trace_order;
mod trace_sinks;
mod trace_vs_strace;
