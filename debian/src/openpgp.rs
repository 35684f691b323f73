//! The part of OpenPGP (RFC 9580, formerly RFC 4880) a Debian archive needs:
//! reading ASCII-armored public keys with their signing subkeys, and
//! checking the version 4 RSA signatures of a cleartext-signed `InRelease`.
//!
//! Written here rather than taken from a crate: the full OpenPGP crates
//! (`pgp`, `sequoia-openpgp`) bring every cipher and curve and were 40 % of
//! the builder's first compile, to check one kind of signature. What is
//! supported is deliberately narrow, and everything else is refused:
//!
//! - keys and signatures of version 4, RSA (algorithms 1 and 3), digests
//!   SHA-256, SHA-384 and SHA-512 (never SHA-1 or MD5);
//! - a subkey is trusted only with a valid binding signature (type 0x18) by
//!   its primary key; a key or subkey with a valid revocation is dropped;
//! - a signature with an unknown *critical* hashed subpacket is invalid;
//! - signatures by other algorithms (Debian's EdDSA release key signs
//!   beside the RSA archive keys) are skipped, so every trixie `InRelease`
//!   verifies through its RSA signatures.
//!
//! Keys come only from the keyring files we ship, so key expiry and
//! third-party certifications are not consulted; the freshness of the
//! archive is `Valid-Until`'s job (see `archive`).

