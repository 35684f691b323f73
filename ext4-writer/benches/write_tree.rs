//! Writes a Debian-root-sized tree (default 20,000 files, 200 MB) and prints
//! timings. Run: `cargo bench -p ext4-writer` (env FILES, MB to change the size).

use std::time::Instant;

use ext4_writer::{ContentSource, Entry, Options, Timestamp};

/// Stands in for the builder's blob store: content streamed by key.
struct Store(Vec<Vec<u8>>);

impl ContentSource for Store {
    fn open(&self, key: &str) -> std::io::Result<Box<dyn std::io::Read + '_>> {
        let i: usize = key.parse().unwrap();
        Ok(Box::new(&self.0[i][..]))
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let files = env("FILES", 20_000);
    let total = env("MB", 200) << 20;
    let t = Timestamp::from_secs(1_700_000_000);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };

    let start = Instant::now();
    let mut entries = Vec::new();
    let mut blobs = Vec::new();
    let dirs = files / 10;
    for d in 0..dirs {
        let parent = if d < 20 {
            String::new()
        } else {
            format!("{}/", entries_path(&entries, (next() % 20) as usize))
        };
        entries.push(Entry::dir(format!("{parent}dir{d}"), 0o755, t));
    }
    // Sizes skewed like a real root: many small files, a few big ones.
    let mut sizes: Vec<usize> = (0..files).map(|_| (next() % 16_384) as usize).collect();
    let small: usize = sizes.iter().sum();
    let big = total.saturating_sub(small) / 20;
    for s in sizes.iter_mut().take(20) {
        *s += big;
    }
    for (i, size) in sizes.into_iter().enumerate() {
        let dir = entries_path(&entries, (next() % dirs as u64) as usize);
        // Compressible-ish content, like binaries and text.
        let blob: Vec<u8> = (0..size)
            .map(|k| {
                if k % 7 == 0 {
                    next() as u8
                } else {
                    (k % 251) as u8
                }
            })
            .collect();
        blobs.push(blob);
        entries.push(Entry::external(
            format!("{dir}/file{i}.so"),
            0o644,
            t,
            size as u64,
            i.to_string(),
        ));
    }
    let store = Store(blobs);
    let bytes: usize = store.0.iter().map(Vec::len).sum();
    println!(
        "generated {} entries, {:.1} MB of content in {:.2?}",
        entries.len(),
        bytes as f64 / 1e6,
        start.elapsed()
    );

    let opts = Options::new(0, [1; 16]);
    let start = Instant::now();
    let min = ext4_writer::min_size(&entries, &opts).unwrap();
    println!(
        "min_size: {:.1} MB in {:.2?}",
        min as f64 / 1e6,
        start.elapsed()
    );

    let size = min + min / 10;
    let opts = Options { size, ..opts };
    let path = std::env::temp_dir().join(format!("ext4-writer-bench-{}.img", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(size).unwrap();
    let start = Instant::now();
    let summary = ext4_writer::write(&file, 0, &entries, &store, &opts).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "write: {secs:.3} s for {:.1} MB ({:.0} MB/s), {} files; {} of {} blocks and {} of {} inodes used",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs,
        files,
        summary.used_blocks,
        summary.blocks,
        summary.used_inodes,
        summary.inodes
    );
    let check = std::process::Command::new("e2fsck")
        .arg("-fn")
        .arg(&path)
        .output();
    match check {
        Ok(out) => println!("e2fsck -fn: exit {:?}", out.status.code()),
        Err(e) => println!("e2fsck not run: {e}"),
    }
    std::fs::remove_file(&path).unwrap();
}

fn entries_path(entries: &[Entry], i: usize) -> String {
    String::from_utf8(entries[i].path.clone()).unwrap()
}
