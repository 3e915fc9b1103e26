//! The room driven by hand, as a loop would drive it, with a clock that always says noon.

use super::*;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A room with clients 1..=n from ports 40001.., everything said so far already read.
fn room_of(n: ClientId) -> Room {
    room_with(n, Options::default())
}

fn room_with(n: ClientId, options: Options) -> Room {
    let mut room = Room::with_options(|| "12:00:00".to_string(), options);
    for id in 1..=n {
        room.join(id, addr(40000 + id as u16));
    }
    for id in 1..=n {
        read(&mut room, id);
    }
    room
}

/// What a loop does when `bytes` arrive from `id`: read them into the inbox the room lends, as
/// many reads as it takes (as long as it lends room); then the room takes its turns.
fn arrive(room: &mut Room, id: ClientId, bytes: &[u8]) -> usize {
    let mut taken = 0;
    while taken < bytes.len() {
        let buf = room.read_buffer(id);
        if buf.is_empty() {
            break;
        }
        let n = buf.len().min(bytes.len() - taken);
        buf[..n].copy_from_slice(&bytes[taken..taken + n]);
        room.received(id, n);
        taken += n;
        changed(room);
    }
    taken
}

/// The clients the loop would look at after a wake (the room consumes lines here).
fn changed(room: &mut Room) -> Vec<ClientId> {
    let mut ids = Vec::new();
    room.changed(&mut ids);
    ids
}

fn closes(room: &mut Room) -> Vec<(ClientId, CloseReason)> {
    let mut closes = Vec::new();
    room.closes(&mut closes);
    closes
}

/// Everything waiting for `id`, taken as a loop would: write it all, then report it written.
fn read(room: &mut Room, id: ClientId) -> String {
    changed(room);
    let text = String::from_utf8(room.output(id).to_vec()).unwrap();
    room.wrote(id, text.len());
    changed(room);
    text
}

#[test]
fn a_line_reaches_everyone_else_but_not_the_sender() {
    let mut room = room_of(3);
    arrive(&mut room, 1, b"hello\n");
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
    arrive(&mut room, 1, b"  Exit \r\nsaid after leaving\n");
    assert_eq!(closes(&mut room), [(1, CloseReason::Exit)]);
    assert_eq!(read(&mut room, 2), "12:00:00 * 127.0.0.1:40001 left (exit)\n");
    assert!(room.output(1).is_empty());
    assert_eq!(arrive(&mut room, 1, b"ghost\n"), 0, "no inbox for a client that left");
    room.eof(1);
    assert_eq!(
        closes(&mut room),
        [],
        "a client is closed once; later events about it are ignored"
    );
    assert_eq!(read(&mut room, 2), "");
}

#[test]
fn end_of_file_leaves_and_loses_only_its_own_partial_line() {
    let mut room = room_of(3);
    arrive(&mut room, 1, b"a line first\nhalf a li");
    arrive(&mut room, 2, b"whole ");
    room.eof(1);
    arrive(&mut room, 2, b"line\n");
    assert_eq!(closes(&mut room), [(1, CloseReason::EndOfFile)]);
    let left = "12:00:00 * 127.0.0.1:40001 left (end of file)\n";
    assert_eq!(
        read(&mut room, 2),
        format!("12:00:00 127.0.0.1:40001 say: a line first\n{left}")
    );
    assert_eq!(
        read(&mut room, 3),
        format!("12:00:00 127.0.0.1:40001 say: a line first\n{left}12:00:00 127.0.0.1:40002 say: whole line\n")
    );
}

#[test]
fn a_failed_connection_says_its_whole_lines_and_is_forgotten_mid_line() {
    let mut room = room_of(2);
    // While the room is paused (below), a line waits in the inbox; the failure does not lose it.
    room.people.over = 1;
    arrive(&mut room, 1, b"last words\nnever finish");
    room.failed(1);
    room.people.over = 0;
    assert_eq!(closes(&mut room), [(1, CloseReason::Failed)]);
    assert_eq!(
        read(&mut room, 2),
        "12:00:00 127.0.0.1:40001 say: last words\n12:00:00 * 127.0.0.1:40001 left (connection failed)\n"
    );
}

