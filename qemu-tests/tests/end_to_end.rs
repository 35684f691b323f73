//! The mission, end to end: the qemu-virt image, built by the builder's
//! normal pipeline with the `test-tone` layer, boots on the IPv6-only test
//! network; a 1 kHz tone goes into the snd-aloop virtual sound card inside
//! it; vinyl-streamd captures the card (chosen by its ordinary
//! configuration file) and streams Ogg Opus; and the host, as any listener
//! on the LAN, fetches `http://[guest]:8000/stream.opus` with ffmpeg,
//! decodes it and hears the tone — within ±5 Hz, at the level played.
//!
//! Then the turntable misbehaves while the host keeps listening on the same
//! connection: the tone player is stopped and started again, and the sound
//! card is unplugged (unbound from its driver), its module unloaded and
//! loaded again. The stream carries silence meanwhile and the tone comes
//! back; the connection never closes. Runs on both harness backends.
//!
//! What the host heard is kept in `target/qemu-tests/end-to-end/`
//! (`heard-tone.wav` on the host's QEMU, `heard-tone-docker.wav` in the
//! docker backend), to listen to.

mod test_image;
mod test_net;

use qemu_tests::tone::{self, Tone};
use qemu_tests::{Backend, MachineConfig};
use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use test_net::{TestNet, eventually};

const BOOT: Duration = Duration::from_secs(480);
const COMMAND: Duration = Duration::from_secs(60);
/// How long the guest may take to bring sound back or take it away.
const CHANGE: Duration = Duration::from_secs(60);
const MAC: &str = "52:54:00:12:34:57";
/// What the listener decodes to: 48 kHz mono (the stream's two channels
/// carry the same mono tone).
const RATE: u32 = 48_000;
/// The tone `test-tone.service` plays, and how close the host must hear it.
/// (speaker-test 1.2.14's "1000 Hz" sine is in fact 1000.715 Hz, measured
/// from its own output inside the guest; the host hears exactly that.)
const TONE_HZ: f64 = 1000.0;
const TOLERANCE_HZ: f64 = 5.0;
/// speaker-test's sine: 80 % of full scale, so -1.94 dBFS peak and
/// -4.95 dBFS RMS; Opus at 160 kbit/s keeps the level within a fraction of
/// a dB.
const PLAYED_RMS_DBFS: f64 = -4.95;
const LEVEL_TOLERANCE_DB: f64 = 1.0;
/// Windows the listener judges, and the one the final figures come from.
const WINDOW: usize = RATE as usize / 2;
const MEASURE: usize = 2 * RATE as usize;

/// Audio that came out of the listener's decoder, as it arrived.
#[derive(Default)]
struct Heard {
    samples: Vec<f32>,
    first_audio: Option<Instant>,
    ended: bool,
}

/// Whether `samples` are the tone played, clean (see [`Tone::is_tone`]).
fn is_the_tone(samples: &[f32]) -> bool {
    tone::measure(samples, RATE).is_some_and(|t| t.is_tone(TONE_HZ, TOLERANCE_HZ))
}

/// A listener on the host side of the test network: one `ffmpeg` that
/// fetches the stream over HTTP (no reconnecting: if the connection closes,
/// it ends) and decodes it to 48 kHz mono PCM, collected by a thread.
struct Listener {
    ffmpeg: Child,
    heard: Arc<Mutex<Heard>>,
}

impl Listener {
    /// Connects to `url`, trying again each second until audio comes out of
    /// the decoder (the daemon may not listen yet) or `timeout` passes.
    fn connect(net: &TestNet, url: &str, timeout: Duration) -> Listener {
        let deadline = Instant::now() + timeout;
        let log = net.dir().join("ffmpeg.log");
        loop {
            let mut ffmpeg = net
                .command("ffmpeg")
                .args(["-nostdin", "-hide_banner", "-loglevel", "warning"])
                .args(["-fflags", "nobuffer", "-probesize", "32768"])
                .args(["-i", url])
                .args(["-map", "0:a", "-ac", "1", "-ar", &RATE.to_string()])
                .args(["-f", "s16le", "pipe:1"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("starting ffmpeg (package ffmpeg)");
            let heard = Arc::new(Mutex::new(Heard::default()));
            let mut stdout = ffmpeg.stdout.take().unwrap();
            let collector = Arc::clone(&heard);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 8192];
                let mut odd: Option<u8> = None;
                loop {
                    let n = stdout.read(&mut buf).unwrap_or(0);
                    let mut heard = collector.lock().unwrap();
                    if n == 0 {
                        heard.ended = true;
                        return;
                    }
                    heard.first_audio.get_or_insert_with(Instant::now);
                    let mut bytes: Vec<u8> = odd.take().into_iter().collect();
                    bytes.extend_from_slice(&buf[..n]);
                    if bytes.len() % 2 == 1 {
                        odd = bytes.pop();
                    }
                    heard.samples.extend(tone::from_s16le(&bytes));
                }
            });
            let listener = Listener { ffmpeg, heard };
            loop {
                std::thread::sleep(Duration::from_millis(100));
                if listener.heard.lock().unwrap().first_audio.is_some() {
                    return listener;
                }
                if listener.heard.lock().unwrap().ended {
                    break;
                }
            }
            let tried = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "no audio from {url} within {timeout:?}; ffmpeg said:\n{tried}"
            );
            drop(listener);
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Samples decoded so far.
    fn position(&self) -> usize {
        self.heard.lock().unwrap().samples.len()
    }

