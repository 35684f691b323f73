//! FLAC frame headers (fixed block size): reading a frame's number and
//! moving a frame to another number, with both CRCs recomputed.
//!
//! Pure byte manipulation, used by `timeline` to give every listener frame
//! numbers that start at zero; `flac` tests it against flacenc's frames.

/// Where a frame header's coded number starts: after sync code, block
/// size and rate, channels and sample size.
const NUMBER_AT: usize = 4;

/// The frame number of a fixed-block-size frame, if `frame` starts with a
/// valid one.
pub fn frame_number(frame: &[u8]) -> Option<u64> {
    header_fields(frame).map(|(number, _, _)| number)
}

/// A copy of `frame` with frame number `number`: the header's coded number
/// rewritten (its length may change), header CRC-8 and frame CRC-16
/// recomputed. `None` if `frame` is not a whole fixed-block-size frame.
pub fn renumber(frame: &[u8], number: u64) -> Option<Vec<u8>> {
    let (_, number_len, header_len) = header_fields(frame)?;
    if frame.len() < header_len + 2 || number >= 1 << 31 {
        return None;
    }
    let mut out = Vec::with_capacity(frame.len() + 6);
    out.extend_from_slice(&frame[..NUMBER_AT]);
    out.extend_from_slice(&utf8_number(number));
    // Optional block size and sample rate bytes, up to (not including) the CRC-8.
    out.extend_from_slice(&frame[NUMBER_AT + number_len..header_len - 1]);
    out.push(crc8(&out));
    out.extend_from_slice(&frame[header_len..frame.len() - 2]);
    out.extend_from_slice(&crc16(&out).to_be_bytes());
    Some(out)
}

/// Parses a frame header: (frame number, its coded length, header length
/// including the CRC-8), after checking the sync code and the CRC-8.
fn header_fields(frame: &[u8]) -> Option<(u64, usize, usize)> {
    // 0xFFF8: sync code, reserved 0, fixed block size (numbers count frames).
    if frame.len() < NUMBER_AT + 2 || frame[0] != 0xFF || frame[1] != 0xF8 {
        return None;
    }
    let first = frame[NUMBER_AT];
    let extra = first.leading_ones() as usize;
    let (number_len, mut number) = match extra {
        0 => (1, u64::from(first)),
        2..=6 => (extra, u64::from(first & (0x7F >> extra))),
        _ => return None,
    };
    for &b in frame.get(NUMBER_AT + 1..NUMBER_AT + number_len)? {
        if b & 0xC0 != 0x80 {
            return None;
        }
        number = number << 6 | u64::from(b & 0x3F);
    }
    let block_bytes = match frame[2] >> 4 {
        6 => 1,
        7 => 2,
        _ => 0,
    };
    let rate_bytes = match frame[2] & 0x0F {
        12 => 1,
        13 | 14 => 2,
        _ => 0,
    };
    let header_len = NUMBER_AT + number_len + block_bytes + rate_bytes + 1;
    let header = frame.get(..header_len)?;
    (crc8(&header[..header_len - 1]) == header[header_len - 1])
        .then_some((number, number_len, header_len))
}

/// FLAC's "UTF-8" coding of a frame number (up to 31 bits).
fn utf8_number(n: u64) -> Vec<u8> {
    if n < 0x80 {
        return vec![n as u8];
    }
    // Each byte after the first carries 6 bits; the first 7 - len.
    let len = (2..6).find(|&len| n < 1 << (5 * len + 1)).unwrap_or(6);
    let mut out = vec![0u8; len];
    let mut rest = n;
    for b in out[1..].iter_mut().rev() {
        *b = 0x80 | (rest & 0x3F) as u8;
        rest >>= 6;
    }
    out[0] = (0xFF00u16 >> len) as u8 | rest as u8;
    out
}

/// CRC-8 of a frame header: polynomial 0x07, initial value 0.
fn crc8(data: &[u8]) -> u8 {
    static CRC: crc::Crc<u8> = crc::Crc::<u8>::new(&crc::CRC_8_SMBUS);
    CRC.checksum(data)
}

/// CRC-16 of a whole frame: polynomial 0x8005, initial value 0.
fn crc16(data: &[u8]) -> u16 {
    static CRC: crc::Crc<u16, crc::Table<16>> =
        crc::Crc::<u16, crc::Table<16>>::new(&crc::CRC_16_UMTS);
    CRC.checksum(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_coded_as_flac_specifies() {
        assert_eq!(utf8_number(0), [0]);
        assert_eq!(utf8_number(0x7F), [0x7F]);
        assert_eq!(utf8_number(0x80), [0xC2, 0x80]);
        assert_eq!(
            utf8_number(0x7FFF_FFFF),
            [0xFD, 0xBF, 0xBF, 0xBF, 0xBF, 0xBF]
        );
        assert_eq!(crc8(b"123456789"), 0xF4);
        assert_eq!(crc16(b"123456789"), 0xFEE8);
    }

    #[test]
    fn non_frames_are_refused() {
        assert_eq!(renumber(b"OggS", 1), None);
        assert_eq!(frame_number(&[0xFF, 0xF8, 0xC9, 0x18, 0x00]), None);
    }
}