use rsa::{BigUint, Pkcs1v15Sign, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// Why OpenPGP data could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(String);

fn bad<T>(reason: impl Into<String>) -> Result<T, FormatError> {
    Err(FormatError(reason.into()))
}

/// An RSA public key able to sign: a primary key or a bound subkey.
#[derive(Debug, Clone)]
pub struct SigningKey {
    rsa: RsaPublicKey,
}

/// A version 4 signature, as far as verification needs it.
#[derive(Debug, Clone)]
pub struct Signature {
    kind: u8,
    algorithm: u8,
    hash: u8,
    /// Version through the hashed subpackets: hashed after the data.
    hashed_part: Vec<u8>,
    /// Whether the hashed area holds a critical subpacket we do not know.
    unknown_critical: bool,
    /// Key flags from the hashed area, if any.
    key_flags: Option<u8>,
    left16: [u8; 2],
    value: Vec<u8>,
}

/// Signature types (RFC 9580 §5.2.1).
const CANONICAL_TEXT: u8 = 0x01;
const SUBKEY_BINDING: u8 = 0x18;
const KEY_REVOCATION: u8 = 0x20;
const SUBKEY_REVOCATION: u8 = 0x28;

/// The key flag "may sign data".
const SIGN_DATA: u8 = 0x02;

/// Public-key algorithms 1 (RSA) and 3 (RSA, sign only): the only ones checked.
fn is_rsa_algorithm(algorithm: u8) -> bool {
    matches!(algorithm, 1 | 3)
}

/// Packet tags.
const TAG_SIGNATURE: u8 = 2;
const TAG_PUBLIC_KEY: u8 = 6;
const TAG_PUBLIC_SUBKEY: u8 = 14;

/// Splits binary OpenPGP data into (tag, body) packets (old and new formats).
pub fn packets(mut data: &[u8]) -> Result<Vec<(u8, &[u8])>, FormatError> {
    let mut packets = Vec::new();
    while let Some((&header, rest)) = data.split_first() {
        if header & 0x80 == 0 {
            return bad("not an OpenPGP packet header");
        }
        let (tag, len, rest) = if header & 0x40 != 0 {
            let (len, rest) = new_length(rest)?;
            (header & 0x3f, len, rest)
        } else {
            let width = match header & 0x03 {
                0 => 1,
                1 => 2,
                2 => 4,
                _ => return bad("indeterminate-length packets are not supported"),
            };
            let (bytes, rest) = split(rest, width)?;
            let len = bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
            ((header >> 2) & 0x0f, len, rest)
        };
        let (body, rest) = split(rest, len)?;
        packets.push((tag, body));
        data = rest;
    }
    Ok(packets)
}

/// A new-format packet length (partial lengths are refused: nothing we
/// read is streamed).
fn new_length(data: &[u8]) -> Result<(usize, &[u8]), FormatError> {
    match data.first() {
        Some(&first) if first < 192 => Ok((usize::from(first), &data[1..])),
        Some(&first) if first < 224 => {
            let (bytes, rest) = split(data, 2)?;
            Ok((
                (usize::from(first - 192) << 8) + usize::from(bytes[1]) + 192,
                rest,
            ))
        }
        Some(255) => {
            let (bytes, rest) = split(&data[1..], 4)?;
            Ok((u32::from_be_bytes(bytes.try_into().unwrap()) as usize, rest))
        }
        Some(_) => bad("partial-length packets are not supported"),
        None => bad("truncated packet header"),
    }
}

fn split(data: &[u8], len: usize) -> Result<(&[u8], &[u8]), FormatError> {
    data.split_at_checked(len)
        .ok_or_else(|| FormatError("truncated packet".into()))
}

/// A big-endian 16-bit number, and the rest.
fn be16(data: &[u8]) -> Result<(usize, &[u8]), FormatError> {
    let (bytes, rest) = split(data, 2)?;
    Ok((usize::from(u16::from_be_bytes([bytes[0], bytes[1]])), rest))
}

/// A multiprecision integer: its bytes without leading zeros, and the rest.
fn mpi(data: &[u8]) -> Result<(&[u8], &[u8]), FormatError> {
    let (bits, rest) = be16(data)?;
    split(rest, bits.div_ceil(8))
}

/// A version 4 RSA public key packet's key, or None for other algorithms.
fn rsa_key(body: &[u8]) -> Result<Option<RsaPublicKey>, FormatError> {
    let [version, _, _, _, _, algorithm, material @ ..] = body else {
        return bad("truncated public key packet");
    };
    if *version != 4 || !is_rsa_algorithm(*algorithm) {
        return Ok(None);
    }
    let (n, rest) = mpi(material)?;
    let (e, _) = mpi(rest)?;
    RsaPublicKey::new(BigUint::from_bytes_be(n), BigUint::from_bytes_be(e))
        .map(Some)
        .or_else(|e| bad(format!("unusable RSA key: {e}")))
}

fn parse_signature(body: &[u8]) -> Result<Option<Signature>, FormatError> {
    let [version, kind, algorithm, hash, rest @ ..] = body else {
        return bad("truncated signature packet");
    };
    if *version != 4 {
        return Ok(None);
    }
    let (hashed_len, rest) = be16(rest)?;
    let (hashed, rest) = split(rest, hashed_len)?;
    let (unhashed_len, rest) = be16(rest)?;
    let (_, rest) = split(rest, unhashed_len)?;
    let (left16, rest) = split(rest, 2)?;
    let (unknown_critical, key_flags) = read_subpackets(hashed)?;
    let value = if is_rsa_algorithm(*algorithm) {
        mpi(rest)?.0.to_vec()
    } else {
        Vec::new()
    };
    Ok(Some(Signature {
        kind: *kind,
        algorithm: *algorithm,
        hash: *hash,
        hashed_part: body[..6 + hashed.len()].to_vec(),
        unknown_critical,
        key_flags,
        left16: [left16[0], left16[1]],
        value,
    }))
}

/// Walks the hashed subpackets: (an unknown critical one is present, key flags).
fn read_subpackets(mut area: &[u8]) -> Result<(bool, Option<u8>), FormatError> {
    let mut unknown_critical = false;
    let mut key_flags = None;
    while !area.is_empty() {
        let (len, rest) = new_length(area)?;
        let (subpacket, rest) = split(rest, len)?;
        area = rest;
        let Some((&kind, data)) = subpacket.split_first() else {
            return bad("empty signature subpacket");
        };
        match kind & 0x7f {
            // creation time, issuer key ID, issuer fingerprint, notations,
            // preferences, primary user ID, policy URI, features, key server
            // preferences: nothing a signature's validity depends on here.
            2 | 11 | 16 | 20 | 21 | 22 | 23 | 25 | 26 | 30 | 33 | 34 => {}
            // key expiration: see the module documentation.
            9 => {}
            27 => key_flags = data.first().copied(),
            _ if kind & 0x80 != 0 => unknown_critical = true,
            _ => {}
        }
    }
    Ok((unknown_critical, key_flags))
}

/// The PKCS #1 scheme and digest of `data ‖ hashed part ‖ trailer` for a
/// supported hash algorithm.
fn digest(signature: &Signature, data: &[&[u8]]) -> Option<(Pkcs1v15Sign, Vec<u8>)> {
    fn run<D: Digest>(signature: &Signature, data: &[&[u8]]) -> Vec<u8> {
        let mut hasher = D::new();
        for piece in data {
            hasher.update(piece);
        }
        hasher.update(&signature.hashed_part);
        hasher.update([4, 0xff]);
        hasher.update((signature.hashed_part.len() as u32).to_be_bytes());
        hasher.finalize().to_vec()
    }
    match signature.hash {
        8 => Some((
            Pkcs1v15Sign::new::<Sha256>(),
            run::<Sha256>(signature, data),
        )),
        9 => Some((
            Pkcs1v15Sign::new::<Sha384>(),
            run::<Sha384>(signature, data),
        )),
        10 => Some((
            Pkcs1v15Sign::new::<Sha512>(),
            run::<Sha512>(signature, data),
        )),
        _ => None,
    }
}

impl Signature {
    /// Whether this is an RSA signature (the only kind checked).
    pub fn is_rsa(&self) -> bool {
        is_rsa_algorithm(self.algorithm)
    }

    /// Whether `key` made this signature over `data` (the pieces hashed in order).
    fn verify(&self, key: &RsaPublicKey, data: &[&[u8]]) -> bool {
        if !self.is_rsa() || self.unknown_critical {
            return false;
        }
        let Some((scheme, digest)) = digest(self, data) else {
            return false;
        };
        // An MPI drops leading zero bytes, so one signature in 256 is
        // shorter than the modulus; PKCS #1 wants it at the key's length.
        let size = rsa::traits::PublicKeyParts::size(key);
        if self.value.len() > size {
            return false;
        }
        let mut value = vec![0; size - self.value.len()];
        value.extend_from_slice(&self.value);
        digest[..2] == self.left16 && key.verify(scheme, &digest, &value).is_ok()
    }
}

/// What a key packet's body contributes to a hash: 0x99, length, body.
fn key_hash_input(body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x99];
    bytes.extend_from_slice(&(body.len() as u16).to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

impl SigningKey {
    /// Whether `signature` by this key covers canonical `text`.
    pub fn verifies(&self, signature: &Signature, text: &[u8]) -> bool {
        signature.kind == CANONICAL_TEXT && signature.verify(&self.rsa, &[text])
    }
}

/// The usable signing keys of one transferable public key (a primary key,
/// its user IDs and subkeys, each followed by its signatures), binary.
pub fn signing_keys(data: &[u8]) -> Result<Vec<SigningKey>, FormatError> {
    let packets = packets(data)?;
    let Some(&(TAG_PUBLIC_KEY, primary_body)) = packets.first() else {
        return bad("does not start with a public key packet");
    };
    let Some(primary) = rsa_key(primary_body)? else {
        return bad("the primary key is not a version 4 RSA key");
    };
    let primary_input = key_hash_input(primary_body);
    let revoked = packets.iter().any(|&(tag, body)| {
        tag == TAG_SIGNATURE
            && parse_signature(body)
                .ok()
                .flatten()
                .is_some_and(|s| s.kind == KEY_REVOCATION && s.verify(&primary, &[&primary_input]))
    });
    if revoked {
        return bad("the primary key is revoked");
    }
    let mut keys = vec![SigningKey {
        rsa: primary.clone(),
    }];
    // Each subkey with the signatures that follow it.
    let mut index = 1;
    while index < packets.len() {
        let (tag, body) = packets[index];
        index += 1;
        if tag != TAG_PUBLIC_SUBKEY {
            continue;
        }
        let mut bound = false;
        let mut revoked = false;
        let input = [primary_input.as_slice(), &key_hash_input(body)].concat();
        while let Some(&(TAG_SIGNATURE, sig)) = packets.get(index) {
            index += 1;
            let Some(signature) = parse_signature(sig)? else {
                continue;
            };
            let valid = signature.verify(&primary, &[&input]);
            match signature.kind {
                SUBKEY_BINDING if valid => {
                    bound |= signature
                        .key_flags
                        .is_none_or(|flags| flags & SIGN_DATA != 0)
                }
                SUBKEY_REVOCATION if valid => revoked = true,
                _ => {}
            }
        }
        if bound
            && !revoked
            && let Some(rsa) = rsa_key(body)?
        {
            keys.push(SigningKey { rsa });
        }
    }
    Ok(keys)
}

/// A cleartext-signed document, taken apart.
#[derive(Debug, Clone)]
pub struct Cleartext {
    /// The text as signed, with LF line endings.
    pub text: String,
    /// Its canonical form: the bytes the signatures cover.
    pub canonical: Vec<u8>,
    pub signatures: Vec<Signature>,
}

const SIGNED_MESSAGE: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const SIGNATURE_BEGIN: &str = "-----BEGIN PGP SIGNATURE-----";
const SIGNATURE_END: &str = "-----END PGP SIGNATURE-----";

/// Reads a cleartext-signed document (RFC 9580 §7).
pub fn cleartext(document: &str) -> Result<Cleartext, FormatError> {
    let mut lines = document
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l));
    if lines.next() != Some(SIGNED_MESSAGE) {
        return bad(format!("does not start with {SIGNED_MESSAGE}"));
    }
    // Armor headers (`Hash: ...`) up to the empty line.
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        if !line.contains(": ") {
            return bad(format!("bad armor header {line:?}"));
        }
    }
    let mut text_lines = Vec::new();
    let mut found_signature = false;
    for line in lines.by_ref() {
        if line == SIGNATURE_BEGIN {
            found_signature = true;
            break;
        }
        text_lines.push(line.strip_prefix("- ").unwrap_or(line));
    }
    if !found_signature {
        return bad(format!("no {SIGNATURE_BEGIN} line"));
    }
    let armored: Vec<&str> = lines.collect();
    let signatures = packets(&dearmor(&armored, SIGNATURE_END)?)?
        .into_iter()
        .filter(|&(tag, _)| tag == TAG_SIGNATURE)
        .map(|(_, body)| parse_signature(body))
        .filter_map(Result::transpose)
        .collect::<Result<Vec<_>, _>>()?;
    if signatures.is_empty() {
        return bad("no version 4 signature");
    }
    // The signed text ends before the line break that precedes the
    // signature; trailing spaces and tabs are not signed; lines end in CRLF.
    let canonical = text_lines
        .iter()
        .map(|line| line.trim_end_matches([' ', '\t']))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes();
    Ok(Cleartext {
        text: text_lines.join("\n"),
        canonical,
        signatures,
    })
}