    /// Panics unless the connection is still open and ffmpeg still decoding.
    fn assert_connected(&mut self, when: &str) {
        let ended = self.heard.lock().unwrap().ended;
        let exited = self.ffmpeg.try_wait().unwrap();
        assert!(
            !ended && exited.is_none(),
            "{when}: the stream's connection closed (ffmpeg {exited:?})"
        );
    }

    /// Waits until a whole window of `len` samples after sample `from` is
    /// what `wanted` accepts; returns the sample where that window starts
    /// and how many windows before it were refused.
    fn wait_until(
        &mut self,
        what: &str,
        from: usize,
        len: usize,
        timeout: Duration,
        wanted: impl Fn(&[f32]) -> bool,
    ) -> (usize, usize) {
        let deadline = Instant::now() + timeout;
        let mut start = from;
        let mut refused = 0;
        loop {
            let verdict = {
                let heard = self.heard.lock().unwrap();
                let window = heard.samples.get(start..start + len);
                window.map(&wanted)
            };
            match verdict {
                Some(true) => return (start, refused),
                Some(false) => {
                    start += WINDOW / 4;
                    refused += 1;
                }
                None => {
                    self.assert_connected(what);
                    assert!(
                        Instant::now() < deadline,
                        "{what}: not heard within {timeout:?}"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Waits for the tone after sample `from`, then for `MEASURE` samples of
    /// it in one piece: a clean tone at the frequency and level played, with
    /// no gap or jump in its phase. Returns that measurement and when the
    /// tone was first recognised.
    ///
    /// Under emulation a guest that is still busy booting can miss a period
    /// of the tone player (an underrun in `speaker-test`, before the sound
    /// reaches vinyl-streamd), which puts a phase jump into a measurement;
    /// so the measurement slides on until it finds a clean stretch, within
    /// `CHANGE`, and says how many stretches it passed over.
    fn hear_tone(&mut self, what: &str, from: usize) -> (Tone, Instant) {
        let (at, _) = self.wait_until(what, from, WINDOW, CHANGE, is_the_tone);
        let recognised = Instant::now();
        let (clean, refused) = self.wait_until(
            &format!("{what}: {MEASURE} samples of a clean tone"),
            at,
            MEASURE,
            CHANGE,
            is_the_tone,
        );
        if refused > 0 {
            eprintln!(
                "{what}: passed over {refused} stretches with a glitch, {:.2} s of audio",
                (clean - at) as f64 / f64::from(RATE)
            );
        }
        let heard = self.heard.lock().unwrap();
        let tone = tone::measure(&heard.samples[clean..clean + MEASURE], RATE).unwrap();
        (tone, recognised)
    }

    /// Waits for silence after sample `from`.
    fn wait_for_silence(&mut self, what: &str, from: usize) -> usize {
        let (at, _) = self.wait_until(what, from, WINDOW, CHANGE, |w| {
            tone::rms_dbfs(w) < tone::SILENCE_DBFS
        });
        at + WINDOW
    }

    /// Everything heard, as a WAV file at `path`.
    fn save(&self, path: &std::path::Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let heard = self.heard.lock().unwrap();
        std::fs::write(path, tone::wav(&heard.samples, RATE)).unwrap();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.ffmpeg.kill();
        let _ = self.ffmpeg.wait();
    }
}

/// Waits until `/status` says `state` ("playing", "silent", "no-device").
fn wait_for_state(net: &TestNet, address: &str, state: &str) -> serde_json::Value {
    eventually(&format!("/status saying {state}"), CHANGE, || {
        let status = test_net::streamd_status(net, address)?;
        if status["state"] == state {
            Ok(status)
        } else {
            Err(status.to_string())
        }
    })
}

/// The test on one backend (both: [`qemu_tests::backend_tests`] below).
fn hear_the_tone(backend: Backend) {
    let name = match backend {
        Backend::Local => "tone",
        Backend::Docker => "tone-docker",
    };
    let Some(backend) = test_net::ready(name, Some(backend)) else {
        return;
    };
    let built = test_image::qemu_virt();
    let _turn = test_image::one_machine_at_a_time();
    // Namespace names are at most 15 characters.
    let net = TestNet::start(&format!("e2e-{name}"));
    let config = MachineConfig::new(name, &built.image, &built.u_boot)
        .with_shell()
        .with_backend(backend);
    let started = Instant::now();
    let mut vm = net.boot(config, MAC);

    // Listen the way a LAN client does: the address the console announced,
    // over IPv6, as soon as the daemon answers.
    let address = test_net::announced_address(&vm, BOOT);
    assert_eq!(address, test_net::eui64_address(MAC));
    let url = format!("http://[{address}]:8000/stream.opus");
    let mut listener = Listener::connect(&net, &url, BOOT);
    let first_audio = listener.heard.lock().unwrap().first_audio.unwrap() - started;
    let (heard, recognised) = listener.hear_tone("the tone", 0);
    let first_tone = recognised - started;
    assert!(
        (heard.rms_dbfs - PLAYED_RMS_DBFS).abs() <= LEVEL_TOLERANCE_DB,
        "played at {PLAYED_RMS_DBFS} dBFS RMS, heard {heard:?}"
    );

    // The daemon says what it captures: the loopback card, playing.
    vm.wait_for_shell(BOOT).unwrap();
    let playing = wait_for_state(&net, &address, "playing");
    let device = playing["device"].as_str().unwrap_or_default();
    assert!(device.contains("Loopback"), "device: {playing}");
    assert!(playing["listeners"].as_u64() >= Some(1), "{playing}");
    // What the two sides of the virtual cable negotiated, for the log.
    let negotiated = vm
        .run_ok(
            "grep -H . /proc/asound/Loopback/pcm0p/sub0/hw_params /proc/asound/Loopback/pcm1c/sub0/hw_params",
            COMMAND,
        )
        .unwrap();
    eprintln!("{name}: /status {playing}\n{negotiated}");
    let streamd_rms = playing["rms_dbfs"].as_f64().unwrap_or(f64::NAN);
    assert!(
        (streamd_rms - PLAYED_RMS_DBFS).abs() <= LEVEL_TOLERANCE_DB,
        "vinyl-streamd measures {streamd_rms} dBFS RMS: {playing}"
    );

    // The tone player stops and starts again: silence, then the tone, on
    // the same connection.
    vm.run_ok("systemctl stop test-tone", COMMAND).unwrap();
    let at = listener.wait_for_silence("silence after stopping the player", listener.position());
    vm.run_ok("systemctl start test-tone", COMMAND).unwrap();
    let restarted = Instant::now();
    let (after_restart, recognised) =
        listener.hear_tone("the tone after restarting the player", at);

    // The card is unplugged while playing (its driver unbound, as a USB
    // card's is when pulled), then its module unloaded and loaded again.
    vm.run_ok(
        "echo snd_aloop.0 > /sys/bus/platform/drivers/snd_aloop/unbind",
        COMMAND,
    )
    .unwrap();
    let gone = wait_for_state(&net, &address, "no-device");
    assert!(gone["device"].is_null(), "{gone}");
    let at = listener.wait_for_silence("silence with the card unplugged", listener.position());
    let unload = vm
        .run(
            "for try in $(seq 30); do modprobe -r snd_aloop && break; sleep 1; done; cat /proc/asound/cards",
            COMMAND,
        )
        .unwrap();
    assert!(
        unload.success() && !unload.output.contains("Loopback"),
        "unloading snd_aloop: {}",
        unload.output
    );
    listener.assert_connected("with the card unloaded");
    let reloaded = Instant::now();
    vm.run_ok("modprobe snd_aloop", COMMAND).unwrap();
    let (after_reload, recovered) = listener.hear_tone("the tone after reloading the card", at);
    let back = wait_for_state(&net, &address, "playing");
    assert!(
        back["device"]
            .as_str()
            .unwrap_or_default()
            .contains("Loopback"),
        "{back}"
    );
    listener.assert_connected("at the end");

    let wav = builder::config::Project::from_workspace()
        .root
        .join(format!("target/qemu-tests/end-to-end/heard-{name}.wav"));
    listener.save(&wav);
    eprintln!(
        "{name}: QEMU start -> first decoded audio {:.1} s, -> tone {:.1} s; \
         heard {:.2} Hz at {:.2} dBFS RMS ({:.2} dBFS peak, SINAD {:.1} dB); \
         tone back {:.1} s after restarting the player ({:.2} Hz) and {:.1} s \
         after reloading the card ({:.2} Hz); {:.0} s of audio on one \
         connection, saved in {}",
        first_audio.as_secs_f64(),
        first_tone.as_secs_f64(),
        heard.frequency_hz,
        heard.rms_dbfs,
        heard.peak_dbfs,
        heard.sinad_db,
        (recognised - restarted).as_secs_f64(),
        after_restart.frequency_hz,
        (recovered - reloaded).as_secs_f64(),
        after_reload.frequency_hz,
        listener.position() as f64 / f64::from(RATE),
        wav.display()
    );
}

qemu_tests::backend_tests! {
    hear_the_tone => tone_is_heard_over_ipv6, tone_is_heard_over_ipv6_in_the_docker_backend;
}
