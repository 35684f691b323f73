//! Each listener's own timeline: stream positions that start at zero when
//! the listener joins.
//!
//! The encoder writes one shared stream whose positions count from the
//! daemon's start. VLC 3.0 stops ("EOF reached") when a stream's first audio
//! positions are far from zero, so every listener's copy is rebased: Ogg
//! granule positions and page sequence numbers, FLAC frame numbers. The
//! first chunk a listener gets fixes its offset; the rest follow it.

use crate::flacframe;
use crate::ogg;
use bytes::Bytes;

/// One unit of encoded audio as an encoder produced it: shared by every
/// listener, positioned in the shared stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The bytes: exactly one Ogg page, one FLAC frame, or whole MP3 frames.
    pub bytes: Bytes,
    /// Where the chunk starts in the shared stream: the granule position
    /// before its first packet (Ogg) or its frame number (FLAC); 0 where
    /// the bytes carry no position (MP3).
    pub start: u64,
}

/// How a stream's chunks carry positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeline {
    /// Ogg pages after `header_pages` header pages (granule 0, sequence
    /// numbers 0 to `header_pages - 1`).
    Ogg {
        /// Pages in the stream header every listener gets first.
        header_pages: u32,
    },
    /// FLAC frames with frame numbers (fixed block size).
    Flac,
    /// No positions in the bytes: chunks pass through unchanged.
    Plain,
}

/// Rewrites one listener's chunks onto its own timeline.
#[derive(Debug)]
pub struct Rebase {
    timeline: Timeline,
    /// The first chunk's start position and, for Ogg, its page sequence.
    origin: Option<(u64, u32)>,
}

impl Rebase {
    /// A rebase that has seen no chunk yet.
    pub fn new(timeline: Timeline) -> Self {
        Rebase {
            timeline,
            origin: None,
        }
    }

    /// This listener's bytes for `chunk`.
    pub fn apply(&mut self, chunk: &Chunk) -> Bytes {
        match self.timeline {
            Timeline::Plain => chunk.bytes.clone(),
            Timeline::Ogg { header_pages } => {
                let Some(sequence) = ogg::sequence(&chunk.bytes) else {
                    return chunk.bytes.clone();
                };
                let (start, first_sequence) = *self.origin.get_or_insert((chunk.start, sequence));
                let sequence = sequence
                    .wrapping_sub(first_sequence)
                    .wrapping_add(header_pages);
                if start == 0 && first_sequence == header_pages {
                    // Joined at the very beginning: the shared bytes are right.
                    return chunk.bytes.clone();
                }
                ogg::restamp(&chunk.bytes, start, sequence).into()
            }
            Timeline::Flac => {
                let (start, _) = *self.origin.get_or_insert((chunk.start, 0));
                if start == 0 {
                    return chunk.bytes.clone();
                }
                // Frame numbers are 31 bits and wrap (after about six years).
                let number = chunk.start.wrapping_sub(start) & 0x7FFF_FFFF;
                match flacframe::renumber(&chunk.bytes, number) {
                    Some(frame) => frame.into(),
                    None => chunk.bytes.clone(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ogg::{PageWriter, parse_page};

    #[test]
    fn ogg_listener_counts_from_zero_and_follows_on() {
        let mut writer = PageWriter::new(9);
        // Two header pages, then pages of 960 samples each.
        writer.page(&[b"head"], 0, ogg::BOS);
        writer.page(&[b"tags"], 0, 0);
        let pages: Vec<Chunk> = (1..=5u64)
            .map(|i| Chunk {
                bytes: writer.page(&[b"audio"], i * 960, 0).into(),
                start: (i - 1) * 960,
            })
            .collect();
        let mut rebase = Rebase::new(Timeline::Ogg { header_pages: 2 });
        let mine: Vec<_> = pages[3..]
            .iter()
            .map(|c| parse_page(&rebase.apply(c)).unwrap().0)
            .collect();
        assert_eq!(
            mine.iter()
                .map(|p| (p.granule, p.sequence))
                .collect::<Vec<_>>(),
            vec![(960, 2), (1920, 3)]
        );
        assert_eq!(mine[0].packets, vec![b"audio".to_vec()]);
        assert_eq!(mine[0].serial, 9);
        // A listener from the very start gets the shared bytes themselves.
        let mut first = Rebase::new(Timeline::Ogg { header_pages: 2 });
        assert_eq!(first.apply(&pages[0]), pages[0].bytes);
    }
}