/// The binary data of an ASCII-armored block, given the lines after its
/// BEGIN line; its CRC-24, when present, must match.
fn dearmor(lines: &[&str], end: &str) -> Result<Vec<u8>, FormatError> {
    let Some(end_at) = lines.iter().position(|l| l.trim_end() == end) else {
        return bad(format!("no {end} line"));
    };
    let lines = &lines[..end_at];
    // Armor headers (`Comment: ...`) end at the first empty line, if any.
    let body_start = match lines.iter().position(|l| l.trim().is_empty()) {
        Some(blank) if lines[..blank].iter().all(|l| l.contains(": ")) => blank + 1,
        _ => 0,
    };
    let mut base64 = String::new();
    let mut checksum = None;
    for line in &lines[body_start..] {
        let line = line.trim();
        if let Some(crc) = line.strip_prefix('=') {
            checksum = Some(crc.to_string());
            break;
        }
        base64.push_str(line);
    }
    use base64ct::Encoding as _;
    let data = base64ct::Base64::decode_vec(&base64)
        .or_else(|e| bad(format!("bad base64 in the armor: {e}")))?;
    if let Some(checksum) = checksum {
        let expected =
            base64ct::Base64::decode_vec(&checksum).or_else(|_| bad("bad armor checksum"))?;
        if expected != crc24(&data).to_be_bytes()[1..] {
            return bad("the armor checksum does not match its data");
        }
    }
    Ok(data)
}

