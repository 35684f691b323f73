//! The image the boot tests run: board qemu-virt plus the test layers
//! `test-shell` (a root shell for the harness) and `test-tone` (a 1 kHz
//! tone into the snd-aloop virtual sound card, which vinyl-streamd
//! captures), built once per test binary through the builder's normal pipeline
//! (the same code `cargo run -p builder` runs), and helpers to derive
//! scenario images from it.

#![allow(dead_code)] // each test binary uses a different part

use builder::config::Project;
use builder::pipeline::{Options, Pipeline};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// A built image and the U-Boot that is its firmware.
pub struct TestImage {
    pub image: PathBuf,
    pub u_boot: PathBuf,
}

/// Whether a boot test runs: only with `QEMU_TESTS=1` or in CI, and then it
/// needs a Debian mirror and the cross toolchain like any build (a local run
/// without them skips, printing why; CI fails).
pub fn prerequisites_or_skip(test: &str) -> bool {
    // Whole boots take minutes: a plain local `cargo test` stays fast.
    if !test_support::in_ci() && std::env::var_os("QEMU_TESTS").is_none() {
        eprintln!(
            "SKIPPED {test}: QEMU boot tests take minutes; run them with QEMU_TESTS=1 (CI runs them)"
        );
        return false;
    }
    test_support::require(test, builder::doctor::missing_build_prerequisites())
}

/// Builds `board` (plus `extra_recipes`) through the builder's pipeline into
/// `target/qemu-tests/images/<board>` with xz level 0 (the tests read the
/// raw image); an up-to-date image is not rewritten. Returns the image.
pub fn build(board: &str, extra_recipes: &[&str]) -> PathBuf {
    build_with(board, extra_recipes, Default::default())
}

/// [`build`] with device settings, as `builder --ssh-key/--ntp/…` give them.
pub fn build_with(
    board: &str,
    extra_recipes: &[&str],
    device: builder::device::Overrides,
) -> PathBuf {
    build_full(board, board, extra_recipes, device, None).0
}

/// What [`build_full`] made: the image and, when asked for, its bundle.
pub type Built = (PathBuf, Option<builder::bundle::Bundle>);

/// Builds `board` plus `extra_recipes` into `target/qemu-tests/images/<out>`,
/// trusting the test CA ([`test_keys`]); with `bundle`, also writes the
/// signed update bundle of that image into `target/qemu-tests/bundles/<out>`,
/// without the block hash index: ota.rs tests RAUC and the A/B backend, and
/// an adaptive install first hashes both 1 GiB slots, minutes under TCG for
/// each of its installs; delivery.rs tests adaptive bundles.
pub fn build_full(
    board: &str,
    out: &str,
    extra_recipes: &[&str],
    device: builder::device::Overrides,
    bundle: Option<&builder::bundle::signing::Signer>,
) -> Built {
    let project = Project::from_workspace();
    let mut options = Options::for_board(&project, board);
    options.extra_recipes = extra_recipes.iter().map(|r| r.to_string()).collect();
    options.device = device;
    options.keyring = Some(test_keys().ca_cert);
    // Test images are release 1.0.0; delivery.rs publishes 2.0.0 over them.
    options.version = Some("1.0.0".to_string().try_into().unwrap());
    // Shared with the builder tests: one cross build of vinyl-streamd.
    options.target_dir = project.root.join("target/builder-tests");
    options.quiet = true;
    let images = project.root.join("target/qemu-tests/images").join(out);
    let bundles = project.root.join("target/qemu-tests/bundles").join(out);
    let pipeline = Pipeline::new(project, &options).expect("loading the board");
    let (lock, tree) = pipeline.rootfs().expect("assembling the root");
    let output = builder::image::OutputOptions {
        gzip: false,
        xz_level: 0,
    };
    let built = pipeline
        .image(&lock, &tree, &images, &output)
        .expect("writing the image");
    let bundle = bundle.map(|signer| {
        pipeline
            .bundle(&built, &tree.digest(), signer, &bundles, false)
            .expect("writing the bundle")
    });
    (built.image, bundle)
}

