//! Round trips through all three available judges: e2fsck, ext4-view, debugfs.

mod common;

use common::*;
use ext4_writer::{Entry, Error, FileData, Kind, NoSource, Timestamp};

/// A random but reproducible tree with every kind of entry.
fn generated_tree(seed: u64, dirs: usize, files: usize) -> Vec<Entry> {
    let mut rng = Rng(seed);
    let mut n = 0;
    let mut name = |rng: &mut Rng| {
        n += 1;
        const STEMS: [&str; 6] = ["lib", "größe", "日本", "x", "a-much-longer-name.conf", "🦀"];
        format!("{}{n}", STEMS[rng.below(6) as usize])
    };
    let modes = [0o644, 0o755, 0o4755, 0o2755, 0o1777, 0o600, 0o000, 0o6711];
    let meta = |rng: &mut Rng, mut e: Entry| {
        e.mode = modes[rng.below(8) as usize];
        e.uid = [0, 1000, 65534, 100_000][rng.below(4) as usize];
        e.gid = [0, 4, 100, 70_000][rng.below(4) as usize];
        // ext4-view 1.0 rejects a low 32-bit seconds field >= 2^31 (it does
        // not sign-extend it as the kernel does), so avoid those here; the
        // extremes are checked with debugfs in `timestamps_beyond_2038`.
        let secs = (rng.below(2) << 32) as i64 + rng.below(1 << 31) as i64;
        e.mtime = Timestamp {
            secs,
            nanos: rng.below(1_000_000_000) as u32,
        };
        if rng.below(10) == 0 {
            let len = [3, 40, 600][rng.below(3) as usize];
            e = e.xattr(format!("user.k{}", rng.below(100)), rng.bytes(len));
        }
        e
    };
    let mut dir_paths = vec![String::new()];
    let mut entries = Vec::new();
    for _ in 0..dirs {
        let parent = dir_paths[rng.below(dir_paths.len() as u64) as usize].clone();
        let path = join(&parent, &name(&mut rng));
        entries.push(meta(&mut rng, Entry::dir(&path, 0, T)));
        dir_paths.push(path);
    }
    let mut file_paths = Vec::new();
    for _ in 0..files {
        let parent = dir_paths[rng.below(dir_paths.len() as u64) as usize].clone();
        let path = join(&parent, &name(&mut rng));
        let e = match rng.below(20) {
            // Components stay short: ext4-view refuses targets with a
            // component over 255 bytes (ext4 itself does not care).
            0 => Entry::symlink(&path, T, "ab/".repeat(1 + rng.below(100) as usize)),
            1 => Entry::symlink(&path, T, "../short"),
            2 if !file_paths.is_empty() => {
                let target: &String = &file_paths[rng.below(file_paths.len() as u64) as usize];
                entries.push(Entry::hard_link(&path, target));
                continue;
            }
            3 => Entry::new(
                &path,
                Kind::CharDevice {
                    major: 1,
                    minor: rng.below(300) as u32,
                },
                0,
                T,
            ),
            4 => Entry::new(
                &path,
                Kind::BlockDevice {
                    major: 259,
                    minor: 3,
                },
                0,
                T,
            ),
            5 => Entry::new(&path, Kind::Fifo, 0, T),
            6 => Entry::new(&path, Kind::Socket, 0, T),
            _ => {
                let size = match rng.below(8) {
                    0 => 0,
                    1 => 4096,
                    2 => 4097,
                    3 => rng.below(300_000),
                    _ => rng.below(20_000),
                } as usize;
                // Some files are all zeros: their blocks are allocated but
                // never written to the (sparse) image.
                let data = if rng.below(10) == 0 {
                    vec![0; size]
                } else {
                    rng.bytes(size)
                };
                file_paths.push(path.clone());
                Entry::file(&path, 0, T, FileData::Bytes(data))
            }
        };
        let mut e = meta(&mut rng, e);
        if matches!(e.kind, Kind::Symlink { .. }) {
            e.mode = 0o777;
        }
        entries.push(e);
    }
    entries
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

#[test]
fn generated_tree_round_trips() {
    let entries = generated_tree(42, 300, 3000);
    let opts = opts(ext4_writer::min_size(&entries, &opts(0)).unwrap() + (8 << 20));
    let (path, summary) = image("generated", &entries, &NoSource, &opts);
    assert!(summary.used_inodes > 3000);
    e2fsck(&path);
    assert_round_trip(&path, &entries);
}

/// A tree spanning many block groups with backup superblocks in between.
#[test]
fn multi_group_tree_round_trips() {
    let entries = generated_tree(7, 50, 400);
    let (path, _) = image("multigroup", &entries, &NoSource, &opts(1 << 30));
    e2fsck(&path);
    assert_round_trip(&path, &entries);
}

fn capability() -> Vec<u8> {
    // VFS_CAP_REVISION_2, effective, permitted = CAP_NET_RAW (bit 13).
    let mut v = 0x0200_0001u32.to_le_bytes().to_vec();
    v.extend_from_slice(&(1u32 << 13).to_le_bytes());
    v.extend_from_slice(&[0; 12]);
    v
}

fn acl_default() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 7u16, u32::MAX),
        (2, 5, 1000),
        (4, 5, u32::MAX),
        (0x10, 5, u32::MAX),
        (0x20, 5, u32::MAX),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

