//! Lesson 11's own select loop (`lessons/11-select-chat-room/main.rs`, `lesson-11 server`) holds
//! the room to what the production loops are held to: the shared suite (`tests/programs/chat/mod.rs`)
//! with real peers, every case that applies to a loop with no spare descriptor and no echo
//! service. And what only a loop on C's fd_set meets: the FD_SETSIZE wall, reached with real
//! clients.
//!
//! Cost: about as much as `tests/programs/chat_select.rs`, a few seconds.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::chat::{Drain, LESSON_11, Peer, Server, WAIT};
use nix::sys::resource::{Resource, getrlimit, setrlimit};

chat_suite!(
    "lesson-11";
    three_real_peers_hear_each_other,
    a_flood_reaches_a_reader_whole_and_in_order,
    two_hundred_clients_say_fifty_lines_each_and_everyone_hears_everything,
    two_seed_clients_hear_each_other,
    a_line_over_the_limit_is_refused_and_its_sender_stays,
    exit_leaves_and_the_others_are_told,
    end_of_file_leaves_and_the_others_are_told,
    a_reset_in_mid_line_drops_only_that_client,
    control_characters_and_bad_utf8_arrive_harmless,
    urgent_data_drops_its_sender,
    the_chat_client_talks_and_leaves_with_exit,
    the_chat_client_leaves_at_end_of_input,
    the_chat_client_says_when_the_server_goes,
    with_no_descriptor_to_spare_accepting_pauses_instead_of_spinning,
);

/// The clients that fill descriptors 5 to 1022 of the server (3 is its listener, 4 the first
/// client, 1023 the last one below the wall).
const FILLERS: usize = 1018;

/// With the listener on 3 and clients on 4 to 1023, the next accept4 returns 1024, the first
/// number C's 1024-bit fd_set has no bit for (the server's descriptor limit is well above it:
/// FD_SETSIZE is not RLIMIT_NOFILE). That client is told why and closed; the loop neither
/// panics nor stops, the room never hears of it, and once someone leaves, the next newcomer
/// gets the freed number and is welcome.
#[test]
fn the_client_on_descriptor_1024_is_refused_and_the_room_goes_on() {
    // Room for the test's own 1022 sockets and the server's 1025 (it inherits the limit).
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < 4096 {
        setrlimit(Resource::RLIMIT_NOFILE, 4096.min(hard), hard).expect("raising the soft limit");
    }
    let mut server = Server::start(LESSON_11);
    let mut first = Peer::tcp(server.port);
    let fillers = Drain::new();
    let deadline = Instant::now() + 6 * WAIT;
    // In batches smaller than the backlog (128), each welcomed before the next comes.
    for joined in 1..=FILLERS {
        fillers.add(TcpStream::connect(("127.0.0.1", server.port)).expect("connecting"));
        if joined % 100 == 0 || joined == FILLERS {
            while fillers.welcomed() < joined {
                assert!(Instant::now() < deadline, "{} of {joined} welcomed", fillers.welcomed());
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    let mut last = Peer::tcp(server.port);

    let (told, refused_name) = refused(server.port);
    assert_eq!(
        told, "! sorry, the server cannot take you: descriptor 1024 is past select's limit of 1024 (FD_SETSIZE)\n",
        "what the client on 1024 heard before the close"
    );
    // Past 1,000 people the room announces no joins or leaves (chat::ANNOUNCE_LIMIT): what
    // shows it goes on is that lines still go round.
    last.say("still talking");
    first.expect_said(&last.name, "still talking");
    assert!(
        !first.transcript.iter().any(|line| line.contains(&refused_name)),
        "the room heard of the refused client: {:?}",
        first
            .transcript
            .iter()
            .filter(|line| line.contains(&refused_name))
            .collect::<Vec<_>>()
    );
    last.say("exit");
    last.expect_closed();
    let mut next = Peer::tcp(server.port);
    next.say("hello after the refusal");
    first.expect_said(&next.name, "hello after the refusal");
    assert_eq!(fillers.closed(), 0, "nobody inside was dropped");
    server.assert_alive();
}

/// Connects, reads until the server closes, and returns what it said and the name the room
/// would have given this client.
fn refused(port: u16) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting the client on 1024");
    let name = stream.local_addr().expect("its address").to_string();
    stream.set_read_timeout(Some(WAIT)).expect("SO_RCVTIMEO");
    let mut told = String::new();
    stream
        .read_to_string(&mut told)
        .expect("reading until the server closes");
    (told, name)
}
