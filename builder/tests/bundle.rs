//! RAUC bundles as RAUC itself reads them: the builder's bundles checked
//! with the host's `rauc info --keyring` (Debian's `rauc`), which verifies
//! the CMS signature against the keyring and the dm-verity hash tree over
//! the payload. Also the bad inputs of `builder bundle` and `keygen`.

use builder::bundle::{self, BundleSpec, Region, signing};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// A small stand-in for a root slot: data, then a long run of zeros (as an
/// ext4 slot has), so holes and compression are both exercised.
fn slot_image(dir: &Path) -> Region {
    let mut bytes: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    bytes.resize(16 << 20, 0);
    let path = dir.join("disk.img");
    // The slot sits at an offset inside a bigger file, as in the .img.
    let mut disk = vec![0xee; 1 << 20];
    disk.extend_from_slice(&bytes);
    disk.extend_from_slice(&[0xee; 4096]);
    std::fs::write(&path, disk).unwrap();
    Region {
        path,
        offset: 1 << 20,
        size: bytes.len() as u64,
    }
}

fn spec<'a>(signer: &'a signing::Signer, root: Region, out: PathBuf) -> BundleSpec<'a> {
    BundleSpec {
        compatible: "vinyl-test".into(),
        version: "1.2.3".into(),
        build: "lock sha256:aa tree sha256:bb".into(),
        description: "test bundle".into(),
        root,
        epoch: 1_700_000_000,
        adaptive: true,
        signer,
        out,
    }
}

