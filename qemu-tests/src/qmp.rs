//! A minimal QMP client: one connection per command, answers returned as
//! raw JSON text (the harness has no JSON dependency; tests match on text).
//!
//! Every machine has a QMP socket (`qmp.sock` in its work directory). Use it
//! for what the guest cannot do itself: `system_reset`, `system_powerdown`,
//! `quit`, or HMP commands through [`crate::Vm::hmp`].

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// `text` as a JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The request line for `execute` with `arguments` (a JSON object, if any).
pub fn request(execute: &str, arguments: Option<&str>) -> String {
    match arguments {
        Some(arguments) => format!(
            "{{\"execute\": {}, \"arguments\": {arguments}}}\n",
            json_string(execute)
        ),
        None => format!("{{\"execute\": {}}}\n", json_string(execute)),
    }
}

/// Whether a line QEMU sent is the answer to a command (not an event or greeting).
pub fn is_answer(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("{\"return\"") || line.starts_with("{\"error\"")
}

/// Connects to `socket`, negotiates capabilities, runs one command and
/// returns QEMU's answer line (`{"return": …}` or `{"error": …}`).
pub fn execute(
    socket: &Path,
    execute: &str,
    arguments: Option<&str>,
    timeout: Duration,
) -> io::Result<String> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut read_answer = || -> io::Result<String> {
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "QEMU closed the QMP socket",
                ));
            }
            if is_answer(&line) {
                return Ok(line.trim_end().to_string());
            }
        }
    };
    // greeting, then capabilities negotiation
    writer.write_all(request("qmp_capabilities", None).as_bytes())?;
    read_answer()?;
    writer.write_all(request(execute, arguments).as_bytes())?;
    read_answer()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(
            json_string(r#"qemu-io disk0 "write 0 4k""#),
            r#""qemu-io disk0 \"write 0 4k\"""#
        );
        assert_eq!(json_string("a\\b\n\u{1}"), r#""a\\b\n\u0001""#);
    }

    #[test]
    fn requests() {
        assert_eq!(request("quit", None), "{\"execute\": \"quit\"}\n");
        assert_eq!(
            request(
                "human-monitor-command",
                Some(r#"{"command-line": "info block"}"#)
            ),
            "{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\": \"info block\"}}\n"
        );
    }

    #[test]
    fn answers_are_told_from_events_and_greetings() {
        assert!(is_answer("{\"return\": {}}\r\n"));
        assert!(is_answer("{\"error\": {\"class\": \"GenericError\"}}"));
        assert!(!is_answer("{\"QMP\": {\"version\": {}}}"));
        assert!(!is_answer("{\"timestamp\": {}, \"event\": \"RESET\"}"));
    }
}
