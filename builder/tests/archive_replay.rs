//! A mirror that replays an old, validly signed archive must not move a
//! lock back in time (and roll security updates back with it), and an
//! archive past its `Valid-Until` must not be trusted. The test signs its
//! own small archive with a key it makes, serves it from a loopback HTTP
//! server it starts, and loads it through `Archive::load` — the function
//! `builder lock` (`Pipeline::lock`) resolves through.

use builder::archive::{Archive, ArchiveError, Pinned};
use builder::fetch::Fetcher;
use builder::mirror::Mirror;
use builder::store::{Store, sha256_hex};
use debian::relation::parse_relation;
use debian::release::{Keyring, ReleaseError, format_rfc2822_utc};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use test_support::gpg::{Algorithm, Gpg};

const DAY: i64 = 86_400;
const SUITE: &str = "trixie";

/// A signing key of our own, made by GnuPG (an RSA primary key with a
/// signing subkey, like Debian's), and the keyring that trusts only it.
/// `None` when gpg is missing (skipped; a failure under CI).
fn signing_key() -> Option<(Gpg, Keyring)> {
    let gpg = Gpg::new()?;
    gpg.key_with_signing_subkey(UID, Algorithm::Rsa2048);
    let keyring = Keyring::from_armored(&[("test-archive.asc", &gpg.public_key(UID))]).unwrap();
    Some((gpg, keyring))
}

const UID: &str = "Test Archive Signing Key <archive@example.invalid>";

/// `main/binary-arm64/Packages.xz` with one package.
fn packages_xz() -> Vec<u8> {
    let text = format!(
        "Package: hello\nVersion: 1.0-1\nArchitecture: arm64\nFilename: pool/main/h/hello/hello_1.0-1_arm64.deb\nSize: 1234\nSHA256: {}\n\n",
        sha256_hex(b"hello")
    );
    let mut xz = Vec::new();
    let mut encoder = xz2::write::XzEncoder::new(&mut xz, 6);
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap();
    xz
}

/// The suite's `InRelease`, dated `date`, signed by `key`.
fn in_release(key: &Gpg, date: i64, valid_until: Option<i64>, index: &[u8]) -> String {
    let mut text = format!(
        "Origin: Test\nSuite: stable\nCodename: {SUITE}\nDate: {}\n",
        format_rfc2822_utc(date)
    );
    if let Some(valid_until) = valid_until {
        text.push_str(&format!(
            "Valid-Until: {}\n",
            format_rfc2822_utc(valid_until)
        ));
    }
    text.push_str(&format!(
        "Architectures: arm64\nComponents: main\nSHA256:\n {} {} main/binary-arm64/Packages.xz\n",
        sha256_hex(index),
        index.len()
    ));
    key.clearsign(UID, "SHA512", &text)
}

/// A mirror serving the suite signed by `key`, dated `date`.
fn mirror(key: &Gpg, date: i64, valid_until: Option<i64>) -> Mirror {
    let index = packages_xz();
    let release = in_release(key, date, valid_until, &index);
    let files = BTreeMap::from([
        (
            format!("/debian/dists/{SUITE}/InRelease"),
            release.into_bytes(),
        ),
        (
            format!("/debian/dists/{SUITE}/main/binary-arm64/Packages.xz"),
            index,
        ),
    ]);
    let url = format!(
        "{}/debian",
        test_support::http::serve(Arc::new(Mutex::new(files)))
    );
    Mirror {
        url,
        origin: "test".into(),
    }
}

/// An existing lock made from the archive of `date`.
fn pinned(date: i64) -> Pinned {
    Pinned {
        lock: PathBuf::from("boards/test.lock"),
        board: "test".into(),
        date: format_rfc2822_utc(date),
        timestamp: date,
    }
}

fn load(
    mirror: Mirror,
    keyring: &Keyring,
    pinned: Option<&Pinned>,
) -> Result<Archive, ArchiveError> {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    Archive::load(
        &Fetcher::new(mirror),
        &store,
        keyring,
        SUITE,
        &["main".to_string()],
        "arm64",
        pinned,
    )
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn an_archive_as_new_as_the_lock_or_newer_is_loaded() {
    let Some((key, keyring)) = signing_key() else {
        return;
    };
    let locked = now() - 10 * DAY;
    for date in [locked, locked + DAY] {
        let archive = load(
            mirror(&key, date, Some(now() + 7 * DAY)),
            &keyring,
            Some(&pinned(locked)),
        )
        .unwrap();
        assert_eq!(archive.release.timestamp, date);
        let request = (parse_relation("hello").unwrap(), "test".to_string());
        debian::resolve::resolve(&archive.universe, &[request], &Default::default()).unwrap();
    }
}

#[test]
fn an_archive_older_than_the_lock_is_refused_as_a_replay() {
    let Some((key, keyring)) = signing_key() else {
        return;
    };
    let locked = now() - 10 * DAY;
    let older = locked - 30 * DAY;
    let served = mirror(&key, older, None);
    let in_release = format!("{}/dists/{SUITE}/InRelease", served.url);
    let error = load(served, &keyring, Some(&pinned(locked)))
        .err()
        .expect("the archive must be refused");
    assert!(matches!(error, ArchiveError::Older { .. }), "{error}");
    let error = error.to_string();
    for expected in [
        in_release.as_str(),
        &format_rfc2822_utc(older),
        &format_rfc2822_utc(locked),
        "boards/test.lock",
        "replayed or stale mirror",
        "Use an up-to-date mirror",
        "delete boards/test.lock and run `cargo run -p builder -- lock --board test`",
    ] {
        assert!(error.contains(expected), "{expected:?} missing in: {error}");
    }
    // Without a lock to compare with, the same archive is fine.
    load(mirror(&key, older, None), &keyring, None).unwrap();
}

#[test]
fn an_archive_past_its_valid_until_is_refused() {
    let Some((key, keyring)) = signing_key() else {
        return;
    };
    let date = now() - 10 * DAY;
    let valid_until = now() - 3 * DAY;
    let served = mirror(&key, date, Some(valid_until));
    let in_release = format!("{}/dists/{SUITE}/InRelease", served.url);
    let error = load(served, &keyring, None)
        .err()
        .expect("the archive must be refused");
    assert!(matches!(error, ArchiveError::Expired { .. }), "{error}");
    let error = error.to_string();
    assert!(error.contains(&in_release), "{error}");
    assert!(
        error.contains(&format!("expired at {}", format_rfc2822_utc(valid_until))),
        "{error}"
    );
    assert!(error.contains("up-to-date mirror"), "{error}");
}

#[test]
fn only_the_given_keyring_is_trusted() {
    let Some((key, _)) = signing_key() else {
        return;
    };
    let Some((_, other)) = signing_key() else {
        return;
    };
    let error = load(mirror(&key, now(), None), &other, None)
        .err()
        .expect("the archive must be refused");
    assert!(
        matches!(
            error,
            ArchiveError::Release(ReleaseError::BadSignature { .. })
        ),
        "{error}"
    );
}
