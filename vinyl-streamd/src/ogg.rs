//! Ogg page framing (RFC 3533): building pages and parsing them back.
//!
//! Pure byte manipulation, no I/O, so it is unit-tested in isolation.

/// Page header flag: first page of a logical stream.
pub const BOS: u8 = 0x02;
/// Page header flag: last page of a logical stream.
pub const EOS: u8 = 0x04;

/// Writes the pages of one logical Ogg stream.
#[derive(Debug)]
pub struct PageWriter {
    serial: u32,
    sequence: u32,
}

impl PageWriter {
    /// A writer for the logical stream with this serial number.
    pub fn new(serial: u32) -> Self {
        Self {
            serial,
            sequence: 0,
        }
    }

    /// One page holding whole `packets`, ending at `granule`.
    ///
    /// Packets are never split across pages: at most 255 lacing values fit a
    /// page, which is far more than a few Opus packets need.
    pub fn page(&mut self, packets: &[&[u8]], granule: u64, flags: u8) -> Vec<u8> {
        let mut lacing = Vec::new();
        for p in packets {
            lacing.extend(std::iter::repeat_n(255u8, p.len() / 255));
            lacing.push((p.len() % 255) as u8);
        }
        assert!(lacing.len() <= 255, "packets too large for one Ogg page");
        let body: usize = packets.iter().map(|p| p.len()).sum();
        let mut page = Vec::with_capacity(27 + lacing.len() + body);
        page.extend_from_slice(b"OggS");
        page.push(0); // version
        page.push(flags);
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&self.serial.to_le_bytes());
        page.extend_from_slice(&self.sequence.to_le_bytes());
        page.extend_from_slice(&[0; 4]); // CRC, filled below
        page.push(lacing.len() as u8);
        page.extend_from_slice(&lacing);
        for p in packets {
            page.extend_from_slice(p);
        }
        let crc = crc32(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        self.sequence = self.sequence.wrapping_add(1);
        page
    }
}

/// The page sequence number of the page at the start of `page`, if it
/// looks like one.
pub fn sequence(page: &[u8]) -> Option<u32> {
    if page.len() < 27 || &page[..4] != b"OggS" {
        return None;
    }
    Some(u32::from_le_bytes(page[18..22].try_into().unwrap()))
}

/// A copy of `page` moved onto another timeline: `origin` subtracted from
/// its granule position (unless it has none), `sequence` as its sequence
/// number, and the CRC recomputed.
pub fn restamp(page: &[u8], origin: u64, sequence: u32) -> Vec<u8> {
    let mut page = page.to_vec();
    let granule = u64::from_le_bytes(page[6..14].try_into().unwrap());
    // All ones: no packet ends on this page, so it has no position.
    if granule != u64::MAX {
        page[6..14].copy_from_slice(&granule.wrapping_sub(origin).to_le_bytes());
    }
    page[18..22].copy_from_slice(&sequence.to_le_bytes());
    page[22..26].fill(0);
    let crc = crc32(&page);
    page[22..26].copy_from_slice(&crc.to_le_bytes());
    page
}

/// A page parsed back from bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Header flags (`BOS`, `EOS`, continuation).
    pub flags: u8,
    /// Granule position at the end of the page.
    pub granule: u64,
    /// Logical stream serial number.
    pub serial: u32,
    /// Page sequence number.
    pub sequence: u32,
    /// Whole packets in the page (the writer never splits packets).
    pub packets: Vec<Vec<u8>>,
}

/// Why bytes are not a valid page.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// More bytes are needed.
    #[error("incomplete page")]
    Incomplete,
    /// The bytes do not start with a valid page.
    #[error("invalid page: {0}")]
    Invalid(&'static str),
}

