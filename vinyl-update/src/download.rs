//! `install = download`: the whole bundle to /data before RAUC sees it.
//! The bytes go to `<dir>/<sha256>.part`; a check after a dropped
//! connection (or a power cut) resumes it with a range request where it
//! stopped. Complete, it must have the channel's size and SHA-256, or it is
//! deleted; then it is renamed to `<sha256>.raucb` and installed from
//! there. Other releases' leftovers in `dir` are deleted first.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

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
    let copied = std::io::copy(&mut body, &mut file)
        .map_err(|e| failed(&format!("downloading {url} into {}", part.display()), &e))?;
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