fn edge_entries() -> Vec<Entry> {
    let bytes = |n: usize, seed: u64| FileData::Bytes(Rng(seed).bytes(n));
    let mut e = vec![
        Entry::dir("", 0o755, T),
        Entry::file("empty", 0o644, T, FileData::Bytes(vec![])),
        Entry::file("one-block", 0o644, T, bytes(4096, 1)),
        Entry::file("one-block-plus", 0o644, T, bytes(4097, 2)),
        Entry::file("usr/bin/passwd", 0o4755, T, bytes(100, 3)),
        Entry::file("usr/bin/crontab", 0o2755, T, bytes(100, 4)).owner(0, 107),
        Entry::file("usr/bin/ping", 0o755, T, bytes(5000, 5))
            .xattr("security.capability", capability()),
        Entry::dir("tmp", 0o1777, T),
        Entry::dir("srv/shared", 0o2775, T).xattr("system.posix_acl_default", acl_default()),
        Entry::file("big-xattrs", 0o600, T, bytes(10, 6))
            .xattr("user.big", vec![b'x'; 1000])
            .xattr("trusted.t", b"v")
            .xattr("security.selinux", b"system_u:object_r:etc_t:s0\0"),
        Entry::new(
            "dev/null",
            Kind::CharDevice { major: 1, minor: 3 },
            0o666,
            T,
        ),
        Entry::new(
            "dev/sda",
            Kind::BlockDevice { major: 8, minor: 0 },
            0o660,
            T,
        )
        .owner(0, 6),
        Entry::new(
            "dev/huge",
            Kind::CharDevice {
                major: 300,
                minor: 70000,
            },
            0o600,
            T,
        ),
        Entry::new("run/initctl", Kind::Fifo, 0o600, T),
        Entry::new("run/sock", Kind::Socket, 0o777, T),
        Entry::symlink("fast", T, "a".repeat(59)),
        Entry::symlink("fast-with-xattrs", T, "x")
            .xattr("security.selinux", b"system_u:object_r:bin_t:s0\0")
            .xattr("user.pad", vec![7; 300]),
        Entry::new(
            "dev/labelled",
            Kind::CharDevice { major: 5, minor: 1 },
            0o600,
            T,
        )
        .xattr("security.selinux", b"system_u:object_r:tty_device_t:s0\0"),
        Entry::dir("lost+found", 0o700, T).owner(0, 0),
        Entry::file("lost+found/#12", 0o644, T, bytes(5, 12)),
        Entry::symlink("slow", T, "b".repeat(60)),
        Entry::symlink("longest", T, "c/".repeat(2047) + "d"),
        Entry::file("names/grüße 日本語 🦀", 0o644, T, bytes(10, 7)),
        Entry::file(format!("names/{}", "n".repeat(255)), 0o644, T, bytes(10, 8)),
        Entry::file(
            format!("names/{}x", "é".repeat(127)),
            0o644,
            T,
            bytes(10, 9),
        ),
        Entry::file("links/target", 0o644, T, bytes(3000, 10)),
        Entry::file(b"names/latin1-\xe9t\xe9", 0o644, T, bytes(3, 13)),
        Entry::hard_link("links/to-symlink", "slow"),
        Entry::hard_link("links/to-fifo", "run/initctl"),
    ];
    for i in 0..2000 {
        e.push(Entry::hard_link(format!("links/l{i}"), "links/target"));
    }
    for i in 0..5000 {
        e.push(Entry::file(
            format!("bigdir/file-with-a-longish-name-{i:05}"),
            0o644,
            T,
            bytes(i % 50, i as u64),
        ));
    }
    let deep = (0..100)
        .map(|i| format!("d{i}"))
        .collect::<Vec<_>>()
        .join("/");
    e.push(Entry::file(
        format!("{deep}/bottom"),
        0o644,
        T,
        bytes(77, 11),
    ));
    e
}

