//! The image the boot tests run: board qemu-virt plus the `test-shell`
//! recipe, built once per test binary through the builder's normal pipeline
//! (the same code `cargo run -p builder` runs), and helpers to derive
//! scenario images from it.

#![allow(dead_code)] // each test binary uses a different part

use builder::config::Project;
use builder::pipeline::{Context, Options};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// A built image and the U-Boot that is its firmware.
pub struct TestImage {
    pub image: PathBuf,
    pub u_boot: PathBuf,
}

/// Needs a Debian mirror and the cross toolchain, like any build: a local
/// run without them skips (printing why), CI fails.
pub fn prerequisites_or_skip(test: &str) -> bool {
    let env = std::env::var(builder::mirror::MIRROR_ENV).ok();
    let mirror = builder::mirror::find(None, env.as_deref(), Path::new("/"));
    let cross =
        builder::doctor::fix_commands(&builder::doctor::cross_checks("aarch64-unknown-linux-gnu"));
    let problem = match (mirror, cross) {
        (Err(e), _) => e.to_string(),
        (_, Some(fix)) => format!("the cross toolchain is missing; install it with: {fix}"),
        (Ok(_), None) => return true,
    };
    if qemu_tests::skip::in_ci() {
        panic!("{test} cannot run: {problem}");
    }
    eprintln!("SKIPPED {test}: {problem}");
    false
}

/// The qemu-virt test image, built on first use (and skipped by the builder
/// when its outputs are up to date).
pub fn qemu_virt() -> &'static TestImage {
    static IMAGE: OnceLock<TestImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let project = Project::from_workspace();
        let mut options = Options::for_board(&project, "qemu-virt");
        options.extra_recipes = vec!["test-shell".into()];
        // Shared with the builder tests: one cross build of vinyl-streamd.
        options.target_dir = project.root.join("target/builder-tests");
        options.quiet = true;
        let out = project.root.join("target/qemu-tests/images/qemu-virt");
        let context = Context::new(project, &options).expect("loading board qemu-virt");
        let (lock, tree) = context.rootfs().expect("assembling the qemu-virt root");
        let output = builder::image::OutputOptions {
            gzip: false,
            xz_level: 0,
        };
        let built = builder::image::build(&context, &lock, &tree, &out, &output)
            .expect("writing the qemu-virt image");
        // The firmware QEMU runs is the one the image carries.
        let u_boot = out.join("u-boot.bin");
        let bytes = builder::image::inspect::read(&built.image, 1, "u-boot.bin").unwrap();
        std::fs::write(&u_boot, bytes).unwrap();
        TestImage {
            image: built.image,
            u_boot,
        }
    })
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