/// v2 of the qemu-virt test image (`test-update-v2`: one overlay file
/// more) and its signed bundle without block hash index, built once
/// (ota.rs installs it, the power-cut torture too).
pub fn qemu_virt_v2_bundle(signer: &builder::bundle::signing::Signer) -> builder::bundle::Bundle {
    build_full(
        "qemu-virt",
        "qemu-virt-v2",
        &["test-shell", "test-tone", "test-update-v2"],
        test_device(),
        Some(signer),
    )
    .1
    .expect("a bundle was asked for")
}

/// The version [`publish_v2`] gives v2.
pub const PUBLISHED_V2: &str = "2.0.0";

/// Publishes qemu-virt with the test layers plus `test-update-v2` (one
/// overlay file more than the test image) into `out`, as version [`PUBLISHED_V2`],
/// served under `base_url` (delivery.rs, the install timing). Returns the
/// release and the built image.
pub fn publish_v2(
    out: &Path,
    base_url: &str,
) -> (builder::release::Release, builder::image::Built) {
    let project = Project::from_workspace();
    let mut options = Options::for_board(&project, "qemu-virt");
    options.extra_recipes = ["test-shell", "test-tone", "test-update-v2"]
        .iter()
        .map(|r| r.to_string())
        .collect();
    options.device = test_device();
    options.keyring = Some(test_keys().ca_cert);
    options.version = Some(PUBLISHED_V2.to_string().try_into().unwrap());
    options.target_dir = project.root.join("target/builder-tests");
    options.quiet = true;
    let images = project.root.join("target/qemu-tests/images/delivery-v2");
    let pipeline = builder::pipeline::Pipeline::new(project, &options).expect("loading the board");
    let outputs = builder::image::OutputOptions {
        gzip: false,
        xz_level: 0,
    };
    let (rootfs, product) = pipeline
        .build(&images, &outputs, None)
        .expect("building v2");
    let builder::pipeline::Product::SdImage(built) = product else {
        panic!("qemu-virt builds an SD image")
    };
    let release = pipeline
        .publish(
            &built,
            &rootfs.digest,
            &test_signer(),
            &builder::pipeline::PublishOptions {
                out: out.to_path_buf(),
                base_url: Some(base_url.to_string()),
                min_version: Some("1.0.0".to_string().try_into().unwrap()),
            },
        )
        .expect("publishing v2");
    (release, built)
}

/// The test CA and signing key (`builder keygen`), made once in
/// `target/qemu-tests/keys/` and kept (so images are not rebuilt on every
/// run); never keys anyone uses elsewhere.
pub fn test_keys() -> builder::bundle::signing::DevelopmentKeys {
    static KEYS: OnceLock<()> = OnceLock::new();
    let dir = Project::from_workspace()
        .root
        .join("target/qemu-tests/keys");
    KEYS.get_or_init(|| {
        if !dir.join("signing.key.pem").exists() {
            let partial = dir.with_extension("new");
            let _ = std::fs::remove_dir_all(&partial);
            builder::bundle::signing::keygen(&partial, "qemu-tests", std::time::SystemTime::now())
                .unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&partial, &dir).unwrap();
        }
    });
    builder::bundle::signing::DevelopmentKeys {
        ca_cert: dir.join("ca.cert.pem"),
        ca_key: dir.join("ca.key.pem"),
        signing_cert: dir.join("signing.cert.pem"),
        signing_key: dir.join("signing.key.pem"),
    }
}

/// The signer of the test bundles.
pub fn test_signer() -> builder::bundle::signing::Signer {
    let keys = test_keys();
    builder::bundle::signing::Signer::load(
        &keys.signing_key,
        &keys.signing_cert,
        std::time::SystemTime::now(),
    )
    .unwrap()
}

