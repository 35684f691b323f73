//! The guest test shell: a root `bash` on the virtio console port
//! `org.vinyl.shell` (recipe `test-shell`), reached through QEMU's unix
//! socket `shell.sock` in the work directory.
//!
//! # Protocol
//!
//! For each command the host writes one line (see [`encode`]):
//!
//! ```text
//! printf '%s-%s\n' VINYL-BEGIN N; eval 'COMMAND' </dev/null 2>&1; printf '\n%s-%s %d\n' VINYL-END N $?
//! ```
//!
//! where `N` is a fresh random nonce. The guest answers
//! `VINYL-BEGIN-N\n`, the command's output (stdout and stderr), then
//! `\nVINYL-END-N STATUS\n`. The host reads until the end marker of *its*
//! nonce ([`Parser`]), so output left over from an earlier command that
//! timed out, or from retries while the guest was still booting, is skipped.
//! The marker text never appears in what the host sends (printf assembles
//! it), so an echo of the input cannot fake an answer. The command reads
//! `/dev/null`, not the channel, so it cannot swallow the next command.
//!
//! The shell keeps state between commands (`cd`, variables). `exit` ends
//! it; systemd starts a new one ([`crate::Vm::wait_for_shell`] waits for it).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A command's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// The exit status (`$?`: 0 success, 128+N killed by signal N).
    pub status: i32,
    /// stdout and stderr, interleaved as written, exactly (no trailing
    /// newline is added or removed; invalid UTF-8 is replaced).
    pub output: String,
}

impl CommandOutput {
    /// Whether the status is 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// A random nonce for one command (hex, 16 digits).
pub fn nonce() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hash, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    COUNTER.fetch_add(1, Ordering::Relaxed).hash(&mut hasher);
    std::process::id().hash(&mut hasher);
    Instant::now().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Quotes `text` as one single-quoted shell word (newlines included).
fn single_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The line the host writes to run `command` under `nonce`.
pub fn encode(command: &str, nonce: &str) -> String {
    format!(
        "printf '%s-%s\\n' VINYL-BEGIN {nonce}; eval {} </dev/null 2>&1; \
         printf '\\n%s-%s %d\\n' VINYL-END {nonce} $?\n",
        single_quote(command)
    )
}

/// Collects what the guest sends and picks out one command's answer.
/// Robust to arbitrary splits of the byte stream.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
}

impl Parser {
    /// An empty parser.
    pub fn new() -> Self {
        Parser::default()
    }