fn rauc_info(rauc: &Path, keyring: &Path, bundle: &Path) -> (bool, String) {
    let output = Command::new(rauc)
        .arg("info")
        .arg("--keyring")
        .arg(keyring)
        .arg(bundle)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The payload, unpacked by squashfs-tools' `unsquashfs`, holds the slot
/// image and RAUC's block hash index: one SHA-256 per 4 KiB of the image,
/// in order, and the manifest asks for the adaptive method.
fn block_hash_index_matches_the_slot(bundle: &Path, written: &bundle::Bundle, root: &Region) {
    let Some(unsquashfs) = test_support::found(
        "block_hash_index_matches_the_slot",
        which("unsquashfs"),
        || "unsquashfs is not installed (apt-get install squashfs-tools)".into(),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("payload");
    let status = Command::new(unsquashfs)
        .arg("-q")
        .arg("-d")
        .arg(&out)
        .arg(bundle)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "unsquashfs failed on {}",
        bundle.display()
    );
    let manifest = std::fs::read_to_string(out.join("manifest.raucm")).unwrap();
    assert!(
        manifest.contains("\nadaptive=block-hash-index;\n"),
        "{manifest}"
    );
    assert!(written.manifest.image.adaptive);
    let image = std::fs::read(out.join(bundle::IMAGE_NAME)).unwrap();
    let slot = std::fs::read(&root.path).unwrap();
    let slot = &slot[root.offset as usize..(root.offset + root.size) as usize];
    assert!(image == slot, "the bundle's image is not the slot");
    let index = std::fs::read(out.join(bundle::INDEX_NAME)).unwrap();
    assert_eq!(index.len(), slot.len() / 4096 * 32);
    use sha2::Digest as _;
    for (i, (hash, chunk)) in index.chunks(32).zip(slot.chunks(4096)).enumerate() {
        assert_eq!(hash, sha2::Sha256::digest(chunk).as_slice(), "chunk {i}");
    }
}

#[test]
fn rauc_accepts_good_bundles_and_refuses_bad_ones() {
    let Some(rauc) = test_support::found(
        "rauc_accepts_good_bundles_and_refuses_bad_ones",
        which("rauc"),
        || "rauc is not installed (apt-get install rauc)".into(),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let keys = signing::keygen(&dir.path().join("keys"), "test", now).unwrap();
    let other = signing::keygen(&dir.path().join("other"), "other", now).unwrap();
    let signer = signing::Signer::load(&keys.signing_key, &keys.signing_cert, now).unwrap();
    let root = slot_image(dir.path());

    let good = dir.path().join("good.raucb");
    let written = bundle::write(&spec(&signer, root.clone(), good.clone())).unwrap();
    let (ok, text) = rauc_info(&rauc, &keys.ca_cert, &good);
    assert!(ok, "rauc info refused the bundle:\n{text}");
    for expected in [
        "Compatible: \t'vinyl-test'",
        "Version:    \t'1.2.3'",
        "Bundle Format: \tverity",
        "rootfs.ext4",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
    let verity = written.manifest.verity.as_ref().unwrap();
    assert!(text.contains(&verity.hash), "{text}");
    block_hash_index_matches_the_slot(&good, &written, &root);

    // Byte-reproducible: the same inputs give the same bundle, signature
    // included (both key types sign deterministically, no signing time).
    let again = dir.path().join("again.raucb");
    bundle::write(&spec(&signer, root.clone(), again.clone())).unwrap();
    assert_eq!(
        std::fs::read(&good).unwrap(),
        std::fs::read(&again).unwrap()
    );

    // Signed by a CA the keyring does not hold.
    let other_signer = signing::Signer::load(&other.signing_key, &other.signing_cert, now).unwrap();
    let foreign = dir.path().join("foreign.raucb");
    bundle::write(&spec(&other_signer, root.clone(), foreign.clone())).unwrap();
    let (ok, text) = rauc_info(&rauc, &keys.ca_cert, &foreign);
    assert!(!ok, "rauc accepted a bundle from another CA:\n{text}");
    assert!(text.contains("signature"), "{text}");

    // A keyring with both CAs (key rotation) accepts both.
    let both = dir.path().join("both.pem");
    let mut pem = std::fs::read(&keys.ca_cert).unwrap();
    pem.extend(std::fs::read(&other.ca_cert).unwrap());
    std::fs::write(&both, pem).unwrap();
    assert!(rauc_info(&rauc, &both, &good).0);
    assert!(rauc_info(&rauc, &both, &foreign).0);

    let bytes = std::fs::read(&good).unwrap();
    let signature_size = u64::from_be_bytes(bytes[bytes.len() - 8..].try_into().unwrap()) as usize;
    let signature_at = bytes.len() - 8 - signature_size;

    // Damaged signature bytes (the last byte of the signature value).
    let mut damaged = bytes.clone();
    damaged[signature_at + signature_size - 3] ^= 0x40;
    let path = dir.path().join("damaged-signature.raucb");
    std::fs::write(&path, &damaged).unwrap();
    let (ok, text) = rauc_info(&rauc, &keys.ca_cert, &path);
    assert!(!ok, "rauc accepted a damaged signature:\n{text}");

    // A flipped byte in the payload. Host `rauc info` (1.8) checks only the
    // signature of a verity bundle, so it still accepts it; the hash tree
    // is what catches it — on the device dm-verity refuses the block as it
    // is read. `veritysetup verify` runs the same check here: it accepts the
    // good bundle's tree and refuses the flipped one.
    let payload_size = signature_at - verity.size as usize;
    let mut flipped = bytes.clone();
    flipped[payload_size / 2] ^= 1;
    let path = dir.path().join("flipped.raucb");
    std::fs::write(&path, &flipped).unwrap();
    let (ok, text) = rauc_info(&rauc, &keys.ca_cert, &path);
    assert!(
        ok,
        "host rauc info now checks the payload; update this test:\n{text}"
    );
    let Some(veritysetup) = test_support::found(
        "rauc_accepts_good_bundles_and_refuses_bad_ones",
        which("veritysetup")
            .or_else(|| Some(PathBuf::from("/usr/sbin/veritysetup")).filter(|p| p.is_file())),
        || "veritysetup is not installed (apt-get install cryptsetup-bin)".into(),
    ) else {
        return;
    };
    let verify = |bundle: &Path| {
        Command::new(&veritysetup)
            .args(["verify", "--no-superblock", "--hash=sha256"])
            .arg(format!("--data-blocks={}", payload_size / 4096))
            .arg(format!("--hash-offset={payload_size}"))
            .arg(format!("--salt={}", verity.salt))
            .arg(bundle)
            .arg(bundle)
            .arg(&verity.hash)
            .output()
            .unwrap()
    };
    let good_check = verify(&good);
    assert!(
        good_check.status.success(),
        "veritysetup refused the tree: {good_check:?}"
    );
    let flipped_check = verify(&path);
    assert!(
        !flipped_check.status.success(),
        "veritysetup accepted a flipped payload byte"
    );

    // unsquashfs reads the payload: the image inside is the slot, byte for byte.
    if let Some(unsquashfs) = which("unsquashfs") {
        let extract = dir.path().join("extract");
        let payload = dir.path().join("payload.sqfs");
        std::fs::write(&payload, &bytes[..payload_size]).unwrap();
        let status = Command::new(unsquashfs)
            .arg("-d")
            .arg(&extract)
            .arg(&payload)
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
        let image = std::fs::read(extract.join("rootfs.ext4")).unwrap();
        let disk = std::fs::read(&root.path).unwrap();
        assert!(image == disk[root.offset as usize..][..root.size as usize]);
        let manifest = std::fs::read_to_string(extract.join("manifest.raucm")).unwrap();
        assert!(manifest.contains("compatible=vinyl-test"), "{manifest}");
    }
}

/// A user's own PKI, made with OpenSSL: an RSA CA and an RSA signing key
/// in the traditional PKCS#1 form.
#[test]
fn rsa_keys_from_openssl_sign_bundles_rauc_accepts() {
    let test = "rsa_keys_from_openssl_sign_bundles_rauc_accepts";
    let Some(rauc) = test_support::found(test, which("rauc"), || {
        "rauc is not installed (apt-get install rauc)".into()
    }) else {
        return;
    };
    let Some(openssl) = test_support::found(test, which("openssl"), || {
        "openssl is not installed (apt-get install openssl)".into()
    }) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(&openssl)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "openssl {args:?}: {output:?}");
    };
    std::fs::write(
        dir.path().join("leaf.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=own CA",
        "-days",
        "30",
    ]);
    run(&["genrsa", "-traditional", "-out", "signing.key", "2048"]);
    run(&[
        "req",
        "-new",
        "-key",
        "signing.key",
        "-out",
        "signing.csr",
        "-subj",
        "/CN=own signing",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "signing.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-out",
        "signing.pem",
        "-days",
        "30",
        "-extfile",
        "leaf.ext",
    ]);
    let key = std::fs::read_to_string(dir.path().join("signing.key")).unwrap();
    assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{key}");

    let now = SystemTime::now();
    let signer = signing::Signer::load(
        &dir.path().join("signing.key"),
        &dir.path().join("signing.pem"),
        now,
    )
    .unwrap();
    let keyring = signing::read_certificates(&dir.path().join("ca.pem"), "keyring").unwrap();
    signer
        .check_trusted(&keyring, &dir.path().join("ca.pem"))
        .unwrap();
    let bundle_path = dir.path().join("rsa.raucb");
    let root = slot_image(dir.path());
    bundle::write(&spec(&signer, root.clone(), bundle_path.clone())).unwrap();
    let (ok, text) = rauc_info(&rauc, &dir.path().join("ca.pem"), &bundle_path);
    assert!(ok, "rauc info refused an RSA-signed bundle:\n{text}");
    // Deterministic PKCS#1 v1.5: the same bytes again.
    let again = dir.path().join("again.raucb");
    bundle::write(&spec(&signer, root, again.clone())).unwrap();
    assert_eq!(
        std::fs::read(&bundle_path).unwrap(),
        std::fs::read(&again).unwrap()
    );

    // The development CA is not this image's keyring: refused before building.
    let dev = signing::keygen(&dir.path().join("dev"), "dev", now).unwrap();
    let dev_signer = signing::Signer::load(&dev.signing_key, &dev.signing_cert, now).unwrap();
    let error = dev_signer
        .check_trusted(&keyring, &dir.path().join("ca.pem"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("not issued by a CA in the keyring") && error.contains("ca.pem"),
        "{error}"
    );
}

#[test]
fn keys_that_do_not_fit_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let a = signing::keygen(&dir.path().join("a"), "a", now).unwrap();
    let b = signing::keygen(&dir.path().join("b"), "b", now).unwrap();
    let error = signing::Signer::load(&a.signing_key, &b.signing_cert, now)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("does not match"), "{error}");
    assert!(
        error.contains(&b.signing_cert.display().to_string()),
        "{error}"
    );

    // Past the certificate's end: refused, naming the file and the way out.
    let later = now + std::time::Duration::from_secs(25 * 365 * 86_400);
    let error = format!(
        "{:#}",
        signing::Signer::load(&a.signing_key, &a.signing_cert, later)
            .err()
            .unwrap()
    );
    assert!(error.contains("expired"), "{error}");
    assert!(error.contains("signing.cert.pem"), "{error}");

    let missing = dir.path().join("nope.pem");
    let error = format!(
        "{:#}",
        signing::Signer::load(&missing, &a.signing_cert, now)
            .err()
            .unwrap()
    );
    assert!(
        error.contains("nope.pem") && error.contains("cannot read"),
        "{error}"
    );

    // A certificate where the key should be.
    let error = format!(
        "{:#}",
        signing::Signer::load(&a.signing_cert, &a.signing_cert, now)
            .err()
            .unwrap()
    );
    assert!(
        error.contains("not an unencrypted PEM private key"),
        "{error}"
    );

    // keygen never overwrites keys.
    let error = signing::keygen(&dir.path().join("a"), "a", now)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("already exists"), "{error}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&a.signing_key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
