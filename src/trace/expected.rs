//! The normalised trace that `expected.trace` files hold and `tests/lessons.rs` compares.
//!
//! A lesson's demo run with `SOCKLAB_TRACE=plain` prints one line per call (`actor  line`),
//! its note indented below, and narration as `actor  » text`. Ports, addresses, pids and
//! remaining times change from run to run; [`normalize`] replaces them with fixed words so two
//! runs compare equal. [`by_actor`] groups lines per actor: threads interleave differently
//! every run, but each actor's own sequence is fixed.

use std::collections::BTreeMap;

use super::sink::strace_line;

/// One plain line with its run-to-run values replaced.
pub fn normalize(line: &str) -> String {
    if let Some(at) = line.find("» ") {
        let (head, text) = line.split_at(at + "» ".len());
        let text = if let Some(measurement) = text.strip_prefix("~ ") {
            format!("~ {}", digits_to_n(measurement))
        } else {
            addresses_in_prose(text)
        };
        return format!("{head}{text}");
    }
    let mut line = replace_number_after(line, "htons(", "PORT", true);
    line = replace_number_after(&line, "sin_port=", "PORT", true);
    line = replace_hex_pointers(&line);
    // A port inside the bytes a call carried (a chat line that names its sender) varies too.
    line = replace_all_numbers_after(&line, "127.0.0.1:", "PORT");
    line = replace_between(&line, "left {", "}", "…");
    for pid_call in ["wait4(", "kill("] {
        line = replace_number_after(&line, pid_call, "PID", false);
    }
    if line.starts_with("clone(") || line.starts_with("wait4(") {
        line = replace_number_after(&line, ") = ", "PID", false);
    }
    repad(&line)
}

/// A whole plain trace, normalised line by line: what `expected.trace` files hold.
pub fn normalize_trace(trace: &str) -> String {
    let mut out = String::new();
    for line in trace.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with(' ') {
            out.push_str(line.trim_end());
        } else {
            let actor = line.split_whitespace().next().unwrap_or_default();
            let rest = line[actor.len()..].trim_start();
            out.push_str(&format!("{actor:<10}{}", normalize(rest)));
        }
        out.push('\n');
    }
    out
}

/// Groups a plain trace by actor; a note line belongs to the call above it.
pub fn by_actor(trace: &str) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut last_actor = String::new();
    for line in trace.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with(' ') {
            groups
                .entry(last_actor.clone())
                .or_default()
                .push(line.trim().to_string());
            continue;
        }
        let actor = line.split_whitespace().next().unwrap_or_default().to_string();
        let rest = line[actor.len()..].trim_start();
        groups.entry(actor.clone()).or_default().push(normalize(rest));
        last_actor = actor;
    }
    groups
}

fn digits_to_n(text: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() || (in_number && c == '.') {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// `127.0.0.1:40123` and `[::1]:40123` become `…:PORT`; `pid 1234` becomes `pid PID`.
fn addresses_in_prose(text: &str) -> String {
    let mut out = text.to_string();
    for prefix in ["127.0.0.1:", "0.0.0.0:", "]:", "port "] {
        out = replace_all_numbers_after(&out, prefix, "PORT");
    }
    replace_all_numbers_after(&out, "pid ", "PID")
}

fn replace_all_numbers_after(text: &str, prefix: &str, word: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let after = &rest[at + prefix.len()..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        out.push_str(&rest[..at + prefix.len()]);
        out.push_str(if digits > 0 && !(prefix == "port " && &after[..digits] == "0") {
            word
        } else {
            &after[..digits]
        });
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// Replaces every number that directly follows `prefix` (zero too, unless `keep_zero`).
fn replace_number_after(text: &str, prefix: &str, word: &str, keep_zero: bool) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let after = &rest[at + prefix.len()..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        out.push_str(&rest[..at + prefix.len()]);
        let number = &after[..digits];
        if digits == 0 || (keep_zero && number == "0") {
            out.push_str(number);
        } else {
            out.push_str(word);
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// Pointers (`0x7ffd9a1c65a0`) differ every run; short hex values (flags) stay.
fn replace_hex_pointers(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("0x") {
        let after = &rest[at + 2..];
        let digits = after.chars().take_while(char::is_ascii_hexdigit).count();
        out.push_str(&rest[..at + 2]);
        out.push_str(if digits >= 6 { "ADDR" } else { &after[..digits] });
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

fn replace_between(text: &str, open: &str, close: &str, word: &str) -> String {
    let Some(start) = text.find(open) else {
        return text.to_string();
    };
    let body = start + open.len();
    let Some(len) = text[body..].find(close) else {
        return text.to_string();
    };
    format!("{}{word}{}", &text[..body], &text[body + len..])
}

/// Puts `=` back at column 40 once the values that changed its place are replaced.
fn repad(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut split = None;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b')' {
            let spaces = bytes[i + 1..].iter().take_while(|&&c| c == b' ').count();
            if spaces > 0 && bytes[i + 1 + spaces..].starts_with(b"= ") {
                split = Some((i + 1, i + 1 + spaces + 2));
            }
        }
    }
    match split {
        Some((call_end, ret_start)) => strace_line(&line[..call_end], &line[ret_start..]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_pointers_and_times_are_replaced() {
        let line = r#"connect(4, {sa_family=AF_INET, sin_port=htons(40123), sin_addr=inet_addr("127.0.0.1")}, 16) = 0"#;
        assert_eq!(
            normalize(line),
            r#"connect(4, {sa_family=AF_INET, sin_port=htons(PORT), sin_addr=inet_addr("127.0.0.1")}, 16) = 0"#
        );
        assert_eq!(
            normalize("bind(3, {sin_port=htons(0)}, 16) = 0"),
            strace_line("bind(3, {sin_port=htons(0)}, 16)", "0")
        );
        assert_eq!(
            normalize("recvfrom(5, 0x7ffd9a1c65a0, 64, 0, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable)"),
            strace_line(
                "recvfrom(5, 0xADDR, 64, 0, NULL, NULL)",
                "-1 EAGAIN (Resource temporarily unavailable)"
            )
        );
        assert!(
            normalize(
                "pselect6(4, [3], NULL, NULL, {tv_sec=1, tv_nsec=0}, NULL) = 1 (in [3], left {tv_sec=0, tv_nsec=99})"
            )
            .ends_with("left {…})")
        );
        assert_eq!(
            normalize("» listening on 127.0.0.1:7000"),
            "» listening on 127.0.0.1:PORT"
        );
        assert_eq!(normalize("» ~ spun 1234 times in 5.2 ms"), "» ~ spun N times in N ms");
        assert_eq!(
            normalize("wait4(4242, [{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 4242"),
            "wait4(PID, [{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = PID"
        );
    }

    #[test]
    fn groups_by_actor_with_notes() {
        let trace = "server    listen(3, 128) = 0\n          # note\nclient#1  socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = 4\nserver    » hi\n";
        let groups = by_actor(trace);
        assert_eq!(
            groups["server"],
            vec![strace_line("listen(3, 128)", "0"), "# note".into(), "» hi".into()]
        );
        assert_eq!(groups["client#1"].len(), 1);
    }
}
