//! `install = download`: the whole bundle to /data before RAUC sees it.
//! The bytes go to `<dir>/<sha256>.part`; a check after a dropped
//! connection (or a power cut) resumes it with a range request where it
//! stopped. Complete, it must have the channel's size and SHA-256, or it is
//! deleted; then it is renamed to `<sha256>.raucb` and installed from
//! there. Other releases' leftovers in `dir` are deleted first. A download
//! never takes the last [`RESERVE`] of /data, which the device's own
//! services write to: without room it does not start.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a download leaves free on /data at least (journal, SSH keys, the
/// updater's record, the streamer's state).
pub const RESERVE: u64 = 16 << 20;

/// Why there is no bundle to install.
#[derive(Debug)]
pub enum Error {
    /// Not the bundle the channel names (size or SHA-256): deleted.
    NotTheBundle(String),
    /// The network, the server or /data: the next check tries again
    /// (resuming what was saved).
    Failed(String),
}

/// The downloaded bundle at `dir/<sha256>.raucb`, fetched from `url` if it
/// is not there yet.
pub fn fetch(
    http: &ureq::Agent,
    url: &url::Url,
    dir: &Path,
    size: u64,
    sha256: &str,
) -> Result<PathBuf, Error> {
    let failed = |what: &str, e: &dyn std::fmt::Display| Error::Failed(format!("{what}: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| failed(&dir.display().to_string(), &e))?;
    let done = dir.join(format!("{sha256}.raucb"));
    let part = dir.join(format!("{sha256}.part"));
    remove_others(dir, &[&done, &part]);
    if done.exists() {
        return Ok(done);
    }

    let mut have = std::fs::metadata(&part).map_or(0, |m| m.len());
    if have >= size {
        // Complete but never checked, or longer than the bundle: start over.
        have = 0;
    }
    let free = rustix::fs::statvfs(dir)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .map_err(|e| failed(&dir.display().to_string(), &e))?;
    if let Err(message) = room(size - have, free) {
        let _ = std::fs::remove_file(&part);
        return Err(Error::Failed(format!("{}: {message}", dir.display())));
    }
    let mut request = http.get(url.as_str());
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let mut response = request
        .call()
        .map_err(|e| failed(&format!("downloading {url}"), &e))?;
    // A server that ignores the range sends the whole file (200).
    let resumed = have > 0 && response.status().as_u16() == 206;
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(&part)
        .map_err(|e| failed(&part.display().to_string(), &e))?;
    let from = if resumed { have } else { 0 };
    let mut body = response
        .body_mut()
        .with_config()
        .limit(size - from + 1)
        .reader();
    let copied = std::io::copy(&mut body, &mut file).map_err(|e| {
        if e.kind() == std::io::ErrorKind::StorageFull {
            // Something else filled /data meanwhile: give the space back.
            let _ = std::fs::remove_file(&part);
        }
        failed(&format!("downloading {url} into {}", part.display()), &e)
    })?;
    file.sync_all()
        .map_err(|e| failed(&part.display().to_string(), &e))?;
    drop(file);

    let got = from + copied;
    let digest = if got == size {
        file_sha256(&part).map_err(|e| failed(&part.display().to_string(), &e))?
    } else {
        String::new()
    };
    if got != size || digest != sha256 {
        let _ = std::fs::remove_file(&part);
        let what = if got != size {
            format!("{got} bytes")
        } else {
            format!("SHA-256 {digest}")
        };
        return Err(Error::NotTheBundle(format!(
            "{url}: downloaded {what}, the channel file says {size} bytes with SHA-256 {sha256}: \
             a truncated or swapped bundle, deleted and not installed"
        )));
    }
    std::fs::rename(&part, &done).map_err(|e| failed(&done.display().to_string(), &e))?;
    Ok(done)
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Whether `needed` more bytes fit in `free` ones with [`RESERVE`] left.
fn room(needed: u64, free: u64) -> Result<(), String> {
    if needed.checked_add(RESERVE).is_some_and(|n| n <= free) {
        return Ok(());
    }
    let mb = |bytes: u64| bytes.div_ceil(1_000_000);
    Err(format!(
        "no room for the bundle: it needs {} MB more and {} MB are free, {} MB of which stay \
         for the device; set `install = stream` (nothing is stored first) or give /data more room",
        mb(needed),
        free / 1_000_000,
        mb(RESERVE)
    ))
}

/// Deletes what `dir` holds besides `keep`: other releases' downloads.
fn remove_others(dir: &Path, keep: &[&Path]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !keep.contains(&path.as_path()) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Deletes a bundle once installed (it is in the slot now).
pub fn discard(bundle: &Path) {
    let _ = std::fs::remove_file(bundle);
    if let Some(dir) = bundle.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_leaves_the_reserve_free() {
        assert!(room(90_000_000, 90_000_000 + RESERVE).is_ok());
        let short = room(90_000_000, 90_000_000 + RESERVE - 1).unwrap_err();
        assert!(
            short.starts_with(
                "no room for the bundle: it needs 90 MB more and 106 MB are free, 17 MB"
            ),
            "{short}"
        );
        assert!(short.contains("`install = stream`"), "{short}");
        assert!(room(u64::MAX, u64::MAX).is_err());
    }
}
