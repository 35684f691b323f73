//! Image-writing failures are clear and leave nothing behind. No network:
//! the tree and lock are made by hand.

use builder::config::Project;
use builder::lock::{LOCK_VERSION, Lock};
use builder::pipeline::{Options, Pipeline};
use builder::rootfs::tree::{Node, Tree};

fn project(root_mib: u64) -> (tempfile::TempDir, Pipeline, Lock) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("boards")).unwrap();
    std::fs::write(
        dir.path().join("boards/tiny.toml"),
        format!(
            "description = \"t\"\nhostname = \"t\"\nrecipes = []\n[kernel]\npackage = \"k\"\n[image]\nboot-mib = 64\nroot-mib = {root_mib}\ndata-mib = 8\n"
        ),
    )
    .unwrap();
    let project = Project::new(dir.path());
    let mut options = Options::for_board(&project, "tiny");
    options.cache_dir = dir.path().join("cache");
    options.quiet = true;
    let context = Pipeline::new(project, &options).unwrap();
    let lock = Lock {
        version: LOCK_VERSION,
        board: "tiny".into(),
        suite: "trixie".into(),
        architecture: "arm64".into(),
        release_date: "Sat, 12 Sep 2026 07:55:41 UTC".into(),
        source_date_epoch: 1_789_199_741,
        inputs: "sha256:x".into(),
        packages: Vec::new(),
    };
    (dir, context, lock)
}

fn tree_with(bytes: usize) -> Tree {
    let mut tree = Tree::new(0);
    let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8 | 1).collect();
    tree.insert("usr/share/big", Node::file(data, 0o644, 0));
    tree.insert("etc/hostname", Node::file("t\n", 0o644, 0));
    tree
}

#[test]
fn a_tree_larger_than_the_slot_is_one_clear_error_and_leaves_nothing() {
    let (dir, context, lock) = project(8);
    let out = dir.path().join("out");
    let error = context
        .image(&lock, &tree_with(12 << 20), &out, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("needs 13 MiB but a root slot has 8 MiB"),
        "{error}"
    );
    assert!(
        error.contains("raise `root-mib` in [image] of boards/tiny.toml"),
        "{error}"
    );
    // Nothing half-written is left: no output directory (it did not exist
    // before), no staging directory beside it.
    assert!(!out.exists());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(".out.") && name != ".out.lock")
        .collect();
    assert!(left.is_empty(), "nothing half-written is left: {left:?}");
}

#[test]
fn a_small_tree_makes_an_inspectable_image() {
    let (dir, context, lock) = project(16);
    let out = dir.path().join("out");
    let built = context
        .image(
            &lock,
            &tree_with(1 << 20),
            &out,
            &builder::image::OutputOptions {
                gzip: true,
                ..Default::default()
            },
        )
        .unwrap();
    let mut names: Vec<String> = built
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "manifest.json",
            "vinyl-tiny.bmap",
            "vinyl-tiny.img",
            "vinyl-tiny.img.gz",
            "vinyl-tiny.img.gz.sha256",
            "vinyl-tiny.img.sha256",
            "vinyl-tiny.img.xz",
            "vinyl-tiny.img.xz.sha256",
            "vinyl-tiny.spdx.json"
        ]
    );
    assert_eq!(
        builder::image::inspect::read(&built.image, 2, "/etc/hostname").unwrap(),
        b"t\n"
    );
    let listing = builder::image::inspect::list(&built.image, 2, "/usr/share").unwrap();
    assert_eq!(listing, ["000644     0     0    1048576 big"]);
    let error = builder::image::inspect::read(&built.image, 7, "/x")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("no partition 7; the image has 1, 2, 3, 4"),
        "{error}"
    );
    // The compressed image decompresses to the image.
    let mut xz = Vec::new();
    std::io::Read::read_to_end(
        &mut xz2::read::XzDecoder::new(std::fs::File::open(out.join("vinyl-tiny.img.xz")).unwrap()),
        &mut xz,
    )
    .unwrap();
    assert_eq!(xz, std::fs::read(&built.image).unwrap());
}

