//! ALSA capture. Opens the hardware device directly and negotiates a native
//! rate and format, so no plug layer resamples behind our back.

use super::Source;
use crate::config::SourceConfig;
use crate::pcm::{PcmFormat, SampleFormat};
use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};
use anyhow::{Context, anyhow, bail};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Linux errno values ALSA reports for an overrun and a suspend.
const EPIPE: i32 = 32;
const ESTRPIPE: i32 = 86;

/// Preferred sample formats, best first.
const FORMATS: [SampleFormat; 4] = [
    SampleFormat::S24_3,
    SampleFormat::S32,
    SampleFormat::S24,
    SampleFormat::S16,
];

/// A capture PCM.
pub struct AlsaSource {
    pcm: PCM,
    device: String,
    format: PcmFormat,
    xruns: Arc<AtomicU64>,
}

fn alsa_format(f: SampleFormat) -> Format {
    match f {
        SampleFormat::S16 => Format::S16LE,
        SampleFormat::S24 => Format::S24LE,
        SampleFormat::S24_3 => Format::S243LE,
        SampleFormat::S32 => Format::S32LE,
    }
}

/// Turns the `device` setting into an ALSA device string: device strings
/// pass through, card ids/names and "auto" are looked up, other names are
/// taken as PCMs from the ALSA configuration.
pub fn resolve_device(device: &str) -> anyhow::Result<String> {
    if device.contains(':') || device == "default" {
        return Ok(device.to_string());
    }
    for card in alsa::card::Iter::new() {
        let card = card?;
        let Ok(ctl) = alsa::Ctl::from_card(&card, false) else {
            continue;
        };
        let info = ctl.card_info()?;
        let (id, name, driver) = (info.get_id()?, info.get_name()?, info.get_driver()?);
        let wanted = if device == "auto" {
            driver == "USB-Audio"
        } else {
            id.eq_ignore_ascii_case(device) || name.eq_ignore_ascii_case(device)
        };
        if !wanted {
            continue;
        }
        let capture = alsa::ctl::DeviceIter::new(&ctl)
            .find(|&dev| ctl.pcm_info(dev as u32, 0, Direction::Capture).is_ok());
        if let Some(dev) = capture {
            return Ok(format!("hw:CARD={id},DEV={dev}"));
        }
    }
    if device == "auto" {
        bail!("no USB audio capture card found")
    }
    // Not a card: maybe a PCM defined in the ALSA configuration (e.g. a dsnoop).
    Ok(device.to_string())
}

impl AlsaSource {
    /// Opens and configures the configured device.
    ///
    /// alsa-lib's own error messages (which it would print to stderr on
    /// every retry) are captured on this thread and added to the error, so
    /// they reach the log once, through the capture loop's deduplicated
    /// warning.
    pub fn open(c: &SourceConfig, xruns: Arc<AtomicU64>) -> anyhow::Result<Self> {
        // A fresh buffer per attempt; the handler stays installed on this thread.
        let alsa_lib = alsa::Output::local_error_handler().ok();
        Self::open_device(c, xruns).map_err(|e| {
            let said = alsa_lib.map(|o| o.borrow().to_string()).unwrap_or_default();
            let said: Vec<&str> = said
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            match said.is_empty() {
                true => e,
                false => anyhow!("{e:#} (alsa-lib: {})", said.join("; ")),
            }
        })
    }

    fn open_device(c: &SourceConfig, xruns: Arc<AtomicU64>) -> anyhow::Result<Self> {
        let device = resolve_device(&c.device)?;
        let pcm = PCM::new(&device, Direction::Capture, false)
            .with_context(|| format!("open {device}"))?;
        let format = {
            let hw = HwParams::any(&pcm)?;
            hw.set_access(Access::RWInterleaved)?;
            let channels = [2, 1]
                .into_iter()
                .find(|&ch| hw.test_channels(ch).is_ok())
                .ok_or_else(|| anyhow!("{device} has no mono or stereo capture"))?;
            hw.set_channels(channels)?;
            let other = if c.rate == 48_000 { 44_100 } else { 48_000 };
            let rate = [c.rate, other]
                .into_iter()
                .find(|&r| hw.test_rate(r).is_ok())
                .ok_or_else(|| anyhow!("{device} supports neither 48000 nor 44100 Hz"))?;
            hw.set_rate(rate, ValueOr::Nearest)?;
            let candidates: Vec<SampleFormat> = c.format.into_iter().chain(FORMATS).collect();
            let sample = candidates
                .into_iter()
                .find(|&f| hw.test_format(alsa_format(f)).is_ok())
                .ok_or_else(|| anyhow!("{device} offers no 16/24/32-bit format"))?;
            hw.set_format(alsa_format(sample))?;
            let ms = |n: u32| alsa::pcm::Frames::from(rate * n / 1000);
            hw.set_period_size_near(ms(c.period_ms), ValueOr::Nearest)?;
            hw.set_buffer_size_near(ms(c.buffer_ms))?;
            pcm.hw_params(&hw)?;
            PcmFormat {
                rate,
                channels: channels as u16,
                sample,
            }
        };
        pcm.start()?;
        Ok(AlsaSource {
            pcm,
            device,
            format,
            xruns,
        })
    }
}

impl Source for AlsaSource {
    fn name(&self) -> String {
        self.device.clone()
    }

    fn format(&self) -> PcmFormat {
        self.format
    }

    fn read(&mut self, buf: &mut [u8]) -> anyhow::Result<usize> {
        let fb = self.format.frame_bytes();
        loop {
            // A device that stops delivering without an error is as good as gone.
            let read = self.pcm.wait(Some(2000)).and_then(|ready| match ready {
                true => self.pcm.io_bytes().readi(buf).map(Some),
                false => Ok(None),
            });
            match read {
                Ok(Some(frames)) => return Ok(frames * fb),
                Ok(None) => bail!("{}: no audio for 2 s", self.device),
                Err(e) if e.errno() == EPIPE || e.errno() == ESTRPIPE => {
                    // Overrun (or suspend): count it, recover, keep capturing.
                    self.xruns.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(device = %self.device, "capture overrun");
                    self.pcm.try_recover(e, true)?;
                    self.pcm.start().ok();
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