#[test]
fn edge_cases_round_trip() {
    let entries = edge_entries();
    let (path, _) = image("edge", &entries, &NoSource, &opts(64 << 20));
    e2fsck(&path);
    assert_round_trip(&path, &entries);

    let fs = ext4_view::Ext4::load_from_path(&*path).unwrap();
    assert_eq!(fs.metadata("/links/l1999").unwrap().len(), 3000);
    let p: &std::path::PathBuf = &path;
    let Some(stat) = debugfs(p, "stat /links/target") else {
        return;
    };
    assert!(stat.contains("Links: 2001"), "{stat}");
    for linked in ["/slow", "/run/initctl"] {
        let stat = debugfs(p, &format!("stat {linked}")).unwrap();
        assert!(stat.contains("Links: 2 "), "{stat}");
    }
    let stat = debugfs(p, "stat /dev/null").unwrap();
    assert!(stat.contains("Device major/minor number: 01:03"), "{stat}");
    let stat = debugfs(p, "stat /dev/huge").unwrap();
    assert!(
        stat.contains("Device major/minor number: 300:70000"),
        "{stat}"
    );
    let stat = debugfs(p, "stat /usr/bin/passwd").unwrap();
    assert!(stat.contains("Mode:  04755"), "{stat}");
    let ea = debugfs(p, "ea_list /usr/bin/ping").unwrap();
    assert!(ea.contains("security.capability (20)"), "{ea}");
    let ea = debugfs(p, "ea_list /big-xattrs").unwrap();
    assert!(ea.contains("user.big (1000)"), "{ea}");
    assert!(ea.contains("trusted.t (1) = \"v\""), "{ea}");
    assert!(ea.contains("security.selinux (27)"), "{ea}");
    let stat = debugfs(p, "stat /big-xattrs").unwrap();
    assert!(
        !stat.contains("File ACL: 0"),
        "xattrs should be in a block: {stat}"
    );
    let ea = debugfs(p, "ea_list /srv/shared").unwrap();
    assert!(ea.contains("system.posix_acl_default"), "{ea}");
    let ea = debugfs(p, "ea_list /fast-with-xattrs").unwrap();
    assert!(ea.contains("user.pad (300)"), "{ea}");
    let ea = debugfs(p, "ea_list /dev/labelled").unwrap();
    assert!(ea.contains("security.selinux (34)"), "{ea}");
    let stat = debugfs(p, "stat /lost+found").unwrap();
    assert!(stat.contains("Inode: 11 "), "{stat}");
    let stat = debugfs(p, "stat /usr/bin/crontab").unwrap();
    assert!(stat.contains("Group:   107"), "{stat}");
}

#[test]
fn too_small_reports_sizes() {
    let entries = vec![Entry::file(
        "blob",
        0o644,
        T,
        FileData::Bytes(vec![1; 10 << 20]),
    )];
    let path = temp_path("small");
    let file = std::fs::File::create(&*path).unwrap();
    file.set_len(8 << 20).unwrap();
    let err = ext4_writer::write(&file, 0, &entries, &NoSource, &opts(8 << 20)).unwrap_err();
    let Error::TooSmall { needed, available } = err else {
        panic!("{err}")
    };
    assert_eq!(available, 8 << 20);
    assert!(needed > 10 << 20 && needed < 11 << 20, "{needed}");
    assert_eq!(needed, ext4_writer::min_size(&entries, &opts(0)).unwrap());
    assert!(err_string(needed - 4096, &entries).contains("too small"));
    // Exactly the minimum fits.
    let (path, _) = image("minimum", &entries, &NoSource, &opts(needed));
    e2fsck(&path);
}