#[test]
fn nick_renames_and_is_checked_for_length_characters_and_uniqueness() {
    let mut room = room_of(3);
    arrive(&mut room, 1, b"/nick alice\n");
    assert_eq!(read(&mut room, 1), "12:00:00 * you are now alice\n");
    assert_eq!(read(&mut room, 2), "12:00:00 * 127.0.0.1:40001 is now alice\n");
    arrive(&mut room, 1, b"hi\n");
    assert_eq!(read(&mut room, 2), "12:00:00 alice say: hi\n");

    arrive(&mut room, 2, b"/nick ALICE\n");
    assert_eq!(read(&mut room, 2), "12:00:00 ! ALICE is taken\n");
    let bad = "12:00:00 ! a nickname is 1 to 16 letters, digits, '-' or '_'\n";
    for attempt in [
        "/nick\n",
        "/nick 127.0.0.1:1\n",
        "/nick a b\n",
        "/nick seventeen_letters\n",
        "/nick \u{e9}\n",
    ] {
        arrive(&mut room, 2, attempt.as_bytes());
        assert_eq!(read(&mut room, 2), bad, "{attempt:?}");
    }
    arrive(&mut room, 2, b"/nick bob-_16_letters_\n");
    assert_eq!(read(&mut room, 2), "12:00:00 * you are now bob-_16_letters_\n");
    let expected = "12:00:00 * 127.0.0.1:40001 is now alice\n12:00:00 alice say: hi\n\
                    12:00:00 * 127.0.0.1:40002 is now bob-_16_letters_\n";
    assert_eq!(read(&mut room, 3), expected, "failed attempts are told to nobody else");
}

#[test]
fn who_answers_only_the_asker() {
    let mut room = room_of(3);
    arrive(&mut room, 2, b"/nick bob\n");
    for id in 1..=3 {
        read(&mut room, id);
    }
    arrive(&mut room, 1, b"/who\n");
    assert_eq!(
        read(&mut room, 1),
        "12:00:00 * in the room: 127.0.0.1:40001 (you), bob, 127.0.0.1:40003\n"
    );
    assert_eq!(read(&mut room, 2), "");
    assert_eq!(read(&mut room, 3), "");
}

#[test]
fn who_in_a_big_room_is_split_into_lines_shorter_than_any_client_may_send() {
    let mut room = room_of(0);
    for id in 1..=5000 {
        room.join(id, addr(10000 + id as u16));
        read(&mut room, id);
    }
    for id in 1..=5000 {
        read(&mut room, id);
    }
    arrive(&mut room, 4321, b"/who\n");
    let answer = read(&mut room, 4321);
    let lines: Vec<&str> = answer.lines().collect();
    assert!(lines.len() > 50, "{} lines", lines.len());
    assert!(lines.iter().all(|line| line.len() <= MAX_LINE), "every line fits");
    let count = lines.len();
    let mut names = Vec::new();
    for (number, line) in lines.iter().enumerate() {
        let prefix = format!("12:00:00 * in the room ({}/{count}): ", number + 1);
        names.extend(line.strip_prefix(&prefix).expect("numbered lines").split(", "));
    }
    assert_eq!(names.len(), 5000);
    assert_eq!(names[4320], "127.0.0.1:14321 (you)");
    assert!(closes(&mut room).is_empty(), "nobody was dropped");
}

#[test]
fn unknown_commands_and_blank_lines() {
    let mut room = room_of(2);
    arrive(&mut room, 1, b"/shout hi\n\n   \r\n");
    assert_eq!(
        read(&mut room, 1),
        "12:00:00 ! unknown command /shout; try /nick NAME, /who, exit\n"
    );
    assert_eq!(read(&mut room, 2), "", "neither is broadcast");
}

