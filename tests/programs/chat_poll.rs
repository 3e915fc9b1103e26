//! The chat room on poll: the shared suite (`tests/programs/chat/mod.rs`) against
//! `socklab chat-server --mux poll`.

chat_suite!("poll");