fn err_string(size: u64, entries: &[Entry]) -> String {
    let path = temp_path("small");
    let file = std::fs::File::create(&*path).unwrap();
    file.set_len(size).unwrap();
    ext4_writer::write(&file, 0, entries, &NoSource, &opts(size))
        .unwrap_err()
        .to_string()
}

#[test]
fn output_is_deterministic_and_offset_independent() {
    let entries = generated_tree(3, 20, 200);
    let mut o = opts(32 << 20);
    o.journal_blocks = Some(1024);
    let (a, _) = image("det-a", &entries, &NoSource, &o);
    let (b, _) = image("det-b", &entries, &NoSource, &o);
    let a = std::fs::read(&*a).unwrap();
    assert!(a == std::fs::read(&*b).unwrap(), "two runs differ");
    // The order of the entry list does not matter either.
    let reversed: Vec<Entry> = entries.iter().rev().cloned().collect();
    let (c, _) = image("det-c", &reversed, &NoSource, &o);
    assert!(
        a == std::fs::read(&*c).unwrap(),
        "entry order changed the image"
    );

    // The same filesystem placed 1 MiB into a larger file.
    let path = temp_path("offset");
    let file = std::fs::File::create(&*path).unwrap();
    file.set_len((1 << 20) + o.size + 4096).unwrap();
    ext4_writer::write(&file, 1 << 20, &entries, &NoSource, &o).unwrap();
    let c = std::fs::read(&*path).unwrap();
    assert!(c[..1 << 20].iter().all(|&b| b == 0));
    assert!(
        c[1 << 20..(1 << 20) + a.len()] == a[..],
        "offset image differs"
    );
}

#[test]
fn journal_passes_e2fsck() {
    let entries = generated_tree(5, 20, 100);
    let mut o = opts(64 << 20);
    o.journal_blocks = Some(ext4_writer::Options::default_journal_blocks(o.size));
    o.inodes = ext4_writer::InodeCount::BytesPerInode(16384);
    let (path, summary) = image("journal", &entries, &NoSource, &o);
    assert_eq!(summary.inodes, 4096);
    e2fsck(&path);
    assert_round_trip(&path, &entries);
    if let Some(out) = debugfs(&path, "stats") {
        assert!(out.contains("has_journal"), "{out}");
        let journal = debugfs(&path, "stat <8>").unwrap();
        assert!(journal.contains("Size: 4194304"), "{journal}"); // 1024 blocks for < 128 MiB
    }
}

#[test]
fn content_size_mismatch_is_an_error() {
    let entries = vec![Entry::new(
        "f",
        Kind::File {
            size: 10,
            data: FileData::Bytes(vec![1; 10]),
        },
        0o644,
        T,
    )];
    let path = temp_path("mismatch");
    let file = std::fs::File::create(&*path).unwrap();
    file.set_len(16 << 20).unwrap();
    let o = opts(16 << 20);
    // Declared 10 bytes, but the source yields 11, then 9.
    for n in [11, 9] {
        struct Src(usize);
        impl ext4_writer::ContentSource for Src {
            fn open(&self, _: &str) -> std::io::Result<Box<dyn std::io::Read + '_>> {
                Ok(Box::new(std::io::repeat(7).take(self.0 as u64)))
            }
        }
        use std::io::Read;
        let ext = vec![Entry::new(
            "f",
            Kind::File {
                size: 10,
                data: FileData::External("k".into()),
            },
            0o644,
            T,
        )];
        let err = ext4_writer::write(&file, 0, &ext, &Src(n), &o).unwrap_err();
        assert!(
            matches!(err, Error::ContentSize { expected: 10, .. }),
            "{err}"
        );
    }
    ext4_writer::write(&file, 0, &entries, &NoSource, &o).unwrap();
}

