//! The room driven by hand, as a loop would drive it, with a clock that always says noon.

use super::*;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A room with clients 1..=n from ports 40001.., everything said so far already read.
fn room_of(n: ClientId) -> Room {
    let mut room = Room::new(|| "12:00:00".to_string());
    for id in 1..=n {
        room.join(id, addr(40000 + id as u16));
    }
    for id in 1..=n {
        read(&mut room, id);
    }
    room
}

/// Everything waiting for `id`, taken as a loop would: write it all, then report it written.
fn read(room: &mut Room, id: ClientId) -> String {
    let text = String::from_utf8(room.pending(id).to_vec()).unwrap();
    room.wrote(id, text.len());
    text
}

#[test]
fn a_line_reaches_everyone_else_but_not_the_sender() {
    let mut room = room_of(3);
    room.received(1, b"hello\n");
    assert_eq!(read(&mut room, 1), "");
    assert_eq!(read(&mut room, 2), "12:00:00 127.0.0.1:40001 say: hello\n");
    assert_eq!(read(&mut room, 3), "12:00:00 127.0.0.1:40001 say: hello\n");
}

#[test]
fn a_newcomer_is_welcomed_and_the_others_are_told() {
    let mut room = room_of(1);
    room.join(2, addr(40002));
    let welcome = "12:00:00 * welcome, you are 127.0.0.1:40002; say something, or /nick NAME, /who, exit\n";
    assert_eq!(read(&mut room, 2), welcome);
    assert_eq!(read(&mut room, 1), "12:00:00 * 127.0.0.1:40002 joined\n");
}

#[test]
fn exit_in_any_case_leaves_and_the_rest_of_that_read_goes_nowhere() {
    let mut room = room_of(2);
    room.received(1, b"  Exit \r\nsaid after leaving\n");
    assert_eq!(room.take_closes(), [(1, CloseReason::Exit)]);
    assert_eq!(read(&mut room, 2), "12:00:00 * 127.0.0.1:40001 left (exit)\n");
    assert!(!room.wants_write(1));
    room.received(1, b"ghost\n");
    room.eof(1);
    assert_eq!(
        room.take_closes(),
        [],
        "a client is closed once; later events about it are ignored"
    );
    assert_eq!(read(&mut room, 2), "");
}

#[test]
fn end_of_file_leaves_and_loses_only_its_own_partial_line() {
    let mut room = room_of(3);
    room.received(1, b"half a li");
    room.received(2, b"whole ");
    room.eof(1);
    room.received(2, b"line\n");
    assert_eq!(room.take_closes(), [(1, CloseReason::EndOfFile)]);
    let left = "12:00:00 * 127.0.0.1:40001 left (end of file)\n";
    assert_eq!(read(&mut room, 2), left);
    assert_eq!(
        read(&mut room, 3),
        format!("{left}12:00:00 127.0.0.1:40002 say: whole line\n")
    );
}

#[test]
fn a_failed_connection_is_forgotten_mid_line() {
    let mut room = room_of(2);
    room.received(1, b"never finish");
    room.failed(1);
    assert_eq!(room.take_closes(), [(1, CloseReason::Failed)]);
    assert_eq!(
        read(&mut room, 2),
        "12:00:00 * 127.0.0.1:40001 left (connection failed)\n"
    );
}

#[test]
fn nick_renames_and_is_checked_for_length_characters_and_uniqueness() {
    let mut room = room_of(3);
    room.received(1, b"/nick alice\n");
    assert_eq!(read(&mut room, 1), "12:00:00 * you are now alice\n");
    assert_eq!(read(&mut room, 2), "12:00:00 * 127.0.0.1:40001 is now alice\n");
    room.received(1, b"hi\n");
    assert_eq!(read(&mut room, 2), "12:00:00 alice say: hi\n");

    room.received(2, b"/nick ALICE\n");
    assert_eq!(read(&mut room, 2), "12:00:00 ! ALICE is taken\n");
    let bad = "12:00:00 ! a nickname is 1 to 16 letters, digits, '-' or '_'\n";
    for attempt in [
        "/nick\n",
        "/nick 127.0.0.1:1\n",
        "/nick a b\n",
        "/nick seventeen_letters\n",
        "/nick \u{e9}\n",
    ] {
        room.received(2, attempt.as_bytes());
        assert_eq!(read(&mut room, 2), bad, "{attempt:?}");
    }
    room.received(2, b"/nick bob-_16_letters_\n");
    assert_eq!(read(&mut room, 2), "12:00:00 * you are now bob-_16_letters_\n");
    let expected = "12:00:00 * 127.0.0.1:40001 is now alice\n12:00:00 alice say: hi\n\
                    12:00:00 * 127.0.0.1:40002 is now bob-_16_letters_\n";
    assert_eq!(read(&mut room, 3), expected, "failed attempts are told to nobody else");
}

