//! Signatures made by GnuPG, checked by `debian::openpgp` through
//! `Keyring`: keys shaped like Debian's (a certification-only primary key
//! with a signing subkey), text that needs dash escaping and trailing-space
//! canonicalisation, each SHA-2 digest, and what must be refused.

use base64ct::Encoding as _;
use debian::openpgp;
use debian::release::{Keyring, ReleaseError};
use test_support::gpg::{Algorithm, Gpg};

const UID: &str = "Test Archive Key <archive@example.invalid>";

/// Lines gpg must dash-escape, trailing blanks, an empty line, CRLF.
const TEXT: &str = "Origin: Test\n- a line starting with a dash\n-----BEGIN PGP SIGNATURE----- (not really)\ntrailing blanks \t \n\nCodename: trixie\r\nlast line";

fn keyring(armored: &str) -> Keyring {
    Keyring::from_armored(&[("test.asc", armored)]).unwrap()
}

#[test]
fn gpg_signatures_by_a_subkey_verify_with_every_sha2_digest() {
    let Some(gpg) = Gpg::new() else { return };
    gpg.key_with_signing_subkey(UID, Algorithm::Rsa2048);
    let keys = keyring(&gpg.public_key(UID));
    for digest in ["SHA256", "SHA384", "SHA512"] {
        let signed = gpg.clearsign(UID, digest, TEXT);
        assert!(signed.contains("\n- -"), "gpg dash-escaped the text");
        let text = keys.verify_cleartext("InRelease", &signed).unwrap();
        assert_eq!(text, TEXT.replace("\r\n", "\n"), "{digest}");
    }
}

#[test]
fn a_changed_text_another_key_or_a_weak_digest_is_refused() {
    let Some(gpg) = Gpg::new() else { return };
    gpg.key_with_signing_subkey(UID, Algorithm::Rsa2048);
    let other = "Other Key <other@example.invalid>";
    gpg.key_with_signing_subkey(other, Algorithm::Rsa2048);
    let keys = keyring(&gpg.public_key(UID));
    let signed = gpg.clearsign(UID, "SHA256", TEXT);

    let changed = signed.replace("Codename: trixie", "Codename: trixiE");
    let refused = |document: &str| {
        matches!(
            keys.verify_cleartext("InRelease", document),
            Err(ReleaseError::BadSignature { .. })
        )
    };
    assert!(refused(&changed), "a changed letter");
    // Trailing blanks are outside the signature; a changed one inside is not.
    assert!(refused(
        &signed.replace("trailing blanks", "trailing  blanks")
    ));
    assert!(
        refused(&gpg.clearsign(other, "SHA256", TEXT)),
        "another key"
    );
    assert!(refused(&gpg.clearsign(UID, "SHA1", TEXT)), "SHA-1");
    // The error names the keys and the signatures found.
    let error = keys
        .verify_cleartext("InRelease", &changed)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("test.asc") && error.contains("1 of them RSA"),
        "{error}"
    );
}

#[test]
fn a_damaged_armor_is_not_a_signed_file() {
    let Some(gpg) = Gpg::new() else { return };
    gpg.key_with_signing_subkey(UID, Algorithm::Rsa2048);
    let keys = keyring(&gpg.public_key(UID));
    let signed = gpg.clearsign(UID, "SHA256", TEXT);
    // One base64 character of the signature changed: the CRC-24 catches it.
    let at = signed.find("-----BEGIN PGP SIGNATURE-----").unwrap() + 40;
    let mut bytes = signed.into_bytes();
    let line_start = at + bytes[at..].iter().position(|&b| b == b'\n').unwrap() + 5;
    bytes[line_start] = if bytes[line_start] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let error = keys
        .verify_cleartext("InRelease", &String::from_utf8(bytes).unwrap())
        .unwrap_err();
    assert!(
        matches!(
            error,
            ReleaseError::NotSigned { .. } | ReleaseError::BadSignature { .. }
        ),
        "{error}"
    );
}

/// Re-armors packets (new-format headers) as a public key block.
fn armor(packets: &[(u8, Vec<u8>)]) -> String {
    let mut binary = Vec::new();
    for (tag, body) in packets {
        binary.push(0xc0 | tag);
        binary.push(255);
        binary.extend_from_slice(&(body.len() as u32).to_be_bytes());
        binary.extend_from_slice(body);
    }
    format!(
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n{}\n-----END PGP PUBLIC KEY BLOCK-----\n",
        base64ct::Base64::encode_string(&binary)
    )
}

fn packets_of(armored: &str) -> Vec<(u8, Vec<u8>)> {
    let binary = openpgp::dearmor_public_key(armored).unwrap();
    openpgp::packets(&binary)
        .unwrap()
        .into_iter()
        .map(|(tag, body)| (tag, body.to_vec()))
        .collect()
}

/// A subkey is trusted only through its primary key's binding: one taken
/// from another key (binding and all) signs nothing for this keyring.
#[test]
fn a_subkey_is_trusted_only_with_its_primary_keys_binding() {
    let Some(gpg) = Gpg::new() else { return };
    gpg.key_with_signing_subkey(UID, Algorithm::Rsa2048);
    let thief = "Thief <thief@example.invalid>";
    gpg.key_with_signing_subkey(thief, Algorithm::Rsa2048);
    let mut grafted = packets_of(&gpg.public_key(UID));
    let theirs = packets_of(&gpg.public_key(thief));
    let subkey_at = theirs.iter().position(|(tag, _)| *tag == 14).unwrap();
    grafted.extend(theirs[subkey_at..].iter().cloned());
    // The re-armored original still works: the test's armor is sound.
    let original = packets_of(&gpg.public_key(UID));
    let keys = keyring(&armor(&original));
    assert!(
        keys.verify_cleartext("InRelease", &gpg.clearsign(UID, "SHA256", TEXT))
            .is_ok()
    );

    let keys = keyring(&armor(&grafted));
    let error = keys
        .verify_cleartext("InRelease", &gpg.clearsign(thief, "SHA256", TEXT))
        .unwrap_err();
    assert!(
        matches!(error, ReleaseError::BadSignature { .. }),
        "{error}"
    );

    // Without its binding signature, the key's own subkey is not trusted.
    let unbound: Vec<_> = original
        .iter()
        .filter(|(tag, body)| !(*tag == 2 && body[1] == 0x18))
        .cloned()
        .collect();
    assert!(unbound.len() < original.len());
    let error = keyring(&armor(&unbound))
        .verify_cleartext("InRelease", &gpg.clearsign(UID, "SHA256", TEXT))
        .unwrap_err();
    assert!(
        matches!(error, ReleaseError::BadSignature { .. }),
        "{error}"
    );
}

/// Only RSA keys are read; an EdDSA key is refused by name, not ignored.
#[test]
fn an_eddsa_key_is_refused_with_its_name() {
    let Some(gpg) = Gpg::new() else { return };
    gpg.key_with_signing_subkey(UID, Algorithm::Ed25519);
    let error = Keyring::from_armored(&[("ed.asc", &gpg.public_key(UID))])
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("ed.asc") && error.contains("RSA"), "{error}");
}
