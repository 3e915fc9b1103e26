//! The chat room on poll: the shared suite (`tests/chat/mod.rs`) against
//! `socklab chat-server --mux poll`.

chat_suite!("poll");