#[test]
fn a_line_split_across_reads_and_crlf_endings() {
    let mut room = room_of(2);
    arrive(&mut room, 1, b"a\n");
    read(&mut room, 2);
    arrive(&mut room, 1, b"hel");
    assert!(room.output(2).is_empty());
    arrive(&mut room, 1, b"lo\r");
    arrive(&mut room, 1, b"\nsecond\r\nthi");
    let said = "12:00:00 127.0.0.1:40001 say: hello\n12:00:00 127.0.0.1:40001 say: second\n";
    assert_eq!(read(&mut room, 2), said);
    arrive(&mut room, 1, b"rd\n");
    assert_eq!(read(&mut room, 2), "12:00:00 127.0.0.1:40001 say: third\n");
}

#[test]
fn an_over_long_line_is_refused_and_discarded_up_to_its_newline() {
    let mut room = room_of(2);
    arrive(&mut room, 1, &[b'x'; MAX_LINE + 1]);
    assert_eq!(
        read(&mut room, 1),
        "12:00:00 ! line longer than 1024 bytes; ignored up to its newline\n"
    );
    arrive(&mut room, 1, b"still the long line\nfine\n");
    assert_eq!(read(&mut room, 2), "12:00:00 127.0.0.1:40001 say: fine\n");
    assert_eq!(read(&mut room, 1), "");
    assert_eq!(closes(&mut room), [], "the client stays");
}

#[test]
fn control_characters_and_invalid_utf8_never_reach_another_terminal() {
    let mut room = room_of(2);
    arrive(&mut room, 1, b"\x1b[2J\x1b[31mred\x07 \xff\xfe\tok\x7f\n");
    let got = read(&mut room, 2);
    assert_eq!(
        got,
        "12:00:00 127.0.0.1:40001 say: \u{FFFD}[2J\u{FFFD}[31mred\u{FFFD} \u{FFFD}\u{FFFD}\tok\u{FFFD}\n"
    );
    assert!(!got.contains('\x1b'));
}

#[test]
fn output_waits_exactly_while_there_is_some_and_leaves_in_order() {
    let mut room = Room::new(|| "12:00:00".to_string());
    assert!(room.output(1).is_empty(), "an unknown client has nothing");
    room.join(1, addr(40001));
    assert_eq!(changed(&mut room), [1], "the welcome waits");
    let waiting = room.output(1).to_vec();
    room.wrote(1, 5);
    assert_eq!(room.output(1), &waiting[5..], "a short write leaves the rest, in order");
    room.wrote(1, waiting.len() - 5);
    assert!(room.output(1).is_empty());
    room.join(2, addr(40002));
    assert_eq!(changed(&mut room), [2, 1], "the welcome, and the join notice");
}

