//! The players listeners actually use, against a daemon that has been up
//! for over a minute and whose source was lost and came back: VLC (the
//! strictest, run as an unprivileged user as it insists), mpv, GStreamer's
//! `uridecodebin` (what `playbin` uses) and ffmpeg. Each writes what it
//! played to a file, judged by the tone judge; time to first audio is
//! printed for the record.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds of audio each player is asked to play.
const PLAY_S: u64 = 4;

/// A player, how it is run, and what it wrote.
struct Player {
    name: &'static str,
    url: String,
    output: PathBuf,
    /// ffmpeg input flags that read `output`.
    output_format: &'static [&'static str],
    /// Bytes per second of audio in `output`.
    bytes_per_s: u64,
}

/// What one run of a player produced.
struct Played {
    pcm: Vec<f32>,
    first_audio: Option<Duration>,
}

impl Player {
    fn command(&self) -> Command {
        let out = self.output.to_str().unwrap();
        match self.name.split(' ').next().unwrap() {
            "vlc" => {
                let mut c = unprivileged("cvlc");
                c.args(["-I", "dummy", "--no-video", "--play-and-exit"])
                    .arg(format!("--run-time={PLAY_S}"))
                    .args(["-A", "afile", "--audiofile-format=s16"])
                    .arg(format!("--audiofile-file={out}"))
                    .arg(&self.url);
                c
            }
            "mpv" => {
                let mut c = Command::new("mpv");
                c.args(["--no-config", "--no-video", "--really-quiet", "--ao=pcm"])
                    .arg("--audio-format=s16")
                    .arg(format!("--ao-pcm-file={out}"))
                    .arg(format!("--length={PLAY_S}"))
                    .arg(&self.url);
                c
            }
            "gstreamer" => {
                let mut c = Command::new("gst-launch-1.0");
                c.args(["-q", "uridecodebin"])
                    .arg(format!("uri={}", self.url))
                    .args(["!", "audioconvert", "!", "audioresample", "!"])
                    .args(["audio/x-raw,format=F32LE,rate=48000,channels=2"])
                    .args(["!", "filesink"])
                    .arg(format!("location={out}"));
                c
            }
            "ffmpeg" => {
                let mut c = Command::new("ffmpeg");
                c.args(["-nostdin", "-v", "error", "-i", &self.url]).args([
                    "-t",
                    &PLAY_S.to_string(),
                    "-f",
                    "wav",
                    "-y",
                    out,
                ]);
                c
            }
            other => panic!("no such player {other}"),
        }
    }

    /// Runs the player for [`PLAY_S`] seconds of audio (killed a few
    /// seconds after that) and decodes what it wrote.
    fn play(&self) -> Played {
        let started = Instant::now();
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        // 0.1 s of audio past any header means audio came out; players
        // that do not stop by themselves are stopped after PLAY_S seconds.
        let (header, rate) = (4096, self.bytes_per_s);
        let mut first_audio = None;
        let deadline = started + Duration::from_secs(PLAY_S + 8);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            let size = std::fs::metadata(&self.output).map_or(0, |m| m.len());
            if first_audio.is_none() && size > header + rate / 10 {
                first_audio = Some(started.elapsed());
            }
            // Only a raw output (GStreamer's) runs on by itself.
            if !self.output_format.is_empty() && size > header + rate * PLAY_S {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let result = child.wait_with_output().unwrap();
        // A killed player may leave half a sample frame at the end.
        if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&self.output) {
            let len = file.metadata().unwrap().len();
            if !self.output_format.is_empty() {
                file.set_len(len - len % (self.bytes_per_s / 48_000))
                    .unwrap();
            }
        }
        let log = String::from_utf8_lossy(&result.stderr);
        assert!(
            self.output.exists(),
            "{} wrote nothing; it said: {log}",
            self.name
        );
        let mut input: Vec<&str> = self.output_format.to_vec();
        input.extend(["-i", self.output.to_str().unwrap()]);
        let pcm = ffmpeg_decode(&input, None, Duration::from_secs(20));
        let secs = pcm.len() as f64 / 96_000.0;
        println!(
            "{}: {secs:.1} s played, first audio after {:?}",
            self.name, first_audio
        );
        assert!(
            secs >= PLAY_S as f64 - 1.5,
            "{} played only {secs:.1} s of {PLAY_S} s; it said: {log}",
            self.name
        );
        Played { pcm, first_audio }
    }
}

