mod common;

use common::*;
use ext4_writer::{Entry, FileData, NoSource};

#[test]
fn small_tree_passes_e2fsck() {
    let entries = vec![
        Entry::dir("etc", 0o755, T),
        Entry::file("etc/hostname", 0o644, T, FileData::Bytes(b"pi\n".to_vec())),
        Entry::symlink("bin", T, "usr/bin"),
        Entry::dir("usr/bin", 0o755, T),
    ];
    let (path, _) = image("small", &entries, &NoSource, &opts(16 << 20));
    e2fsck(&path);
}
