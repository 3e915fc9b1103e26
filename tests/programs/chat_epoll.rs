//! The chat room on epoll: the shared suite (`tests/programs/chat/mod.rs`) against
//! `socklab chat-server --mux epoll`.

chat_suite!("epoll");
