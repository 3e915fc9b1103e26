//! The chat room on poll: the shared suite (`tests/chat/mod.rs`) against
//! `socklab chat-server --mux poll`.

mod util;
#[macro_use]
mod chat;

chat_suite!("poll");