#[test]
fn who_answers_only_the_asker() {
    let mut room = room_of(3);
    room.received(2, b"/nick bob\n");
    for id in 1..=3 {
        read(&mut room, id);
    }
    room.received(1, b"/who\n");
    assert_eq!(
        read(&mut room, 1),
        "12:00:00 * in the room: 127.0.0.1:40001 (you), bob, 127.0.0.1:40003\n"
    );
    assert_eq!(read(&mut room, 2), "");
    assert_eq!(read(&mut room, 3), "");
}

#[test]
fn unknown_commands_and_blank_lines() {
    let mut room = room_of(2);
    room.received(1, b"/shout hi\n\n   \r\n");
    assert_eq!(
        read(&mut room, 1),
        "12:00:00 ! unknown command /shout; try /nick NAME, /who, exit\n"
    );
    assert_eq!(read(&mut room, 2), "", "neither is broadcast");
}

#[test]
fn a_line_split_across_reads_and_crlf_endings() {
    let mut room = room_of(2);
    room.received(1, b"hel");
    assert!(!room.wants_write(2));
    room.received(1, b"lo\r");
    room.received(1, b"\nsecond\r\nthi");
    let said = "12:00:00 127.0.0.1:40001 say: hello\n12:00:00 127.0.0.1:40001 say: second\n";
    assert_eq!(read(&mut room, 2), said);
    room.received(1, b"rd\n");
    assert_eq!(read(&mut room, 2), "12:00:00 127.0.0.1:40001 say: third\n");
}

#[test]
fn an_over_long_line_is_refused_and_discarded_up_to_its_newline() {
    let mut room = room_of(2);
    room.received(1, &[b'x'; MAX_LINE + 1]);
    assert_eq!(
        read(&mut room, 1),
        "12:00:00 ! line longer than 1024 bytes; ignored up to its newline\n"
    );
    room.received(1, b"still the long line\nfine\n");
    assert_eq!(read(&mut room, 2), "12:00:00 127.0.0.1:40001 say: fine\n");
    assert_eq!(read(&mut room, 1), "");
    assert_eq!(room.take_closes(), [], "the client stays");
}

#[test]
fn control_characters_and_invalid_utf8_never_reach_another_terminal() {
    let mut room = room_of(2);
    room.received(1, b"\x1b[2J\x1b[31mred\x07 \xff\xfe\tok\x7f\n");
    let got = read(&mut room, 2);
    assert_eq!(
        got,
        "12:00:00 127.0.0.1:40001 say: \u{FFFD}[2J\u{FFFD}[31mred\u{FFFD} \u{FFFD}\u{FFFD}\tok\u{FFFD}\n"
    );
    assert!(!got.contains('\x1b'));
}

#[test]
fn a_slow_reader_is_dropped_at_the_bound_and_nobody_else_misses_a_line() {
    // 1 talks, 2 reads everything, 3 never reads.
    let mut room = room_of(3);
    let stamped = format!("12:00:00 127.0.0.1:40001 say: {}\n", "y".repeat(100));
    let (mut sent, mut heard, mut last) = (0, 0, String::new());
    let mut closes = Vec::new();
    while closes.is_empty() {
        room.received(1, format!("{}\n", "y".repeat(100)).as_bytes());
        sent += 1;
        assert!(room.pending(3).len() <= MAX_QUEUE);
        last = read(&mut room, 2);
        heard += last.lines().filter(|line| line.contains(" say: ")).count();
        closes = room.take_closes();
    }
    assert_eq!(closes, [(3, CloseReason::TooSlow)]);
    assert_eq!(
        sent,
        MAX_QUEUE / stamped.len() + 1,
        "dropped by the first line that would not fit"
    );
    assert_eq!(
        heard, sent,
        "the reader who keeps up got every line, the one that overflowed too"
    );
    assert!(last.ends_with(&format!("{stamped}12:00:00 * 127.0.0.1:40003 left (too slow)\n")));
    assert!(!room.wants_write(3));
    room.received(1, b"still here\n");
    assert_eq!(read(&mut room, 2), "12:00:00 127.0.0.1:40001 say: still here\n");
}

#[test]
fn wants_write_is_true_exactly_while_output_waits() {
    let mut room = Room::new(|| "12:00:00".to_string());
    assert!(!room.wants_write(1), "an unknown client wants nothing");
    room.join(1, addr(40001));
    assert!(room.wants_write(1), "the welcome waits");
    let waiting = room.pending(1).to_vec();
    room.wrote(1, 5);
    assert!(room.wants_write(1));
    assert_eq!(
        room.pending(1),
        &waiting[5..],
        "a short write leaves the rest, in order"
    );
    room.wrote(1, waiting.len() - 5);
    assert!(!room.wants_write(1));
    room.join(2, addr(40002));
    assert!(room.wants_write(1), "the join notice waits");
}
