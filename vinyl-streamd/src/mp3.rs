//! MP3 stream for players without Opus (Sonos, older iPhones, anything
//! Icecast-style): LAME (bundled by `mp3lame-sys`), 48 kHz stereo CBR,
//! whole frames fanned out by a hub of their own.
//!
//! A live MP3 stream has no header: every frame carries its own, so a
//! listener only needs to start at a frame boundary. The encoder runs only
//! while someone listens; it starts afresh when the first listener arrives.

use crate::hub::Hub;
use crate::mp3frame::Splitter;
use crate::status::Status;
use crate::timeline::{Chunk, Timeline};
use bytes::Bytes;
use mp3lame_encoder::{Bitrate, Builder, InterleavedPcm, Mode, Quality};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

/// Constant bitrates (kbit/s) an MPEG-1 Layer III stream at 48 kHz can use.
pub const BITRATES: [u32; 13] = [32, 40, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320];

fn bitrate(kbps: u32) -> Option<Bitrate> {
    use Bitrate::*;
    Some(match kbps {
        32 => Kbps32,
        40 => Kbps40,
        48 => Kbps48,
        64 => Kbps64,
        80 => Kbps80,
        96 => Kbps96,
        112 => Kbps112,
        128 => Kbps128,
        160 => Kbps160,
        192 => Kbps192,
        224 => Kbps224,
        256 => Kbps256,
        320 => Kbps320,
        _ => return None,
    })
}

/// 48 kHz interleaved stereo `f32` in, whole MP3 frames out.
pub struct Mp3Encoder {
    lame: mp3lame_encoder::Encoder,
    out: Vec<u8>,
    frames: Splitter,
}

impl Mp3Encoder {
    /// A CBR joint-stereo encoder at `kbps` (one of [`BITRATES`]), without
    /// ID3 or Xing/Info tag: a live stream has neither start nor length.
    /// Quality 3 is LAME's default; 2 costs 2.5 times the CPU (see the bench).
    pub fn new(kbps: u32) -> anyhow::Result<Self> {
        let rate = bitrate(kbps).ok_or_else(|| anyhow::anyhow!("no MP3 bitrate {kbps} kbit/s"))?;
        let err = |e: mp3lame_encoder::BuildError| anyhow::anyhow!("LAME: {e:?}");
        let mut b = Builder::new().ok_or_else(|| anyhow::anyhow!("LAME: out of memory"))?;
        b.set_num_channels(2).map_err(err)?;
        b.set_sample_rate(48_000).map_err(err)?;
        b.set_output_sample_rate(std::num::NonZeroU32::new(48_000))
            .map_err(err)?;
        b.set_brate(rate).map_err(err)?;
        b.set_mode(Mode::JointStereo).map_err(err)?;
        b.set_quality(Quality::VeryNice).map_err(err)?;
        b.set_to_write_vbr_tag(false).map_err(err)?;
        Ok(Mp3Encoder {
            lame: b.build().map_err(err)?,
            out: Vec::new(),
            frames: Splitter::new(),
        })
    }

    /// Encodes interleaved stereo; returns the frames completed by it
    /// (concatenated) and their number.
    pub fn push(&mut self, pcm: &[f32]) -> anyhow::Result<(Vec<u8>, usize)> {
        self.out.clear();
        // LAME's worst case: 1.25 × samples + 7200 bytes.
        self.out.reserve(pcm.len() / 2 * 5 / 4 + 7200);
        self.lame
            .encode_to_vec(InterleavedPcm(pcm), &mut self.out)
            .map_err(|e| anyhow::anyhow!("LAME: {e:?}"))?;
        Ok(self.frames.push(&self.out))
    }

    /// Bytes of encoder output that were not part of a frame (should stay 0).
    pub fn skipped(&self) -> u64 {
        self.frames.skipped()
    }
}

/// LAME's version, e.g. "3.100".
pub fn version() -> String {
    mp3lame_encoder::mp3lame_version().into_owned()
}

enum Msg {
    Pcm(Vec<f32>),
    /// The last listener left: drop the encoder.
    Idle,
}

/// The encoder thread's input, owned by the main encoder loop. It passes
/// audio on only while `/stream.mp3` has listeners.
pub struct Input {
    tx: SyncSender<Msg>,
    hub: Arc<Hub>,
    active: bool,
}

impl Input {
    /// Hands a 48 kHz stereo frame to the MP3 thread if anyone listens;
    /// never waits (a full queue loses audio for the MP3 stream only).
    pub fn offer(&mut self, pcm: &[f32]) {
        let listening = self.hub.listeners() > 0;
        let msg = match (listening, self.active) {
            (true, _) => Msg::Pcm(pcm.to_vec()),
            (false, true) => Msg::Idle,
            (false, false) => return,
        };
        match self.tx.try_send(msg) {
            Ok(()) | Err(TrySendError::Full(Msg::Pcm(_))) => self.active = listening,
            // Tell it again next time.
            Err(TrySendError::Full(Msg::Idle)) => {}
            Err(TrySendError::Disconnected(_)) => self.active = false,
        }
    }
}