/// The sender of a flood, a reader that reads everything, one that never reads, and a quiet
/// one that says one line in the middle of it all.
#[test]
fn a_flood_pauses_above_the_high_water_mark_and_nobody_loses_a_line() {
    let grace = Duration::from_secs(3);
    let mut room = room_with(4, Options { grace });
    let start = Instant::now();
    room.tick(start);
    let (flooder, reader, never, quiet) = (1, 2, 3, 4);
    let lines: Vec<String> = (0..2000).map(|i| format!("{i:05} {}\n", "f".repeat(143))).collect();
    let flood: Vec<u8> = lines.concat().into_bytes();
    let mut sent = 0;
    let mut heard = String::new();
    // The flood goes in as fast as the room takes it; the reader reads after every wake.
    while room.people.over == 0 {
        sent += arrive(&mut room, flooder, &flood[sent..]);
        heard.push_str(&read(&mut room, reader));
        read(&mut room, quiet);
    }
    assert!(
        sent < flood.len(),
        "the never-reader's outbox passed the mark before the end"
    );
    assert!(room.output(never).len() > HIGH_WATER);
    // Paused: the flooder's inbox fills, and then the room lends no buffer for it.
    sent += arrive(&mut room, flooder, &flood[sent..]);
    assert!(!room.wants_read(flooder), "backpressure on the sender");
    assert_eq!(arrive(&mut room, flooder, &flood[sent..]), 0);
    // The quiet client's line waits its turn too: it is not lost.
    arrive(&mut room, quiet, b"a quiet line\n");
    // Within the grace nobody goes; at its end the never-reader does, and the room goes on.
    room.tick(start + grace / 2);
    assert!(closes(&mut room).is_empty());
    room.tick(start + grace);
    assert!(closes(&mut room).is_empty(), "one more send first");
    assert!(changed(&mut room).contains(&never) && room.retry_send(never));
    room.tick(start + grace + Duration::from_millis(1)); // and it took nothing
    assert_eq!(closes(&mut room), [(never, CloseReason::StoppedReading)]);
    let resumed = heard.len();
    heard.push_str(&read(&mut room, reader));
    let quiet_at = heard.find("say: a quiet line").expect("the quiet line was said");
    let flood_first = heard[resumed..quiet_at].matches(" say: ").count();
    assert!(
        flood_first <= 1,
        "one line of the flood before it, at most: {flood_first}"
    );
    let mut idle = 0;
    while sent < flood.len() {
        let taken = arrive(&mut room, flooder, &flood[sent..]);
        sent += taken;
        let got = read(&mut room, reader);
        read(&mut room, quiet);
        idle = if taken == 0 && got.is_empty() { idle + 1 } else { 0 };
        assert!(idle < 3, "the room stopped moving");
        heard.push_str(&got);
    }
    heard.push_str(&read(&mut room, reader));
    let said: Vec<&str> = heard
        .lines()
        .filter_map(|line| line.strip_prefix("12:00:00 127.0.0.1:40001 say: "))
        .collect();
    let expected: Vec<&str> = lines.iter().map(|line| line.trim_end()).collect();
    assert!(said == expected, "the reader heard every line of the flood, in order");
    assert!(heard.contains("* 127.0.0.1:40003 left (stopped reading)\n"));
}

#[test]
fn a_reader_of_a_trickle_shows_progress_to_one_more_send_and_stays() {
    let grace = Duration::from_secs(2);
    let mut room = room_with(2, Options { grace });
    let start = Instant::now();
    room.tick(start);
    let line = format!("{}\n", "s".repeat(500));
    while room.people.over == 0 {
        arrive(&mut room, 1, line.as_bytes());
    }
    // Nothing written for the whole grace (the kernel never said writable): one more send is
    // asked for, and it takes a little.
    room.tick(start + grace);
    assert!(room.retry_send(2));
    room.wrote(2, 10);
    assert!(!room.retry_send(2));
    room.tick(start + grace + Duration::from_millis(1));
    assert!(closes(&mut room).is_empty(), "it reads: it stays");
}

#[test]
fn a_slow_reader_that_makes_progress_is_never_dropped() {
    let grace = Duration::from_secs(2);
    let mut room = room_with(2, Options { grace });
    let mut now = Instant::now();
    room.tick(now);
    let line = format!("{}\n", "s".repeat(500));
    while room.people.over == 0 {
        arrive(&mut room, 1, line.as_bytes());
    }
    // It reads 100 bytes a second: never enough to go below the low-water mark for a long
    // while, but progress, every time.
    for _ in 0..30 {
        now += Duration::from_secs(1);
        room.wrote(2, 100);
        room.tick(now);
        assert!(closes(&mut room).is_empty(), "dropped after some progress");
    }
}

