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
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
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
}