/// The device settings every qemu-virt test image has: root's SSH key
/// [`ssh_key`] and the test network's NTP server ([`NTP_SERVER`]).
pub fn test_device() -> builder::device::Overrides {
    let public = std::fs::read_to_string(ssh_key().with_extension("pub")).unwrap();
    builder::device::Overrides {
        ssh_key_files: vec![("id_ed25519.pub".into(), public)],
        ntp: vec![NTP_SERVER.into()],
        ..Default::default()
    }
}

/// A file of the image's boot partition, copied next to the image (for
/// QEMU's `-bios`, `-kernel` or `-dtb`).
pub fn boot_file(image: &Path, name: &str) -> PathBuf {
    let path = image.with_file_name(name);
    let bytes = builder::image::inspect::read(image, 1, name).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The qemu-virt test image, built on first use: the `test-shell` and
/// `test-tone` layers, root's SSH key [`ssh_key`], the test network's NTP
/// server ([`NTP_SERVER`]) and the test CA as its update keyring, given the
/// way a user gives them (`builder --ssh-key … --ntp … --keyring …`).
pub fn qemu_virt() -> &'static TestImage {
    static IMAGE: OnceLock<TestImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let image = build_with("qemu-virt", &["test-shell", "test-tone"], test_device());
        // The firmware QEMU runs is the one the image carries.
        let u_boot = boot_file(&image, "u-boot.bin");
        TestImage { image, u_boot }
    })
}

/// The NTP server the test image asks: the router of the test network.
pub const NTP_SERVER: &str = "fd42:7669:6e79:1::1";

/// The private key whose public half the test image lets in as root: made
/// once in `target/qemu-tests/ssh/` (kept, so the image is not rebuilt on
/// every run), never a key anyone uses elsewhere.
pub fn ssh_key() -> PathBuf {
    let dir = Project::from_workspace().root.join("target/qemu-tests/ssh");
    let key = dir.join("id_ed25519");
    if !key.exists() || !key.with_extension("pub").exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let partial = dir.join("id_ed25519.new");
        let _ = std::fs::remove_file(&partial);
        let _ = std::fs::remove_file(partial.with_extension("new.pub"));
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "qemu-tests", "-f"])
            .arg(&partial)
            .status()
            .expect("running ssh-keygen (package openssh-client)");
        assert!(status.success(), "ssh-keygen failed");
        std::fs::rename(dir.join("id_ed25519.new.pub"), key.with_extension("pub")).unwrap();
        std::fs::rename(&partial, &key).unwrap();
    }
    key
}

/// QEMU machines run one at a time: two cores can't emulate several
/// aarch64 machines at useful speed.
pub fn one_machine_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A writable sparse copy of `image` for a scenario (`name`), replacing any
/// earlier one.
pub fn scenario_copy(image: &Path, name: &str) -> PathBuf {
    let dir = Project::from_workspace()
        .root
        .join("target/qemu-tests/scenarios");
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join(format!("{name}.img"));
    let status = std::process::Command::new("cp")
        .arg("--sparse=always")
        .arg(image)
        .arg(&copy)
        .status()
        .expect("running cp");
    assert!(status.success(), "copying {} failed", image.display());
    copy
}

/// Replaces root slot B (partition 3) of `image` with an ext4 that holds
/// only `/boot` and `files` (names below it, e.g. `vmlinuz`): a slot that
/// U-Boot can load but that is not a system, for the failed-trial scenarios.
pub fn write_slot_b_boot(image: &Path, files: Vec<(&str, Vec<u8>)>) {
    let time = ext4_writer::Timestamp::from_secs(0);
    let mut entries = vec![
        ext4_writer::Entry::dir("", 0o755, time),
        ext4_writer::Entry::dir("boot", 0o755, time),
    ];
    for (name, bytes) in files {
        entries.push(ext4_writer::Entry::file(
            format!("boot/{name}"),
            0o644,
            time,
            ext4_writer::FileData::Bytes(bytes),
        ));
    }
    builder::image::edit::write_ext4_partition(
        image,
        3,
        &entries,
        &ext4_writer::NoSource,
        "root-b",
        [7; 16],
    )
    .unwrap();
}