#[test]
fn timestamps_beyond_2038_and_before_1970() {
    let at = |secs| Timestamp { secs, nanos: 5 };
    let entries = vec![
        Entry::file("future", 0o644, at(1 << 31), FileData::Bytes(vec![])),
        Entry::file("far", 0o644, at(3 << 32), FileData::Bytes(vec![])),
        Entry::file("past", 0o644, at(-86_400), FileData::Bytes(vec![])),
    ];
    let (path, _) = image("times", &entries, &NoSource, &opts(16 << 20));
    e2fsck(&path);
    let Some(s) = debugfs(&path, "stat /future") else {
        return;
    };
    assert!(
        s.contains("mtime: 0x80000000:00000015 -- Tue Jan 19 03:14:08 2038"),
        "{s}"
    );
    let s = debugfs(&path, "stat /past").unwrap();
    assert!(
        s.contains("mtime: 0xfffeae80:00000014 -- Wed Dec 31 00:00:00 1969"),
        "{s}"
    );
    let s = debugfs(&path, "stat /far").unwrap();
    assert!(s.contains("mtime: 0x00000000:00000017"), "{s}");
}

/// Content generator for huge files: zeros, except 16 marker bytes at the
/// start of every MiB, so images stay sparse and cheap.
struct Pattern {
    size: u64,
}

fn marker(mib: u64) -> [u8; 16] {
    let mut m = [0xA5; 16];
    m[..8].copy_from_slice(&(mib + 1).to_le_bytes());
    m
}

struct PatternReader {
    pos: u64,
    size: u64,
}

impl std::io::Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min((self.size - self.pos) as usize);
        let buf = &mut buf[..n];
        buf.fill(0);
        let mut mib = self.pos.div_ceil(1 << 20);
        while mib << 20 < self.pos + n as u64 {
            let m = marker(mib);
            let at = ((mib << 20) - self.pos) as usize;
            let len = 16.min(n - at);
            buf[at..at + len].copy_from_slice(&m[..len]);
            mib += 1;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl ext4_writer::ContentSource for Pattern {
    fn open(&self, _key: &str) -> std::io::Result<Box<dyn std::io::Read + '_>> {
        Ok(Box::new(PatternReader {
            pos: 0,
            size: self.size,
        }))
    }
}

/// A file over 512 MiB needs more than four extents (one covers at most
/// 128 MiB), so its extent tree gets a leaf block outside the inode.
#[test]
fn huge_file_uses_an_extent_tree() {
    let size = (600 << 20) + 1234;
    let entries = vec![
        Entry::file("before", 0o644, T, FileData::Bytes(b"x".to_vec())),
        Entry::new(
            "huge",
            Kind::File {
                size,
                data: FileData::External("blob".into()),
            },
            0o644,
            T,
        ),
        Entry::file("zz-after", 0o644, T, FileData::Bytes(b"y".to_vec())),
    ];
    let source = Pattern { size };
    let min = ext4_writer::min_size(&entries, &opts(0)).unwrap();
    assert!(min > size && min < size + (8 << 20), "{min}");
    // Allocated: 128 MiB extents, five or more. Sparse: an extent per marker.
    for sparse in [false, true] {
        let mut o = opts(min);
        o.sparse_files = sparse;
        let (path, _) = image("huge", &entries, &source, &o);
        e2fsck(&path);
        check_huge(&path, size);
        let Some(stat) = debugfs(&path, "stat /huge") else {
            continue;
        };
        assert!(
            stat.contains("(ETB0)"),
            "expected an extent tree block: {stat}"
        );
        let blocks = if sparse { 601 + 2 } else { 153_601 + 1 };
        assert!(
            stat.contains(&format!("Blockcount: {}\n", blocks * 8)),
            "{stat}"
        );
    }
}

fn check_huge(path: &std::path::Path, size: u64) {
    let fs = ext4_view::Ext4::load_from_path(path).unwrap();
    assert_eq!(fs.metadata("/huge").unwrap().len(), size);
    assert_eq!(fs.read("/zz-after").unwrap(), b"y");
    let mut f = fs.open("/huge").unwrap();
    use std::io::{Read, Seek, SeekFrom};
    for mib in [0u64, 1, 127, 128, 129, 255, 256, 511, 512, 599, 600] {
        // 8 zero bytes before each marker, then the marker itself.
        let at = (mib << 20).saturating_sub(8);
        let mut got = vec![0u8; ((mib << 20) - at) as usize + 16];
        f.seek(SeekFrom::Start(at)).unwrap();
        f.read_exact(&mut got).unwrap();
        let (zeros, m) = got.split_at(got.len() - 16);
        assert!(
            zeros.iter().all(|&b| b == 0) && m == marker(mib),
            "at MiB {mib}"
        );
    }
    let mut tail = Vec::new();
    f.seek(SeekFrom::Start(size - 100)).unwrap();
    f.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, vec![0; 100]);
}

