//! Ogg Opus encapsulation (RFC 7845): identification and comment headers,
//! and one audio page per group of packets with continuous granule positions.
//!
//! One muxer lives for the whole life of the daemon, so every listener sees
//! the same logical stream: headers first, then live pages.

use crate::ogg::{BOS, PageWriter};
use crate::timeline::Chunk;

/// Opus always counts granule positions at 48 kHz.
pub const GRANULE_RATE: u32 = 48_000;

/// The `OpusHead` identification packet (mapping family 0).
pub fn opus_head(channels: u8, pre_skip: u16, input_rate: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(19);
    p.extend_from_slice(b"OpusHead");
    p.push(1); // version
    p.push(channels);
    p.extend_from_slice(&pre_skip.to_le_bytes());
    p.extend_from_slice(&input_rate.to_le_bytes());
    p.extend_from_slice(&0i16.to_le_bytes()); // output gain
    p.push(0); // channel mapping family: mono/stereo
    p
}

/// The `OpusTags` comment packet.
pub fn opus_tags(vendor: &str, comments: &[(&str, &str)]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(b"OpusTags");
    p.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    p.extend_from_slice(vendor.as_bytes());
    p.extend_from_slice(&(comments.len() as u32).to_le_bytes());
    for (k, v) in comments {
        let c = format!("{k}={v}");
        p.extend_from_slice(&(c.len() as u32).to_le_bytes());
        p.extend_from_slice(c.as_bytes());
    }
    p
}

/// Turns Opus packets into the pages of a single, never-ending Ogg stream.
#[derive(Debug)]
pub struct Muxer {
    writer: PageWriter,
    headers: Vec<u8>,
    granule: u64,
    /// Granule position before the first pending packet.
    page_start: u64,
    pending: Vec<Vec<u8>>,
    packets_per_page: usize,
}

impl Muxer {
    /// A muxer whose header pages carry `head` and `tags`; audio pages hold
    /// `packets_per_page` packets each.
    pub fn new(serial: u32, head: &[u8], tags: &[u8], packets_per_page: usize) -> Self {
        let mut writer = PageWriter::new(serial);
        let mut headers = writer.page(&[head], 0, BOS);
        headers.extend(writer.page(&[tags], 0, 0));
        Self {
            writer,
            headers,
            granule: 0,
            page_start: 0,
            pending: Vec::new(),
            packets_per_page: packets_per_page.max(1),
        }
    }

    /// The two header pages every new listener must receive first.
    pub fn headers(&self) -> &[u8] {
        &self.headers
    }

    /// Adds one packet covering `samples` (at 48 kHz); returns a finished
    /// page when one is complete, starting where the previous one ended.
    pub fn push(&mut self, packet: Vec<u8>, samples: u64) -> Option<Chunk> {
        self.granule += samples;
        self.pending.push(packet);
        if self.pending.len() < self.packets_per_page {
            return None;
        }
        let refs: Vec<&[u8]> = self.pending.iter().map(Vec::as_slice).collect();
        let page = self.writer.page(&refs, self.granule, 0);
        self.pending.clear();
        let start = std::mem::replace(&mut self.page_start, self.granule);
        Some(Chunk {
            bytes: page.into(),
            start,
        })
    }

    /// Granule position reached so far (samples at 48 kHz, pre-skip included).
    pub fn granule(&self) -> u64 {
        self.granule
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ogg::parse_page;

    #[test]
    fn head_layout_follows_rfc7845() {
        let h = opus_head(2, 312, 44_100);
        assert_eq!(h.len(), 19);
        assert_eq!(&h[..8], b"OpusHead");
        assert_eq!(h[8], 1);
        assert_eq!(h[9], 2);
        assert_eq!(u16::from_le_bytes([h[10], h[11]]), 312);
        assert_eq!(u32::from_le_bytes(h[12..16].try_into().unwrap()), 44_100);
        assert_eq!(h[18], 0);
    }

    #[test]
    fn tags_layout() {
        let t = opus_tags("v", &[("TITLE", "x")]);
        assert_eq!(&t[..8], b"OpusTags");
        assert_eq!(&t[8..12], &1u32.to_le_bytes());
        assert_eq!(t[12], b'v');
        assert_eq!(&t[13..17], &1u32.to_le_bytes());
        assert_eq!(&t[21..], b"TITLE=x");
    }

    #[test]
    fn headers_then_continuous_granules() {
        let mut m = Muxer::new(7, &opus_head(2, 312, 48_000), &opus_tags("v", &[]), 2);
        let (head, n) = parse_page(m.headers()).unwrap();
        assert_eq!(head.flags, BOS);
        assert_eq!(head.granule, 0);
        let (tags, _) = parse_page(&m.headers()[n..]).unwrap();
        assert_eq!(tags.sequence, 1);
        assert_eq!(tags.granule, 0);
        assert!(m.push(vec![1], 960).is_none());
        let chunk = m.push(vec![2], 960).unwrap();
        let (p, _) = parse_page(&chunk.bytes).unwrap();
        assert_eq!((p.granule, p.sequence, p.packets.len()), (1920, 2, 2));
        assert_eq!(chunk.start, 0);
        m.push(vec![3], 960);
        let chunk = m.push(vec![4], 960).unwrap();
        let (p, _) = parse_page(&chunk.bytes).unwrap();
        assert_eq!((p.granule, p.sequence, p.serial), (3840, 3, 7));
        assert_eq!(chunk.start, 1920);
    }
}
