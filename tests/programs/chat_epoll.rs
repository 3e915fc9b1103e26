//! The chat room on epoll: the shared suite (`tests/chat/mod.rs`) against
//! `socklab chat-server --mux epoll`.

chat_suite!("epoll");