/// Over 507 leaf blocks need a second index level (interior nodes).
#[test]
fn two_level_htree_directory() {
    let mut entries: Vec<Entry> = (0..8200)
        .map(|i| Entry::file(format!("wide/{i:0>250}"), 0o644, T, FileData::Bytes(vec![])))
        .collect();
    entries.push(Entry::file(
        "wide/short",
        0o644,
        T,
        FileData::Bytes(b"s".to_vec()),
    ));
    let (path, _) = image("htree2", &entries, &NoSource, &opts(64 << 20));
    e2fsck(&path);
    assert_round_trip(&path, &entries);
    if let Some(out) = debugfs(&path, "htree_dump /wide") {
        assert!(out.contains("Indirect levels: 1"), "{}", &out[..500]);
    }
}

/// The data partition is grown on the device; resize2fs must handle our
/// layout (no resize inode: it moves metadata to make room for more group
/// descriptors).
#[test]
fn resize2fs_can_grow_it() {
    let entries = generated_tree(9, 10, 50);
    let mut o = opts(64 << 20);
    o.journal_blocks = Some(1024);
    o.inodes = ext4_writer::InodeCount::BytesPerInode(65536);
    let (path, _) = image("grow", &entries, &NoSource, &o);
    let Some(resize2fs) = tool("resize2fs") else {
        return;
    };
    // 20 GiB: 160 groups need three descriptor blocks instead of one.
    grow_to_20_gib(&path, &resize2fs);
    assert_round_trip(&path, &entries);
}

/// Grows the image file to 20 GiB, runs resize2fs on it, and checks the
/// result with e2fsck.
fn grow_to_20_gib(path: &std::path::PathBuf, resize2fs: &std::path::Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(20 << 30)
        .unwrap();
    let out = std::process::Command::new(resize2fs)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    e2fsck(path);
}

/// Sizes above 4 GiB use i_size_high; the content is mostly zeros, so the
/// image stays small.
#[test]
fn file_over_4_gib() {
    struct Zeros;
    impl ext4_writer::ContentSource for Zeros {
        fn open(&self, _: &str) -> std::io::Result<Box<dyn std::io::Read + '_>> {
            // A memset-speed source (io::repeat is slow in debug builds).
            Ok(Box::new(PatternReader {
                pos: 0,
                size: (4 << 30) + 1,
            }))
        }
    }
    let size = (4u64 << 30) + 1;
    let entries = vec![Entry::new(
        "big",
        Kind::File {
            size,
            data: FileData::External("z".into()),
        },
        0o644,
        T,
    )];
    let (path, _) = image("4g", &entries, &Zeros, &opts((4 << 30) + (64 << 20)));
    e2fsck(&path);
    let fs = ext4_view::Ext4::load_from_path(&*path).unwrap();
    assert_eq!(fs.metadata("/big").unwrap().len(), size);
    // (ext4-view seeks block by block, too slow here for a spot read.)
    if let Some(stat) = debugfs(&path, "stat /big") {
        assert!(stat.contains("Size: 4294967297"), "{stat}");
    }
}

