//! File, FIFO and stdin sources. Files are played in real time; a FIFO is
//! read as fast as its writer feeds it and opened again when the writer goes.

use super::{Source, read_frames};
use crate::config::SourceConfig;
use crate::pcm::{PcmFormat, SampleFormat};
use anyhow::{Context, bail};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::time::{Duration, Instant};

/// A WAV or raw PCM file, or a FIFO.
pub struct FileSource {
    name: String,
    format: PcmFormat,
    reader: std::io::Take<BufReader<File>>,
    data_start: u64,
    data_len: u64,
    looping: bool,
    paced: bool,
    frames: u64,
    start: Instant,
}

fn raw_format(c: &SourceConfig) -> PcmFormat {
    PcmFormat {
        rate: c.rate,
        channels: c.channels,
        sample: c.format.unwrap_or(SampleFormat::S16),
    }
}

impl FileSource {
    /// Opens `source.path`; WAV is recognised by its header, anything else
    /// is raw PCM in the configured format.
    pub fn open(c: &SourceConfig) -> anyhow::Result<Self> {
        let file = File::open(&c.path).with_context(|| format!("open {}", c.path.display()))?;
        let is_fifo = file.metadata()?.file_type().is_fifo();
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let (format, data_len) = if reader.fill_buf()?.starts_with(b"RIFF") {
            let wav = hound::WavReader::new(reader).context("bad WAV header")?;
            let spec = wav.spec();
            let sample = match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Int, 16) => SampleFormat::S16,
                (hound::SampleFormat::Int, 24) => SampleFormat::S24_3,
                (hound::SampleFormat::Int, 32) => SampleFormat::S32,
                (f, b) => bail!("unsupported WAV samples: {b}-bit {f:?}"),
            };
            if ![44_100, 48_000].contains(&spec.sample_rate) || !(1..=2).contains(&spec.channels) {
                bail!("WAV must be 44.1/48 kHz mono/stereo, not {spec:?}");
            }
            let format = PcmFormat {
                rate: spec.sample_rate,
                channels: spec.channels,
                sample,
            };
            let len = u64::from(wav.len()) * sample.bytes() as u64;
            reader = wav.into_inner();
            (format, len)
        } else {
            (raw_format(c), u64::MAX)
        };
        let data_start = if is_fifo {
            0
        } else {
            reader.stream_position()?
        };
        Ok(FileSource {
            name: c.path.display().to_string(),
            format,
            reader: reader.take(data_len),
            data_start,
            data_len,
            looping: c.looping && !is_fifo,
            paced: !is_fifo,
            frames: 0,
            start: Instant::now(),
        })
    }
}

impl Source for FileSource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn format(&self) -> PcmFormat {
        self.format
    }

    fn read(&mut self, buf: &mut [u8]) -> anyhow::Result<usize> {
        if self.paced {
            let played = Duration::from_secs_f64(self.frames as f64 / f64::from(self.format.rate));
            std::thread::sleep((self.start + played).saturating_duration_since(Instant::now()));
        }
        let fb = self.format.frame_bytes();
        let mut n = read_frames(&mut self.reader, buf, fb)?;
        if n == 0 && self.looping {
            self.reader
                .get_mut()
                .seek(SeekFrom::Start(self.data_start))?;
            self.reader.set_limit(self.data_len);
            n = read_frames(&mut self.reader, buf, fb)?;
        }
        self.frames += (n / fb) as u64;
        Ok(n)
    }

    fn reopen_after_end(&self) -> bool {
        // A FIFO gets a new writer; a finished file stays finished.
        !self.paced
    }
}

/// Raw PCM on standard input, paced by whoever writes it (e.g. `arecord`).
pub struct StdinSource {
    format: PcmFormat,
}

impl StdinSource {
    /// Standard input in the configured raw format.
    pub fn new(c: &SourceConfig) -> Self {
        StdinSource {
            format: raw_format(c),
        }
    }
}

impl Source for StdinSource {
    fn name(&self) -> String {
        "stdin".into()
    }

    fn format(&self) -> PcmFormat {
        self.format
    }

    fn read(&mut self, buf: &mut [u8]) -> anyhow::Result<usize> {
        Ok(read_frames(
            &mut std::io::stdin().lock(),
            buf,
            self.format.frame_bytes(),
        )?)
    }

    fn reopen_after_end(&self) -> bool {
        false
    }
}
