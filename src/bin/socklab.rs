//! The socklab command: the lesson list, and (as the curriculum grows) servers and clients.

use std::io::Read;

use socklab::lessons::LESSONS;
use socklab::trace::expected;

const HELP: &str = "usage:
  socklab lessons      list the lessons (run one with `make lesson-N`)
  socklab normalize    read a plain trace (SOCKLAB_TRACE=plain) on stdin, print it as expected.trace holds it";

fn main() {
    let words: Vec<String> = std::env::args().skip(1).collect();
    match words.first().map(String::as_str) {
        Some("lessons") => {
            for lesson in LESSONS {
                println!(
                    "make lesson-{:<2}  {:<20} {}",
                    lesson.number, lesson.slug, lesson.summary
                );
            }
        }
        Some("normalize") => {
            let mut trace = String::new();
            if let Err(error) = std::io::stdin().read_to_string(&mut trace) {
                eprintln!("socklab normalize: reading stdin: {error}");
                std::process::exit(1);
            }
            print!("{}", expected::normalize_trace(&trace));
        }
        Some("-h" | "--help" | "help") | None => println!("{HELP}"),
        Some(other) => {
            eprintln!("socklab: unknown command {other:?}\n{HELP}");
            std::process::exit(2);
        }
    }
}