/// All-zero blocks of files become holes (or stay allocated when asked).
#[test]
fn zero_blocks_become_holes() {
    let mut content = vec![1u8; 4096];
    content.extend_from_slice(&[0; 8192]);
    content.extend_from_slice(&[2; 100]);
    let entries = vec![
        Entry::file("holey", 0o644, T, FileData::Bytes(content)),
        Entry::file("zeros", 0o644, T, FileData::Bytes(vec![0; 10_000])),
    ];
    for sparse in [true, false] {
        let mut o = opts(16 << 20);
        o.sparse_files = sparse;
        let (path, _) = image("holes", &entries, &NoSource, &o);
        e2fsck(&path);
        assert_round_trip(&path, &entries);
        let Some(stat) = debugfs(&path, "stat /holey") else {
            return;
        };
        let (count, zeros_count) = if sparse { (16, 0) } else { (32, 24) };
        assert!(stat.contains(&format!("Blockcount: {count}\n")), "{stat}");
        if sparse {
            assert!(stat.contains("(0):") && stat.contains(", (3):"), "{stat}");
        }
        let stat = debugfs(&path, "stat /zeros").unwrap();
        assert!(
            stat.contains(&format!("Blockcount: {zeros_count}\n")),
            "{stat}"
        );
    }
}

/// Identical xattr sets too big for the inode share a block, at most 1024
/// inodes per block.
#[test]
fn identical_xattr_blocks_are_shared() {
    let acl = vec![b'a'; 200];
    let entries: Vec<Entry> = (0..1500)
        .map(|i| {
            Entry::file(format!("f{i:04}"), 0o644, T, FileData::Bytes(vec![]))
                .xattr("user.shared", &acl)
        })
        .chain([Entry::file("other", 0o644, T, FileData::Bytes(vec![]))
            .xattr("user.shared", [b'b'; 200])])
        .collect();
    let (path, summary) = image("shared", &entries, &NoSource, &opts(16 << 20));
    e2fsck(&path);
    assert_round_trip(&path, &entries);
    let Some(first) = debugfs(&path, "stat /f0000") else {
        return;
    };
    let acl_block = |stat: &str| {
        stat.lines()
            .find(|l| l.starts_with("File ACL:"))
            .unwrap()
            .to_string()
    };
    let a = acl_block(&first);
    assert_eq!(a, acl_block(&debugfs(&path, "stat /f1023").unwrap()));
    assert_ne!(a, acl_block(&debugfs(&path, "stat /f1024").unwrap()));
    assert_ne!(a, acl_block(&debugfs(&path, "stat /other").unwrap()));
    // Three xattr blocks in all, beyond what an xattr-free tree uses.
    let plain: Vec<Entry> = entries
        .iter()
        .cloned()
        .map(|mut e| {
            e.xattrs.clear();
            e
        })
        .collect();
    let (_, plain_summary) = image("plain", &plain, &NoSource, &opts(16 << 20));
    assert_eq!(summary.used_blocks, plain_summary.used_blocks + 3);
}

/// Many small variations, each at exactly its minimum size (a full
/// filesystem, often with a short last group): e2fsck and a round trip.
#[test]
fn random_trees_at_minimum_size() {
    for seed in 1..=12u64 {
        let mut rng = Rng(seed * 7919);
        let entries = generated_tree(seed, 1 + rng.below(60) as usize, rng.below(400) as usize);
        let mut o = opts(0);
        o.sparse_files = rng.below(2) == 0;
        if rng.below(3) == 0 {
            o.journal_blocks = Some(1024 + rng.below(3000) as u32);
        }
        if rng.below(3) == 0 {
            o.grow_to = Some(rng.below(200) << 30);
        }
        o.inodes = match rng.below(3) {
            0 => ext4_writer::InodeCount::Auto,
            1 => ext4_writer::InodeCount::BytesPerInode(4096 << rng.below(4)),
            _ => ext4_writer::InodeCount::Count(600 + rng.below(5000) as u32),
        };
        // Some trees get a big file so the filesystem spans several groups.
        let mut entries = entries;
        if rng.below(2) == 0 {
            let size = rng.below(300 << 20);
            let data = FileData::External("pattern".into());
            entries.push(Entry::new("big", Kind::File { size, data }, 0o644, T));
        }
        let source = Pattern {
            size: entries
                .iter()
                .find_map(|e| match &e.kind {
                    Kind::File {
                        size,
                        data: FileData::External(_),
                    } => Some(*size),
                    _ => None,
                })
                .unwrap_or(0),
        };
        let min = ext4_writer::min_size(&entries, &o).unwrap();
        o.size = min;
        let (path, _) = image("random", &entries, &source, &o);
        e2fsck(&path);
        assert_round_trip(&path, &entries);
        o.size = min - 4096;
        let path = temp_path("random-small");
        let file = std::fs::File::create(&*path).unwrap();
        file.set_len(o.size).unwrap();
        let err = ext4_writer::write(&file, 0, &entries, &source, &o).unwrap_err();
        assert!(
            matches!(err, Error::TooSmall { needed, .. } if needed == min),
            "seed {seed}: {err}"
        );
    }
}