/// `program` as the unprivileged user `nobody` when running as root (VLC
/// refuses to run as root).
fn unprivileged(program: &str) -> Command {
    // SAFETY-free check: only root's effective uid is 0.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        return Command::new(program);
    }
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--reset-env",
        program,
    ]);
    c
}

fn player(name: &'static str, daemon: &Daemon, path: &str, dir: &Path) -> Player {
    player_of(name, daemon.url(path), dir)
}

fn player_of(name: &'static str, url: String, dir: &Path) -> Player {
    let file = name.replace(' ', "-");
    let (output, output_format, bytes_per_s): (PathBuf, &'static [&'static str], u64) = match name {
        n if n.starts_with("gstreamer") => (
            dir.join(format!("{file}.f32")),
            &["-f", "f32le", "-ar", "48000", "-ac", "2"],
            48_000 * 8,
        ),
        _ => (dir.join(format!("{file}.wav")), &[], 48_000 * 4),
    };
    Player {
        name,
        url,
        output,
        output_format,
        bytes_per_s,
    }
}

/// `path`, created if needed and writable by everyone: VLC runs as
/// `nobody` and writes its output there.
fn shared_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    path.to_path_buf()
}

/// Plays every player at once and judges each.
fn play_all(players: &[Player]) {
    std::thread::scope(|s| {
        let runs: Vec<_> = players.iter().map(|p| (p, s.spawn(|| p.play()))).collect();
        for (p, run) in runs {
            let played = run.join().unwrap_or_else(|_| panic!("{} failed", p.name));
            // Judge a second of the end: what a listener hears once playing.
            let left = left(&played.pcm);
            let end = left.len().saturating_sub(24_000);
            assert_tone(&left[end - 48_000..end], -6.02, p.name);
            assert!(
                played.first_audio.is_some(),
                "{}: no audio came out",
                p.name
            );
        }
    });
}

#[test]
fn every_player_plays_after_a_minute_and_after_a_source_loss() {
    if ![
        "cvlc",
        "mpv",
        "gst-launch-1.0",
        "ffmpeg",
        "setpriv",
        "icecast2",
    ]
    .iter()
    .all(|p| have(p))
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    shared_dir(dir.path());
    let fifo = dir.path().join("pcm");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // The daemon also pushes to Icecast (MP3, the default format).
    let ice = crate::icecast::start_icecast();
    let mount = format!("http://127.0.0.1:{}/vinyl.mp3", ice.port);
    let d = Daemon::start(&[
        "--icecast-url",
        &mount,
        "--icecast-password",
        "vinyl-secret",
        "--source",
        "file",
        "--path",
        fifo.to_str().unwrap(),
        "--format",
        "s16",
        "--retry-ms",
        "100",
        "--flac",
        "true",
    ]);
    let feeder = {
        let fifo = fifo.clone();
        std::thread::spawn(move || feed_fifo(&fifo, 78.0))
    };
    // Positions in the shared stream are now a minute from zero.
    std::thread::sleep(Duration::from_secs(62));
    let first = shared_dir(&dir.path().join("first"));
    play_all(&[
        player("vlc opus", &d, "/stream.opus", &first),
        player("vlc flac", &d, "/stream.flac", &first),
        player("mpv opus", &d, "/stream.opus", &first),
        player("vlc mp3", &d, "/stream.mp3", &first),
        player_of("vlc icecast mp3", mount.clone(), &first),
        player("mpv mp3", &d, "/stream.mp3", &first),
        player("gstreamer opus", &d, "/stream.opus", &first),
        player("ffmpeg flac", &d, "/stream.flac", &first),
    ]);
    feeder.join().unwrap();
    assert!(
        wait_until(Duration::from_secs(3), || d.status()["state"]
            == "no-device"),
        "the source's end was not noticed"
    );
    std::thread::sleep(Duration::from_secs(2));
    let feeder = std::thread::spawn(move || feed_fifo(&fifo, 12.0));
    assert!(wait_until(Duration::from_secs(3), || d.status()["state"] == "playing"));
    let again = shared_dir(&dir.path().join("again"));
    play_all(&[
        player("vlc opus", &d, "/stream.opus", &again),
        player("vlc flac", &d, "/stream.flac", &again),
        player("gstreamer opus", &d, "/stream.opus", &again),
        player("gstreamer mp3", &d, "/stream.mp3", &again),
    ]);
    feeder.join().unwrap();
}