/// Starts the MP3 thread at `kbps`; returns its hub (which may hold
/// `queue_frames` items per listener and keeps `burst_frames` recent ones)
/// and the input for the encoder loop.
pub fn start(
    kbps: u32,
    queue_frames: usize,
    burst_frames: usize,
    status: Arc<Status>,
) -> anyhow::Result<(Arc<Hub>, Input)> {
    // Fail at start-up, not when the first listener comes.
    drop(Mp3Encoder::new(kbps)?);
    let hub = Arc::new(Hub::new(
        Bytes::new(),
        Timeline::Plain,
        queue_frames,
        burst_frames,
    ));
    let (tx, rx) = std::sync::mpsc::sync_channel(16);
    let h = hub.clone();
    std::thread::Builder::new()
        .name("mp3".into())
        .spawn(move || run(rx, &h, kbps, &status))?;
    let input = Input {
        tx,
        hub: hub.clone(),
        active: false,
    };
    Ok((hub, input))
}

fn run(rx: Receiver<Msg>, hub: &Hub, kbps: u32, status: &Status) {
    let mut encoder: Option<Mp3Encoder> = None;
    for msg in rx {
        let pcm = match msg {
            // Also stop if the last listener left while audio was queued.
            Msg::Pcm(pcm) if hub.listeners() > 0 => pcm,
            _ => {
                if encoder.take().is_some() {
                    // The next listener must not start with this session's audio.
                    hub.forget_recent();
                    tracing::info!("MP3 encoder idle: no listeners");
                }
                continue;
            }
        };
        if encoder.is_none() {
            match Mp3Encoder::new(kbps) {
                Ok(e) => {
                    tracing::info!(kbps, "MP3 encoder started");
                    encoder = Some(e);
                }
                Err(e) => tracing::error!("{e}"),
            }
        }
        let Some(enc) = encoder.as_mut() else {
            continue;
        };
        match enc.push(&pcm) {
            Ok((_, 0)) => {}
            Ok((frames, n)) => {
                status.mp3_frames.fetch_add(n as u64, Ordering::Relaxed);
                hub.publish(Chunk {
                    bytes: Bytes::from(frames),
                    start: 0,
                });
            }
            Err(e) => tracing::error!("{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp3frame::{Header, SAMPLES_PER_FRAME};

    #[test]
    fn every_allowed_bitrate_builds_and_others_do_not() {
        for kbps in BITRATES {
            assert!(Mp3Encoder::new(kbps).is_ok(), "{kbps}");
        }
        for kbps in [0, 8, 56, 192_000] {
            assert!(Mp3Encoder::new(kbps).is_err(), "{kbps}");
        }
    }

    #[test]
    fn output_is_whole_cbr_frames_at_the_input_rate() {
        let mut e = Mp3Encoder::new(192).unwrap();
        let tone: Vec<f32> = (0..48_000 * 2)
            .map(|i| 0.5 * (i as f32 / 2.0 * 1000.0 / 48_000.0 * std::f32::consts::TAU).sin())
            .collect();
        let mut total = 0;
        for chunk in tone.chunks(1920) {
            let (out, n) = e.push(chunk).unwrap();
            let mut at = 0;
            for _ in 0..n {
                let h = Header::parse(&out[at..]).unwrap();
                assert_eq!((h.kbps, h.rate, h.frame_len()), (192, 48_000, 576));
                at += h.frame_len();
            }
            assert_eq!(at, out.len());
            total += n;
        }
        // One second of input; LAME holds back about two frames.
        let expected = 48_000 / SAMPLES_PER_FRAME;
        assert!((expected - 3..=expected).contains(&total), "{total} frames");
        assert_eq!(e.skipped(), 0);
    }

    #[test]
    fn the_thread_encodes_only_while_the_hub_has_listeners() {
        use std::time::{Duration, Instant};
        let status = Arc::new(Status::default());
        let (hub, mut input) = start(192, 100, 10, status.clone()).unwrap();
        let frames = || status.mp3_frames.load(Ordering::Relaxed);
        let pcm = vec![0.25f32; 1920];
        // Half a second of audio at the encoder loop's pace (20 ms frames).
        let feed = |input: &mut Input| {
            for _ in 0..25 {
                input.offer(&pcm);
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        feed(&mut input);
        assert_eq!(frames(), 0);
        let sub = hub.subscribe();
        assert!(sub.headers.is_empty() && sub.burst.is_empty());
        let mut rx = sub.live;
        feed(&mut input);
        // About 20 frames of 576 bytes, each item starting with a header.
        let (mut got, deadline) = (0, Instant::now() + Duration::from_secs(5));
        while got < 15 * 576 && Instant::now() < deadline {
            match rx.try_recv() {
                Ok(item) => {
                    assert!(Header::parse(&item.bytes).is_some());
                    assert_eq!(item.bytes.len() % 576, 0);
                    got += item.bytes.len();
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        assert!(got >= 15 * 576, "{got} bytes");
        drop(rx);
        feed(&mut input);
        let idle = frames();
        feed(&mut input);
        assert_eq!(frames(), idle);
        // The encoder restarts for the next listener: no old audio in its burst.
        assert!(hub.subscribe().burst.is_empty());
    }
}
