//! The chat room on epoll: the shared suite (`tests/chat/mod.rs`) against
//! `socklab chat-server --mux epoll`.

mod util;
#[macro_use]
mod chat;

chat_suite!("epoll");