/// With `grow_to`, descriptor blocks are reserved and mapped by the resize
/// inode, as mke2fs does, for online growth without meta_bg.
#[test]
fn reserved_gdt_blocks_for_growth() {
    let entries = generated_tree(11, 10, 60);
    for (size, grow_to) in [(64u64 << 20, 64u64 << 30), (1 << 30, 100 << 30)] {
        let mut o = opts(size);
        o.grow_to = Some(grow_to);
        o.journal_blocks = Some(1024);
        let (path, _) = image("resize-inode", &entries, &NoSource, &o);
        e2fsck(&path);
        assert_round_trip(&path, &entries);
        let Some(stats) = debugfs(&path, "stats") else {
            return;
        };
        assert!(stats.contains("resize_inode"), "{stats}");
        let reserved = (grow_to / 4096).div_ceil(32768).div_ceil(64)
            - (size / 4096).div_ceil(32768).div_ceil(64);
        assert!(
            stats.contains(&format!("Reserved GDT blocks:      {reserved}\n")),
            "{stats}"
        );
        // Grown offline through the reserved blocks, it still checks clean.
        if let Some(resize2fs) = tool("resize2fs") {
            grow_to_20_gib(&path, &resize2fs);
        }
    }
}

#[test]
fn content_from_host_files_and_a_source() {
    let host = temp_path("host-content");
    std::fs::write(&*host, b"from the host\n").unwrap();
    struct Store;
    impl ext4_writer::ContentSource for Store {
        fn open(&self, key: &str) -> std::io::Result<Box<dyn std::io::Read + '_>> {
            Ok(Box::new(std::io::Cursor::new(
                format!("blob {key}").into_bytes(),
            )))
        }
    }
    let entries = vec![
        Entry::host_file("etc/motd", 0o644, T, 14, &*host.0),
        Entry::external("usr/share/a", 0o644, T, 8, "abc"),
        Entry::external("usr/share/b", 0o600, T, 9, "wxyz").owner(5, 6),
    ];
    let (path, _) = image("sources", &entries, &Store, &opts(16 << 20));
    e2fsck(&path);
    assert_round_trip(&path, &entries);
    let fs = ext4_view::Ext4::load_from_path(&*path).unwrap();
    assert_eq!(fs.read("/etc/motd").unwrap(), b"from the host\n");
    assert_eq!(fs.read("/usr/share/a").unwrap(), b"blob abc");
    assert_eq!(fs.read("/usr/share/b").unwrap(), b"blob wxyz");
}

/// Writing over old data (not a zeroed file) with `assume_zeroed: false`.
#[test]
fn overwrites_a_dirty_region() {
    let entries = generated_tree(13, 20, 150);
    let mut o = opts(48 << 20);
    o.journal_blocks = Some(1024);
    o.sparse_files = false;
    let (clean, _) = image("clean", &entries, &NoSource, &o);
    let path = temp_path("dirty");
    std::fs::write(&*path, vec![0xA5u8; o.size as usize]).unwrap();
    o.assume_zeroed = false;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&*path)
        .unwrap();
    ext4_writer::write(&file, 0, &entries, &NoSource, &o).unwrap();
    e2fsck(&path);
    assert_round_trip(&path, &entries);
    // Only free blocks may still hold the old bytes; everything in use is
    // the same as in a fresh image.
    let (a, b) = (
        std::fs::read(&*clean).unwrap(),
        std::fs::read(&*path).unwrap(),
    );
    let same = a
        .chunks(4096)
        .zip(b.chunks(4096))
        .filter(|(x, y)| x == y)
        .count();
    let summary_used = a.chunks(4096).filter(|c| c.iter().any(|&x| x != 0)).count();
    assert!(
        same >= summary_used,
        "{same} identical blocks, {summary_used} non-zero in the clean image"
    );
}