#[test]
fn notices_past_the_hard_limit_drop_a_client_that_is_not_reading_at_once() {
    let mut room = room_of(2);
    // Client 3 comes and goes, again and again: 1 reads every notice, 2 reads none. Notices are
    // queued even while the room is paused (2 is far above the high-water mark), so only the
    // hard limit stops 2's outbox from growing.
    let mut cycles = 0;
    loop {
        cycles += 1;
        assert!(cycles < 100_000, "never dropped");
        room.join(3, addr(50000));
        room.eof(3);
        if closes(&mut room).contains(&(2, CloseReason::TooFarBehind)) {
            break;
        }
        read(&mut room, 1);
        assert!(room.output(2).len() <= HARD_LIMIT);
    }
    assert!(room.output(2).is_empty(), "forgotten");
    assert!(
        cycles * 80 > HARD_LIMIT,
        "dropped only past the hard limit: {cycles} cycles"
    );
    assert!(read(&mut room, 1).contains("* 127.0.0.1:40002 left (too far behind)\n"));
}

#[test]
fn quiet_ends_the_line_of_a_client_that_never_sent_a_newline() {
    let mut room = room_of(2);
    let start = Instant::now();
    room.tick(start);
    // Seed 003's client: "hello", 100 ms of nothing, "world".
    arrive(&mut room, 1, b"hello");
    room.tick(start + QUIET / 2);
    assert_eq!(read(&mut room, 2), "", "not quiet for long enough yet");
    assert_eq!(room.deadline(), Some(start + QUIET));
    room.tick(start + QUIET);
    assert_eq!(read(&mut room, 2), "12:00:00 127.0.0.1:40001 say: hello\n");
    room.tick(start + 2 * QUIET);
    arrive(&mut room, 1, b"world");
    room.tick(start + 3 * QUIET);
    assert_eq!(read(&mut room, 2), "12:00:00 127.0.0.1:40001 say: world\n");
}

#[test]
fn quiet_in_mid_line_means_nothing_once_a_client_has_sent_a_newline() {
    let mut room = room_of(2);
    let start = Instant::now();
    room.tick(start);
    arrive(&mut room, 1, b"a line\nhalf a ");
    room.tick(start + 10 * QUIET);
    assert_eq!(read(&mut room, 2), "12:00:00 127.0.0.1:40001 say: a line\n");
    assert_eq!(room.deadline(), None, "no timer for it");
    arrive(&mut room, 1, b"line\n");
    assert_eq!(read(&mut room, 2), "12:00:00 127.0.0.1:40001 say: half a line\n");
}

#[test]
fn stopping_tells_everyone_why_after_what_was_already_queued() {
    let mut room = room_of(3);
    arrive(&mut room, 1, b"last words\n");
    room.stopping("SIGTERM");
    for id in [2, 3] {
        assert_eq!(
            read(&mut room, id),
            "12:00:00 127.0.0.1:40001 say: last words\n12:00:00 * the server is stopping (SIGTERM); goodbye\n"
        );
    }
    assert_eq!(
        read(&mut room, 1),
        "12:00:00 * the server is stopping (SIGTERM); goodbye\n"
    );
    assert!(
        closes(&mut room).is_empty(),
        "the loop closes them; the room only says goodbye"
    );
    room.failed(2);
    assert_eq!(closes(&mut room), [(2, CloseReason::Failed)]);
    assert_eq!(
        read(&mut room, 3),
        "",
        "the goodbye stays the last line: nobody is told who left"
    );
}

#[test]
fn joins_and_leaves_are_announced_only_in_a_room_of_at_most_the_limit() {
    let limit = ANNOUNCE_LIMIT as ClientId;
    let mut room = room_of(limit - 1);
    room.join(limit, addr(50000));
    assert!(
        read(&mut room, 1).contains("joined"),
        "the room is at the limit: announced"
    );
    read(&mut room, limit);
    room.join(limit + 1, addr(50001));
    assert!(
        read(&mut room, limit + 1).contains("welcome"),
        "a newcomer is still welcomed"
    );
    assert_eq!(read(&mut room, 1), "", "past the limit: nobody is told of the newcomer");
    room.eof(limit + 1);
    assert_eq!(read(&mut room, 1), "", "nor of a leaver while the room was past it");
    room.eof(limit);
    assert!(
        read(&mut room, 1).contains("left"),
        "back at the limit: announced again"
    );
    assert_eq!(closes(&mut room).len(), 2);
}