#[test]
fn an_unchanged_build_is_up_to_date_and_a_change_rebuilds() {
    let (dir, context, lock) = project(16);
    let out = dir.path().join("out");
    let options = builder::image::OutputOptions {
        xz_level: 0,
        ..Default::default()
    };
    let tree = tree_with(1 << 20);
    let first = context.image(&lock, &tree, &out, &options).unwrap();
    assert!(!first.up_to_date);
    let image_time = std::fs::metadata(&first.image).unwrap().modified().unwrap();
    let again = context.image(&lock, &tree, &out, &options).unwrap();
    assert!(again.up_to_date, "same inputs: nothing to write");
    assert_eq!(
        std::fs::metadata(&again.image).unwrap().modified().unwrap(),
        image_time
    );
    assert_eq!(again.layout, first.layout);

    // A changed tree, or a missing output, means a rebuild.
    let mut changed = tree.clone();
    changed.insert("etc/hostname", Node::file("other\n", 0o644, 0));
    assert!(
        !context
            .image(&lock, &changed, &out, &options)
            .unwrap()
            .up_to_date
    );
    std::fs::remove_file(out.join("vinyl-tiny.bmap")).unwrap();
    assert!(
        !context
            .image(&lock, &changed, &out, &options)
            .unwrap()
            .up_to_date
    );
    assert_eq!(
        builder::image::inspect::read(&first.image, 2, "/etc/hostname").unwrap(),
        b"other\n"
    );
    // An output changed on disk (same name, same size) means a rebuild too,
    // which restores it.
    let manifest = std::fs::read(out.join("manifest.json")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let mut edited = manifest.clone();
    edited[0] = b' ';
    std::fs::write(out.join("manifest.json"), &edited).unwrap();
    assert!(
        !context
            .image(&lock, &changed, &out, &options)
            .unwrap()
            .up_to_date
    );
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), manifest);
}

#[test]
fn a_failed_build_leaves_the_previous_outputs_whole() {
    let (dir, context, lock) = project(16);
    let out = dir.path().join("out");
    let options = builder::image::OutputOptions {
        xz_level: 0,
        ..Default::default()
    };
    let first = context
        .image(&lock, &tree_with(1 << 20), &out, &options)
        .unwrap();
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    let before = listing();
    assert_eq!(
        before.len(),
        first.files.len() + 1,
        "the outputs and the stamp: {before:?}"
    );
    assert!(before.contains(&".vinyl-build.json".to_string()));
    let image = std::fs::read(&first.image).unwrap();
    // A file of the user's beside the outputs.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();

    let error = context
        .image(&lock, &tree_with(24 << 20), &out, &options)
        .unwrap_err();
    assert!(error.to_string().contains("raise `root-mib`"), "{error}");
    let mut expected = before.clone();
    expected.push("notes.txt".into());
    expected.sort();
    assert_eq!(listing(), expected);
    assert_eq!(std::fs::read(&first.image).unwrap(), image);
    let staging: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.contains("staging"))
        .collect();
    assert!(staging.is_empty(), "{staging:?}");
    // Still up to date: the failed build changed nothing.
    assert!(
        context
            .image(&lock, &tree_with(1 << 20), &out, &options)
            .unwrap()
            .up_to_date
    );

    // A successful build with other outputs replaces them, keeping the user's file.
    let gzip = builder::image::OutputOptions {
        gzip: true,
        xz_level: 0,
    };
    let second = context
        .image(&lock, &tree_with(1 << 20), &out, &gzip)
        .unwrap();
    assert!(!second.up_to_date);
    assert!(out.join("vinyl-tiny.img.gz").is_file());
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(listing().len(), second.files.len() + 2);
    // And back without --gzip: the .gz files are ours, not carried over.
    context
        .image(&lock, &tree_with(1 << 20), &out, &options)
        .unwrap();
    assert_eq!(listing(), expected);
}