    /// Adds bytes read from the channel.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Drops everything received so far.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// What has been received so far (for error messages).
    pub fn pending(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// The answer for `nonce` if it has fully arrived; consumes it and
    /// everything before it.
    pub fn take(&mut self, nonce: &str) -> Option<CommandOutput> {
        let begin = format!("VINYL-BEGIN-{nonce}\n");
        let end = format!("\nVINYL-END-{nonce} ");
        let start = find(&self.buf, begin.as_bytes(), 0)? + begin.len();
        let end_at = find(&self.buf, end.as_bytes(), start)?;
        let status_at = end_at + end.len();
        let newline = status_at + self.buf[status_at..].iter().position(|&b| b == b'\n')?;
        let status = std::str::from_utf8(&self.buf[status_at..newline])
            .ok()
            .and_then(|s| s.parse().ok())?;
        let output = String::from_utf8_lossy(&self.buf[start..end_at]).into_owned();
        self.buf.drain(..=newline);
        Some(CommandOutput { status, output })
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Why a command got no answer.
#[derive(Debug)]
pub enum ShellFailure {
    /// No answer within the time; what arrived meanwhile.
    Timeout(String),
    /// The channel failed or QEMU closed it.
    Io(io::Error),
}

/// The host end of the shell channel.
#[derive(Debug)]
pub struct ShellChannel {
    stream: UnixStream,
    parser: Parser,
}

/// How long one read waits before the caller's deadline and QEMU's state are checked.
const READ_SLICE: Duration = Duration::from_millis(100);

impl ShellChannel {
    /// Connects to QEMU's socket at `path`.
    pub fn connect(path: &Path) -> io::Result<Self> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(READ_SLICE))?;
        // QEMU stops reading while the guest has not opened the port; a
        // command is small, but never block forever on a full socket.
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(ShellChannel {
            stream,
            parser: Parser::new(),
        })
    }

    /// Writes `command` without waiting for anything (for `poweroff`, `reboot`).
    pub fn send(&mut self, command: &str) -> io::Result<()> {
        let mut line = command.to_string();
        line.push('\n');
        self.stream.write_all(line.as_bytes())
    }

    /// Runs `command` and waits up to `timeout` for its answer. `alive` is
    /// asked between reads; when it returns false, waiting stops.
    pub fn run(
        &mut self,
        command: &str,
        timeout: Duration,
        mut alive: impl FnMut() -> bool,
    ) -> Result<CommandOutput, ShellFailure> {
        let deadline = Instant::now() + timeout;
        let nonce = nonce();
        self.parser.clear();
        self.stream
            .write_all(encode(command, &nonce).as_bytes())
            .map_err(ShellFailure::Io)?;
        let mut buf = [0u8; 8192];
        loop {
            if let Some(answer) = self.parser.take(&nonce) {
                return Ok(answer);
            }
            if Instant::now() >= deadline || !alive() {
                return Err(ShellFailure::Timeout(self.parser.pending()));
            }
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    return Err(ShellFailure::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "QEMU closed the shell socket",
                    )));
                }
                Ok(n) => self.parser.feed(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(ShellFailure::Io(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(nonce: &str, output: &str, status: i32) -> Vec<u8> {
        format!("VINYL-BEGIN-{nonce}\n{output}\nVINYL-END-{nonce} {status}\n").into_bytes()
    }

    #[test]
    fn encoding_quotes_the_command_and_hides_the_markers() {
        let line = encode("echo 'hi' && false", "abc");
        assert_eq!(
            line,
            "printf '%s-%s\\n' VINYL-BEGIN abc; eval 'echo '\\''hi'\\'' && false' </dev/null 2>&1; \
             printf '\\n%s-%s %d\\n' VINYL-END abc $?\n"
        );
        assert!(!line.contains("VINYL-BEGIN-abc") && !line.contains("VINYL-END-abc"));
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
    }

    #[test]
    fn multi_line_commands_stay_in_one_quoted_word() {
        let line = encode("echo a\necho b", "n");
        assert!(line.contains("eval 'echo a\necho b' </dev/null"));
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(), nonce());
        assert_eq!(nonce().len(), 16);
    }

    #[test]
    fn parses_a_whole_answer() {
        let mut parser = Parser::new();
        parser.feed(&answer("n1", "hello", 0));
        assert_eq!(
            parser.take("n1"),
            Some(CommandOutput {
                status: 0,
                output: "hello".into()
            })
        );
        assert!(parser.take("n1").is_none());
        assert_eq!(parser.pending(), "");
    }

    #[test]
    fn output_is_exact() {
        for output in ["", "line\n", "a\nb", "\n\n", "VINYL-END-other 3\n"] {
            let mut parser = Parser::new();
            parser.feed(&answer("n", output, 7));
            let got = parser.take("n").unwrap();
            assert_eq!((got.output.as_str(), got.status), (output, 7));
        }
    }

    #[test]
    fn every_split_of_the_stream_gives_the_same_answer() {
        let stream = answer("n2", "out\nerr: no such file\n", 2);
        for split in 0..=stream.len() {
            let mut parser = Parser::new();
            parser.feed(&stream[..split]);
            let early = parser.take("n2");
            if split < stream.len() {
                assert!(
                    early.is_none(),
                    "answer before all bytes arrived (split {split})"
                );
                parser.feed(&stream[split..]);
                let got = parser.take("n2").unwrap();
                assert_eq!(got.output, "out\nerr: no such file\n");
                assert_eq!(got.status, 2);
            } else {
                assert_eq!(early.unwrap().status, 2);
            }
        }
        // and byte by byte
        let mut parser = Parser::new();
        let mut got = None;
        for &b in &stream {
            assert!(got.is_none());
            parser.feed(&[b]);
            got = parser.take("n2");
        }
        assert_eq!(got.unwrap().output, "out\nerr: no such file\n");
    }

    #[test]
    fn stale_answers_echoes_and_noise_are_skipped() {
        let mut parser = Parser::new();
        // an echo of a command (cooked tty before stty ran) and a stale retry
        parser.feed(encode("true", "old").as_bytes());
        parser.feed(b"\r\nnoise");
        parser.feed(&answer("old", "", 0));
        parser.feed(&answer("new", "fresh\n", 1));
        assert_eq!(parser.take("new").unwrap().output, "fresh\n");
        assert!(
            parser.take("old").is_none(),
            "consumed along with what came before"
        );
    }

    #[test]
    fn a_negative_or_garbled_status_waits_for_more() {
        let mut parser = Parser::new();
        parser.feed(b"VINYL-BEGIN-n\nx\nVINYL-END-n 1");
        assert!(parser.take("n").is_none(), "status not terminated yet");
        parser.feed(b"\n");
        assert_eq!(parser.take("n").unwrap().status, 1);
        parser.feed(b"VINYL-BEGIN-m\nx\nVINYL-END-m zz\n");
        assert!(parser.take("m").is_none());
    }

    #[test]
    fn runs_against_a_fake_guest_over_a_socket() {
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("qemu-tests-shell-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let guest = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut line = Vec::new();
            let mut byte = [0u8];
            while conn.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
                line.push(byte[0]);
            }
            let line = String::from_utf8(line).unwrap();
            let nonce = line
                .split_whitespace()
                .nth(3)
                .unwrap()
                .trim_end_matches(';')
                .to_string();
            // answer in small pieces
            for chunk in answer(&nonce, "Linux\n", 0).chunks(3) {
                conn.write_all(chunk).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
            // then never answer the second command
            std::thread::sleep(Duration::from_millis(600));
        });
        let mut channel = ShellChannel::connect(&path).unwrap();
        let got = channel
            .run("uname", Duration::from_secs(10), || true)
            .unwrap();
        assert_eq!(got.output, "Linux\n");
        match channel.run("sleep 100", Duration::from_millis(300), || true) {
            Err(ShellFailure::Timeout(pending)) => assert_eq!(pending, ""),
            other => panic!("expected a timeout, got {other:?}"),
        }
        guest.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
