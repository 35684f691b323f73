//! Builds from the real Debian archive: resolution of the qemu-virt board,
//! and its root filesystem assembled twice from empty caches.
//!
//! Needs a Debian mirror (from $BUILDER_DEBIAN_MIRROR or the host's apt
//! sources) and the cross toolchain (`builder doctor`). Without them these
//! tests fail in CI and are skipped, with the reason, in a local run.

use builder::config::Project;
use builder::pipeline::{Options, Pipeline};
use builder::rootfs::tree::{Kind, Tree};
use std::path::{Path, PathBuf};

mod common;
use common::prerequisites_or_skip;

fn workspace() -> Project {
    Project::from_workspace()
}

fn options(project: &Project, cache: &Path) -> Options {
    let mut options = Options::for_board(project, "qemu-virt");
    options.cache_dir = cache.to_path_buf();
    // A separate target dir: the outer `cargo test` owns the default one.
    options.target_dir = project.root.join("target/builder-tests");
    options.quiet = true;
    options
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&entry.path(), &dest);
        } else if kind.is_symlink() {
            // e.g. a unit masked by a link to /dev/null
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &dest).unwrap();
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

#[test]
fn resolves_qemu_virt_from_the_signed_archive() {
    if !prerequisites_or_skip("resolves_qemu_virt_from_the_signed_archive") {
        return;
    }
    let real = workspace();
    let dir = tempfile::tempdir().unwrap();
    for sub in ["boards", "recipes", "overlay"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        copy_dir(&real.root.join(sub), &dir.path().join(sub));
    }
    std::fs::remove_file(dir.path().join("boards/qemu-virt.lock")).unwrap();
    let project = Project::new(dir.path());
    let cache = tempfile::tempdir().unwrap();
    let context = Pipeline::new(project.clone(), &options(&project, cache.path())).unwrap();
    let (lock, changes) = context.lock(false).unwrap();
    assert!(!changes.is_empty());
    let image: Vec<&str> = lock.image_packages().map(|p| p.name.as_str()).collect();
    for wanted in [
        "systemd",
        "libc6",
        "linux-image-arm64",
        "u-boot-qemu",
        "libopus0",
        "base-passwd",
    ] {
        assert!(image.contains(&wanted), "{wanted} not in {image:?}");
    }
    assert!(
        image.iter().any(|p| p.starts_with("linux-image-6.")),
        "the real kernel behind the metapackage"
    );
    assert!(
        !image.contains(&"initramfs-tools"),
        "provided by the builder, not installed"
    );
    assert!(!image.contains(&"libc6-dev"), "sysroot only");
    assert!(lock.sysroot_packages().any(|p| p.name == "libasound2-dev"));
    assert!(lock.source_date_epoch > 1_750_000_000);
    // The committed lock is what a fresh resolution of the same recipes gives,
    // or an older state of the archive: same inputs either way.
    let committed = builder::lock::Lock::read(&real.lock_path("qemu-virt"), "qemu-virt")
        .unwrap()
        .unwrap();
    assert_eq!(
        committed.inputs, lock.inputs,
        "commit boards/qemu-virt.lock after changing recipes"
    );

    // An unknown package is one clear error with a suggestion.
    std::fs::write(
        dir.path().join("recipes/audio.toml"),
        "packages = [\"alsa-utilz\"]\n",
    )
    .unwrap();
    let context = Pipeline::new(project.clone(), &options(&project, cache.path())).unwrap();
    let error = context.lock(false).unwrap_err().to_string();
    assert!(
        error.contains("unknown package \"alsa-utilz\" requested by recipes/audio.toml"),
        "{error}"
    );
    assert!(error.contains("did you mean alsa-utils"), "{error}");
}

fn build_image(cache: &Path, out: &Path) -> (Tree, Pipeline, builder::image::Built) {
    let project = workspace();
    let context = Pipeline::new(project.clone(), &options(&project, cache)).unwrap();
    let (lock, tree) = context.rootfs().unwrap();
    let built = context
        .image(&lock, &tree, out, &Default::default())
        .unwrap();
    assert!(!built.up_to_date, "a fresh output directory");
    (tree, context, built)
}