/// Parses the page at the start of `buf`; returns it and its length in bytes.
pub fn parse_page(buf: &[u8]) -> Result<(Page, usize), ParseError> {
    if buf.len() < 27 {
        return Err(ParseError::Incomplete);
    }
    if &buf[..4] != b"OggS" {
        return Err(ParseError::Invalid("no capture pattern"));
    }
    if buf[4] != 0 {
        return Err(ParseError::Invalid("unknown version"));
    }
    let nsegs = buf[26] as usize;
    if buf.len() < 27 + nsegs {
        return Err(ParseError::Incomplete);
    }
    let lacing = &buf[27..27 + nsegs];
    let body_len: usize = lacing.iter().map(|&l| l as usize).sum();
    let len = 27 + nsegs + body_len;
    if buf.len() < len {
        return Err(ParseError::Incomplete);
    }
    let mut copy = buf[..len].to_vec();
    copy[22..26].fill(0);
    let crc = u32::from_le_bytes(buf[22..26].try_into().unwrap());
    if crc32(&copy) != crc {
        return Err(ParseError::Invalid("bad CRC"));
    }
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut pos = 27 + nsegs;
    for &l in lacing {
        current.extend_from_slice(&buf[pos..pos + l as usize]);
        pos += l as usize;
        if l < 255 {
            packets.push(std::mem::take(&mut current));
        }
    }
    let page = Page {
        flags: buf[5],
        granule: u64::from_le_bytes(buf[6..14].try_into().unwrap()),
        serial: u32::from_le_bytes(buf[14..18].try_into().unwrap()),
        sequence: u32::from_le_bytes(buf[18..22].try_into().unwrap()),
        packets,
    };
    Ok((page, len))
}

/// The Ogg CRC-32: polynomial 0x04c11db7, not reflected, initial value 0.
/// Sliced 16 bytes at a time (the `crc` crate): every listener's page is
/// checksummed again when its positions are rewritten.
pub fn crc32(data: &[u8]) -> u32 {
    const OGG: crc::Algorithm<u32> = crc::Algorithm {
        width: 32,
        poly: 0x04c1_1db7,
        init: 0,
        refin: false,
        refout: false,
        xorout: 0,
        check: 0x89a1_897f,
        residue: 0,
    };
    static CRC: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&OGG);
    CRC.checksum(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_known_value() {
        // A well-known empty-ish page: CRC over "OggS" header of the spec
        // is hard to quote; instead check the check value of this CRC variant
        // (CRC-32/MPEG-2 without the init/xorout) on "123456789".
        assert_eq!(crc32(b"123456789"), 0x89a1_897f);
        // Bit by bit, from the definition, over a page-sized buffer.
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let mut slow = 0u32;
        for &b in &data {
            slow ^= u32::from(b) << 24;
            for _ in 0..8 {
                slow = if slow & 0x8000_0000 != 0 {
                    (slow << 1) ^ 0x04c1_1db7
                } else {
                    slow << 1
                };
            }
        }
        assert_eq!(crc32(&data), slow);
    }

    #[test]
    fn page_round_trips() {
        let mut w = PageWriter::new(0xdead_beef);
        let big = vec![7u8; 600]; // needs 255,255,90 lacing
        let exact = vec![1u8; 255]; // needs 255,0 lacing
        let bytes = w.page(&[&big, &exact, b"x"], 960, BOS);
        let (page, len) = parse_page(&bytes).unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(page.flags, BOS);
        assert_eq!(page.granule, 960);
        assert_eq!(page.serial, 0xdead_beef);
        assert_eq!(page.sequence, 0);
        assert_eq!(page.packets, vec![big, exact, b"x".to_vec()]);
        let (second, _) = parse_page(&w.page(&[b"y"], 1920, 0)).unwrap();
        assert_eq!(second.sequence, 1);
    }

    #[test]
    fn restamped_page_keeps_packets_and_has_a_valid_crc() {
        let mut w = PageWriter::new(5);
        let original = w.page(&[b"abc", b"de"], 48_000, 0);
        let moved = restamp(&original, 47_040, 2);
        let (page, _) = parse_page(&moved).unwrap();
        assert_eq!((page.granule, page.sequence, page.serial), (960, 2, 5));
        assert_eq!(page.packets, vec![b"abc".to_vec(), b"de".to_vec()]);
        assert_eq!(sequence(&moved), Some(2));
        // Moving back gives the original bytes.
        assert_eq!(restamp(&moved, 0u64.wrapping_sub(47_040), 0), original);
    }

    #[test]
    fn corrupted_and_short_pages_are_rejected() {
        let mut bytes = PageWriter::new(1).page(&[b"hello"], 0, 0);
        assert_eq!(
            parse_page(&bytes[..bytes.len() - 1]),
            Err(ParseError::Incomplete)
        );
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(parse_page(&bytes), Err(ParseError::Invalid("bad CRC")));
    }
}