/// The armor's CRC-24 (RFC 9580 §6.1).
fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0xB704CE;
    for &byte in data {
        crc ^= u32::from(byte) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x1000000 != 0 {
                crc ^= 0x1864CFB;
            }
        }
    }
    crc & 0xFFFFFF
}

/// The binary data of an armored public key block.
pub fn dearmor_public_key(armored: &str) -> Result<Vec<u8>, FormatError> {
    let lines: Vec<&str> = armored.lines().collect();
    let Some(begin) = lines
        .iter()
        .position(|l| l.trim_end() == "-----BEGIN PGP PUBLIC KEY BLOCK-----")
    else {
        return bad("no -----BEGIN PGP PUBLIC KEY BLOCK----- line");
    };
    dearmor(&lines[begin + 1..], "-----END PGP PUBLIC KEY BLOCK-----")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc24_of_a_known_input() {
        // The armor checksum of the empty string is the initial value.
        assert_eq!(crc24(b""), 0xB704CE);
        assert_eq!(crc24(b"123456789"), 0x21CF02);
    }

    #[test]
    fn packet_lengths_old_and_new() {
        // old format, tag 2, one-byte length; new format, tag 14, two-byte length
        let mut data = vec![0x88, 3, 1, 2, 3, 0xce, 192, 10];
        data.extend(vec![7; 202]);
        let parsed = packets(&data).unwrap();
        assert_eq!(parsed[0], (2, &[1u8, 2, 3][..]));
        assert_eq!(parsed[1].0, 14);
        assert_eq!(parsed[1].1.len(), 202);
        assert!(packets(&[0x88, 5, 1]).is_err(), "truncated");
        assert!(packets(&[0x12]).is_err(), "not a header");
    }

    #[test]
    fn an_empty_signature_block_is_refused() {
        let document = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n- -- dashes\nspaces  \t\nlast\n-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n";
        let error = cleartext(document).unwrap_err();
        assert_eq!(error.0, "no version 4 signature");
    }
}
