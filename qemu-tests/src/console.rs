//! The serial console log: a file QEMU appends to, read as it grows.
//!
//! Waiting is expect-style: each successful wait moves a cursor past the
//! match, so consecutive waits find consecutive events (the second "U-Boot"
//! banner after a reboot, say). [`ConsoleLog::text`] always returns everything.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use regex::bytes::Regex;

use crate::error::{CONSOLE_TAIL_LINES, tail_lines};

/// What to wait for on the console: plain text or a regular expression.
///
/// Text and regexes both match within the whole log after the cursor, also
/// across line ends, and also in a last line that is not finished yet (a
/// prompt such as U-Boot's `=> ` has no newline after it).
#[derive(Debug, Clone)]
pub struct Needle(Regex);

impl Needle {
    /// Matches `text` literally.
    pub fn text(text: &str) -> Self {
        Needle(Regex::new(&regex::escape(text)).expect("an escaped literal is a valid regex"))
    }

    /// Matches the regular expression `pattern`.
    ///
    /// # Panics
    /// If `pattern` is not a valid regex (a bug in the test, not a runtime condition).
    pub fn regex(pattern: &str) -> Self {
        Needle(Regex::new(pattern).unwrap_or_else(|e| panic!("bad console regex {pattern:?}: {e}")))
    }

    /// How the needle is shown in messages.
    pub fn describe(&self) -> String {
        format!("/{}/", self.0.as_str())
    }
}

impl From<&str> for Needle {
    fn from(text: &str) -> Self {
        Needle::text(text)
    }
}

impl From<&String> for Needle {
    fn from(text: &String) -> Self {
        Needle::text(text)
    }
}

impl From<regex::Regex> for Needle {
    fn from(regex: regex::Regex) -> Self {
        Needle::regex(regex.as_str())
    }
}

impl From<&regex::Regex> for Needle {
    fn from(regex: &regex::Regex) -> Self {
        Needle::regex(regex.as_str())
    }
}

impl From<Regex> for Needle {
    fn from(regex: Regex) -> Self {
        Needle(regex)
    }
}

/// A match in the log: the whole line it is on and where it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The line the match starts on, without its line end (may be unfinished).
    pub line: String,
    /// Byte offset just past the match.
    pub end: usize,
}

/// Finds `needle` in `log` at or after byte `from`.
pub fn find(log: &[u8], from: usize, needle: &Needle) -> Option<Found> {
    let from = from.min(log.len());
    let m = needle.0.find_at(log, from)?;
    let line_start = log[..m.start()]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line_end = log[m.start()..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(log.len(), |i| m.start() + i);
    let line = String::from_utf8_lossy(&log[line_start..line_end])
        .trim_end_matches('\r')
        .to_string();
    Some(Found { line, end: m.end() })
}

/// The growing console log of one machine.
#[derive(Debug)]
pub struct ConsoleLog {
    path: PathBuf,
    cursor: Mutex<usize>,
}

impl ConsoleLog {
    /// The log at `path` (which may not exist yet), cursor at the start.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ConsoleLog {
            path: path.into(),
            cursor: Mutex::new(0),
        }
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw bytes so far (empty if QEMU has not created the file yet).
    pub fn bytes(&self) -> Vec<u8> {
        fs::read(&self.path).unwrap_or_default()
    }

    /// Everything so far, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// The last [`CONSOLE_TAIL_LINES`] lines.
    pub fn tail(&self) -> String {
        tail_lines(&self.text(), CONSOLE_TAIL_LINES)
    }

    /// Looks once for `needle` after the cursor; on a match moves the cursor
    /// past it and returns the line.
    pub fn poll(&self, needle: &Needle) -> Option<String> {
        let log = self.bytes();
        let mut cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let found = find(&log, *cursor, needle)?;
        *cursor = found.end;
        Some(found.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_text_and_returns_its_whole_line() {
        let log = b"U-Boot 2023.01\r\nHit any key to stop autoboot:  2 \n=> ";
        let found = find(log, 0, &"any key".into()).unwrap();
        assert_eq!(found.line, "Hit any key to stop autoboot:  2 ");
        assert_eq!(&log[found.end - 7..found.end], b"any key");
        let prompt = find(log, 0, &"=> ".into()).unwrap();
        assert_eq!(prompt.line, "=> ");
        assert_eq!(prompt.end, log.len());
        assert_eq!(
            find(log, 0, &"U-Boot".into()).unwrap().line,
            "U-Boot 2023.01"
        );
    }

    #[test]
    fn searches_only_after_the_cursor() {
        let log = b"boot 1\nboot 2\n";
        let first = find(log, 0, &"boot".into()).unwrap();
        assert_eq!(first.line, "boot 1");
        let second = find(log, first.end, &"boot".into()).unwrap();
        assert_eq!(second.line, "boot 2");
        assert!(find(log, second.end, &"boot".into()).is_none());
        assert!(find(log, 1000, &"boot".into()).is_none());
    }

    #[test]
    fn text_is_literal_and_regexes_are_regexes() {
        let log = b"a.b\naxb\nlogin: 42 tries";
        assert_eq!(find(log, 0, &"x".into()).unwrap().line, "axb");
        assert_eq!(find(log, 0, &Needle::text("a.b")).unwrap().line, "a.b");
        assert!(find(b"axb", 0, &Needle::text("a.b")).is_none());
        let found = find(log, 0, &Needle::regex(r"\d+ tries")).unwrap();
        assert_eq!(found.line, "login: 42 tries");
        let std_regex = regex::Regex::new("a.b").unwrap();
        assert_eq!(find(b"axb", 0, &(&std_regex).into()).unwrap().line, "axb");
    }

    #[test]
    fn invalid_utf8_does_not_hide_matches() {
        let log = b"\xff\xfe garbage\nready\n";
        assert_eq!(find(log, 0, &"ready".into()).unwrap().line, "ready");
        assert_eq!(
            find(log, 0, &"garbage".into()).unwrap().line,
            "\u{fffd}\u{fffd} garbage"
        );
    }

    #[test]
    fn poll_reads_a_growing_file_and_advances() {
        let dir = std::env::temp_dir().join(format!("qemu-tests-console-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("console.log");
        let console = ConsoleLog::new(&path);
        assert!(console.poll(&"ready".into()).is_none()); // no file yet
        fs::write(&path, "booting\nrea").unwrap();
        assert!(console.poll(&"ready".into()).is_none());
        fs::write(&path, "booting\nready\nready again\n").unwrap();
        assert_eq!(console.poll(&"ready".into()).as_deref(), Some("ready"));
        assert_eq!(
            console.poll(&"ready".into()).as_deref(),
            Some("ready again")
        );
        assert!(console.poll(&"ready".into()).is_none());
        assert_eq!(console.text(), "booting\nready\nready again\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