fn text(tree: &Tree, context: &Pipeline, path: &str) -> String {
    String::from_utf8(
        tree.read(path, &context.store)
            .unwrap()
            .unwrap_or_else(|| panic!("{path} missing")),
    )
    .unwrap()
}

fn host_tool(name: &str) -> Option<PathBuf> {
    let found = builder::doctor::which(name).or_else(|| {
        ["/usr/sbin", "/sbin"]
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
    });
    test_support::found(&test_support::current_test(), found, || {
        format!("the {name} check needs {name} (not installed; .ci/run installs it)")
    })
}

#[test]
fn qemu_virt_image_is_complete_and_reproducible_from_empty_caches() {
    if !prerequisites_or_skip("qemu_virt_image_is_complete_and_reproducible_from_empty_caches") {
        return;
    }
    let (cache_a, cache_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (out_a, out_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (tree, context, built) = build_image(cache_a.path(), out_a.path());
    let (again, _, built_b) = build_image(cache_b.path(), out_b.path());
    assert_eq!(tree.digest(), again.digest(), "same lock, same tree");
    for name in [
        "vinyl-qemu-virt.img",
        "vinyl-qemu-virt.img.xz",
        "vinyl-qemu-virt.bmap",
        "manifest.json",
        "vinyl-qemu-virt.spdx.json",
    ] {
        let digest =
            |dir: &Path| builder::store::sha256_hex(&std::fs::read(dir.join(name)).unwrap());
        assert_eq!(
            digest(out_a.path()),
            digest(out_b.path()),
            "{name} differs between two builds"
        );
    }
    assert_eq!(built.layout, built_b.layout);

    check_tree(&tree, &context);
    check_image(&tree, &built, out_a.path());
    rebuilds_from_cached_chunks(cache_a.path(), out_a.path());
    repairs_a_tampered_cache(cache_b.path(), &out_a.path().join("vinyl-qemu-virt.img"));
}

/// A rebuild takes the compressed chunks of the `.img.xz` from the cache
/// (`cache`, of the build that wrote `out`): with one cached block damaged
/// on disk, the damaged one is compressed again, and the `.img.xz` is byte
/// for byte the first build's.
fn rebuilds_from_cached_chunks(cache: &Path, out: &Path) {
    let blocks = cache.join("xz-blocks-v1");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&blocks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    assert!(entries.len() > 1, "compressed chunks cached: {entries:?}");
    let mut damaged = std::fs::read(&entries[0]).unwrap();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x01;
    std::fs::write(&entries[0], &damaged).unwrap();

    let again = tempfile::tempdir().unwrap();
    build_image(cache, again.path());
    let digest = |dir: &Path| {
        builder::store::sha256_hex(&std::fs::read(dir.join("vinyl-qemu-virt.img.xz")).unwrap())
    };
    assert_eq!(
        digest(again.path()),
        digest(out),
        "the .img.xz from cached chunks"
    );
    assert_ne!(
        std::fs::read(&entries[0]).unwrap(),
        damaged,
        "the damaged cache entry was written again"
    );
}

/// What a hostile or failing disk does to the cache of a finished build
/// (`cache`), and what the next build must do about it: a byte flipped in
/// an unpacked file and a crafted `.deb` swapped in under the genuine
/// package's digest are both found, removed and replaced (from the mirror),
/// and the image is byte-identical to `clean_image`. Offline, the same
/// damage is one clear error naming the package and the cache entry.
fn repairs_a_tampered_cache(cache: &Path, clean_image: &Path) {
    let project = workspace();
    let context = Pipeline::new(project.clone(), &options(&project, cache)).unwrap();
    let lock = context.locked().unwrap();
    let store = &context.store;
    let (_, tree) = context.rootfs().unwrap();
    let less = lock.packages.iter().find(|p| p.name == "less").unwrap();
    let Some(Kind::File {
        content: builder::rootfs::tree::Content::Blob(blob),
        ..
    }) = tree.get("usr/bin/less").map(|n| n.kind.clone())
    else {
        panic!("/usr/bin/less is not a stored file");
    };
    let unpacked_records = cache.join("unpacked-v2");
    let mut flipped = std::fs::read(store.path(&blob)).unwrap();
    flipped[1000] ^= 0x40;

    let tamper = || {
        // One byte of the unpacked /usr/bin/less flipped in the store.
        std::fs::write(store.path(&blob), &flipped).unwrap();
        // A crafted package under the genuine digest of `less`, which must
        // be unpacked again (its record is gone).
        std::fs::write(
            store.path(&less.sha256),
            b"!<arch>\ncrafted package that replaces /usr/bin/less",
        )
        .unwrap();
        let _ = std::fs::remove_file(unpacked_records.join(format!("{}.json", less.sha256)));
    };

    // Offline (a mirror that refuses every connection): one clear error.
    tamper();
    let mut offline = options(&project, cache);
    offline.mirror = Some("http://127.0.0.1:9/debian".into());
    let out = tempfile::tempdir().unwrap();
    let outputs = builder::image::OutputOptions {
        gzip: false,
        xz_level: 0,
    };
    let error = Pipeline::new(project.clone(), &offline)
        .unwrap()
        .build(out.path(), &outputs, None)
        .unwrap_err();
    let error = format!("{error:#}");
    assert!(error.contains("package less"), "{error}");
    assert!(error.contains(&less.filename), "{error}");
    let entry = store.path(&less.sha256).display().to_string();
    assert!(error.contains(&entry), "{error}");
    assert!(!out.path().join("vinyl-qemu-virt.img").exists());

    // Online: repaired, and the image is what a clean cache gives.
    tamper();
    let context = Pipeline::new(project.clone(), &options(&project, cache)).unwrap();
    let (_, product) = context.build(out.path(), &outputs, None).unwrap();
    let builder::pipeline::Product::SdImage(built) = product else {
        panic!("qemu-virt is an SD image");
    };
    let digest = |path: &Path| builder::store::sha256_hex(&std::fs::read(path).unwrap());
    assert_eq!(
        digest(&built.image),
        digest(clean_image),
        "the image from a repaired cache differs from a clean build"
    );
    assert!(context.store.evictions() >= 2, "both damaged entries found");
    assert_eq!(
        builder::store::sha256_hex(&std::fs::read(store.path(&less.sha256)).unwrap()),
        less.sha256
    );
}

fn check_tree(tree: &Tree, context: &Pipeline) {
    // Merged /usr, and the dynamic loader where aarch64 binaries look for it.
    assert_eq!(
        tree.get("bin").unwrap().kind,
        Kind::Symlink {
            target: "usr/bin".into()
        }
    );
    assert_eq!(
        tree.resolve("lib/ld-linux-aarch64.so.1")
            .map(|p| p.starts_with("usr/lib/")),
        Some(true)
    );
    // Accounts from base-passwd, sysusers.d and the recipe; no passwords.
    let passwd = text(tree, context, "etc/passwd");
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    assert!(passwd.contains("systemd-network:x:"), "{passwd}");
    assert!(passwd.contains("vinyl-streamd:x:"), "{passwd}");
    let group = text(tree, context, "etc/group");
    let audio = group.lines().find(|l| l.starts_with("audio:")).unwrap();
    assert!(audio.ends_with("vinyl-streamd"), "{audio}");
    let shadow = text(tree, context, "etc/shadow");
    assert!(
        shadow
            .lines()
            .all(|l| l.split(':').nth(1).is_some_and(|h| h == "*" || h == "!*")),
        "{shadow}"
    );
    // Units enabled by presets and recipes, and nothing else by default.
    let wants = |target: &str, unit: &str| {
        tree.get(&format!("etc/systemd/system/{target}.wants/{unit}"))
            .is_some()
    };
    assert!(wants("multi-user.target", "systemd-networkd.service"));
    assert!(wants("sysinit.target", "systemd-timesyncd.service"));
    assert!(wants("getty.target", "getty@tty1.service"));
    assert!(!wants(
        "sysinit.target",
        "systemd-pcrlock-firmware-code.service"
    ));
    // The cross-compiled daemon, for the board's CPU.
    let daemon = tree
        .read("usr/bin/vinyl-streamd", &context.store)
        .unwrap()
        .unwrap();
    assert_eq!(&daemon[..4], b"\x7fELF");
    assert_eq!(
        u16::from_le_bytes([daemon[18], daemon[19]]),
        183,
        "EM_AARCH64"
    );
    // Only the needed kernel modules, with kmod's indexes.
    let version = builder::rootfs::modules::kernel_versions(tree)
        .pop()
        .unwrap();
    let dep = text(
        tree,
        context,
        &format!("usr/lib/modules/{version}/modules.dep"),
    );
    let aloop = dep
        .lines()
        .find(|l| l.contains("snd-aloop.ko"))
        .expect("snd-aloop kept");
    assert!(aloop.contains("snd-pcm.ko"), "{aloop}");
    assert!(
        tree.get(&format!("usr/lib/modules/{version}/modules.dep.bin"))
            .is_some()
    );
    let modules = tree.iter().filter(|(p, _)| p.ends_with(".ko.xz")).count();
    assert!((10..100).contains(&modules), "{modules} modules kept");
    // Documentation dropped, licences kept; dpkg knows what is installed.
    assert!(tree.get("usr/share/man").is_none());
    assert!(tree.get("usr/share/doc/systemd/copyright").is_some());
    assert!(
        text(tree, context, "var/lib/dpkg/status")
            .contains("Package: systemd\nStatus: install ok installed\n")
    );
    // Nothing in the tree comes from the host: every owner is a known account.
    let ids: Vec<u32> = passwd
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect();
    assert!(
        tree.iter().all(|(_, n)| ids.contains(&n.uid)),
        "unknown owner in tree"
    );
    assert_eq!(text(tree, context, "etc/hostname"), "turntable\n");
}

/// The image judged by e2fsck, ext4-view (every file of the tree read back),
/// libarchive (the `.img.xz`), bmaptool (from the `.img.xz`) and sha256sum.
fn check_image(tree: &Tree, built: &builder::image::Built, out: &Path) {
    use builder::image::layout::Role;
    let image = &built.image;
    if let Some(e2fsck) = host_tool("e2fsck") {
        for role in [Role::RootA, Role::Data] {
            let offset = built.layout.partition(role).offset;
            let status = std::process::Command::new(&e2fsck)
                .arg("-fn")
                .arg(format!("{}?offset={offset}", image.display()))
                .output()
                .unwrap();
            assert!(
                status.status.success(),
                "e2fsck on {role:?}: {}",
                String::from_utf8_lossy(&status.stdout)
            );
        }
    }

    // Every tree entry, read back from root slot A by an independent reader.
    let fs_file = |image: &Path| std::fs::File::open(image).unwrap();
    let file = fs_file(image);
    let offset = built.layout.partition(Role::RootA).offset;
    struct At(std::fs::File, u64);
    impl ext4_view::Ext4Read for At {
        fn read(
            &mut self,
            start: u64,
            dst: &mut [u8],
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            std::os::unix::fs::FileExt::read_exact_at(&self.0, dst, self.1 + start)?;
            Ok(())
        }
    }
    let fs = ext4_view::Ext4::load(Box::new(At(file, offset))).unwrap();
    let mut checked = 0;
    for (path, node) in tree.iter() {
        let abs = format!("/{path}");
        let meta = fs
            .symlink_metadata(abs.as_str())
            .unwrap_or_else(|e| panic!("{abs}: {e}"));
        if !matches!(node.kind, Kind::Hardlink { .. }) {
            assert_eq!(u32::from(meta.mode()) & 0o7777, node.mode, "{abs} mode");
            assert_eq!(
                (meta.uid(), meta.gid()),
                (node.uid, node.gid),
                "{abs} owner"
            );
        }
        match &node.kind {
            Kind::File { content, .. } => {
                let bytes = fs.read(abs.as_str()).unwrap();
                assert_eq!(
                    builder::store::sha256_hex(&bytes),
                    builder::rootfs::tree::content_sha256(content),
                    "{abs}"
                );
            }
            Kind::Symlink { target } => {
                let read = fs.read_link(abs.as_str()).unwrap();
                assert_eq!(read.to_str().unwrap(), target, "{abs}");
            }
            Kind::Dir => assert!(meta.is_dir(), "{abs}"),
            _ => {}
        }
        checked += 1;
    }
    assert_eq!(checked, tree.len());

    // The data partition: RAUC's status of slot A and its block hash index,
    // both matching slot A byte for byte (an independent hash of each chunk).
    let slot_a = {
        let a = built.layout.partition(Role::RootA);
        let mut bytes = vec![0; a.size as usize];
        std::os::unix::fs::FileExt::read_exact_at(&fs_file(image), &mut bytes, a.offset).unwrap();
        bytes
    };
    let data = ext4_view::Ext4::load(Box::new(At(
        fs_file(image),
        built.layout.partition(Role::Data).offset,
    )))
    .unwrap();
    let slot_sha = builder::store::sha256_hex(&slot_a);
    // Slot B, never written: its first chunk as the image holds it, the one
    // chunk its seeded index states.
    let slot_b_chunk = {
        let b = built.layout.partition(Role::RootB);
        let mut bytes = vec![0xa5; 4096];
        std::os::unix::fs::FileExt::read_exact_at(&fs_file(image), &mut bytes, b.offset).unwrap();
        bytes
    };
    assert_eq!(slot_b_chunk, vec![0; 4096], "slot b is not empty");
    let slot_b_sha = builder::store::sha256_hex(&slot_b_chunk);
    assert_eq!(
        data.read_to_string("/rauc/central.raucs").unwrap(),
        format!(
            "[slot.rootfs.0]\nstatus=ok\nsha256={slot_sha}\nsize={}\n\n\
             [slot.rootfs.1]\nsha256={slot_b_sha}\nsize=4096\n",
            slot_a.len()
        )
    );
    assert_eq!(
        data.read(format!("/rauc/slot.rootfs.1/hash-{slot_b_sha}/block-hash-index").as_str())
            .unwrap(),
        hex::decode(&slot_b_sha).unwrap()
    );
    let index = data
        .read(format!("/rauc/slot.rootfs.0/hash-{slot_sha}/block-hash-index").as_str())
        .unwrap();
    assert_eq!(index.len(), slot_a.len() / 4096 * 32);
    for (i, (hash, chunk)) in index.chunks(32).zip(slot_a.chunks(4096)).enumerate() {
        use sha2::Digest as _;
        assert_eq!(
            hash,
            sha2::Sha256::digest(chunk).as_slice(),
            "index chunk {i}"
        );
    }

    // The files users get: checksums, bmap, manifest, SBOM, partition table.
    let sha = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    let image_sha = builder::store::sha256_hex(&std::fs::read(image).unwrap());
    assert_eq!(
        sha("vinyl-qemu-virt.img.sha256"),
        format!("{image_sha}  vinyl-qemu-virt.img\n")
    );
    let manifest: serde_json::Value = serde_json::from_str(&sha("manifest.json")).unwrap();
    assert_eq!(manifest["image"]["sha256"], image_sha.as_str());
    assert_eq!(manifest["partitions"].as_array().unwrap().len(), 4);
    assert!(
        manifest["files"]["/usr/bin/vinyl-streamd"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let spdx: serde_json::Value = serde_json::from_str(&sha("vinyl-qemu-virt.spdx.json")).unwrap();
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    assert!(
        spdx["packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "systemd")
    );
    let table = builder::image::inspect::table(&std::fs::File::open(image).unwrap()).unwrap();
    assert!(table.contains("ext4 \"root-a\""), "{table}");
    assert_eq!(
        builder::image::inspect::read(image, 2, "/etc/hostname").unwrap(),
        b"turntable\n"
    );

    // The .img.xz as Raspberry Pi Imager reads it (libarchive): the image.
    let xz = out.join("vinyl-qemu-virt.img.xz");
    if let Some(bsdcat) = host_tool("bsdcat") {
        let output = std::process::Command::new(bsdcat)
            .arg(&xz)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "bsdcat: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(builder::store::sha256_hex(&output.stdout), image_sha);
    }

    // bmaptool writes a card from the .img.xz, the file people download.
    if let Some(bmaptool) = host_tool("bmaptool") {
        let copy = out.join("copy.img");
        let output = std::process::Command::new(bmaptool)
            .args(["copy", "--bmap"])
            .arg(out.join("vinyl-qemu-virt.bmap"))
            .arg(&xz)
            .arg(&copy)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "bmaptool: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let copied = builder::store::sha256_hex(&std::fs::read(&copy).unwrap());
        assert_eq!(copied, image_sha, "a bmap copy equals the image");
    }
}
