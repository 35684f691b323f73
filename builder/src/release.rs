//! Stage 9 (`builder publish`): a release directory any static web server
//! can host, for people and for devices:
//!
//! ```text
//! <name>-<version>.img.xz, .img.xz.sha256, .bmap   people flashing a card
//! <name>-<version>.raucb                           devices (signed RAUC bundle)
//! channel.json                                     what devices poll (`update-channel`)
//! os_list.json, icon.png                           Raspberry Pi Imager (`--repo URL/os_list.json`)
//! ```
//!
//! Everything but the bundle's signature derives from the inputs, so
//! publishing twice gives the same directory. The directory is replaced
//! as one set (`output_dir`): a web server never serves a channel file
//! whose bundle is missing. Files in it that are not ours (a README, an
//! older release someone keeps) are carried over.

use crate::bundle::Bundle;
use crate::output_dir::OutputDir;
use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use update_channel::{BundleRef, Channel};

/// Raspberry Pi Imager's repository file.
pub const OS_LIST: &str = "os_list.json";
/// The icon Imager shows beside the image.
pub const ICON: &str = "icon.png";
const ICON_BYTES: &[u8] = include_bytes!("../assets/vinyl-icon.png");

/// What a release is made of.
pub struct ReleaseSpec {
    /// The image's base name (`vinyl-rpi4`).
    pub name: String,
    /// One line for people (the board's description).
    pub description: String,
    pub version: String,
    /// `YYYY-MM-DD`, the locked archive's date.
    pub released: String,
    /// RAUC's compatible, `vinyl-<board>`.
    pub compatible: String,
    pub build: String,
    /// Imager's device tags (`pi4-64bit`); empty: every device.
    pub imager_devices: Vec<String>,
    /// The built `.img`, with its `.img.xz` and `.bmap` beside it.
    pub image: PathBuf,
    pub image_xz: PathBuf,
    pub bmap: PathBuf,
    /// Where the directory will be served; without it, no `os_list.json`
    /// (Imager needs absolute URLs). Devices need none: the channel file's
    /// bundle URL is relative.
    pub base_url: Option<url::Url>,
    /// The oldest version that may update to this one.
    pub min_version: Option<String>,
    pub out: PathBuf,
}

/// A release written.
#[derive(Debug, Clone)]
pub struct Release {
    pub dir: PathBuf,
    /// The file names in it, sorted.
    pub files: Vec<String>,
    pub channel: Channel,
    pub bundle: Bundle,
}

/// Raspberry Pi Imager's `os_list` entry, with the fields its repository
/// format documents. No `init_format`: the image is not customised by
/// Imager (no user, no firstrun script); `authorized_keys` and `wifi.txt`
/// on the boot partition do that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImagerEntry {
    pub name: String,
    pub description: String,
    pub icon: String,
    pub url: String,
    pub extract_size: u64,
    pub extract_sha256: String,
    pub image_download_size: u64,
    pub image_download_sha256: String,
    pub release_date: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    pub bmap_url: String,
}

/// `{"os_list": [entry]}`, pretty, newline last.
pub fn os_list_json(entry: &ImagerEntry) -> String {
    serde_json::to_string_pretty(&serde_json::json!({ "os_list": [entry] }))
        .expect("an os_list serializes")
        + "\n"
}

/// The base URL a release is served under: `--base-url`, else the
/// directory of the board's `[update] url`. Must be http(s); ends in `/`
/// so file names join below it.
pub fn base_url(flag: Option<&str>, update_url: Option<&str>) -> Result<Option<url::Url>> {
    let (what, text) = match (flag, update_url) {
        (Some(flag), _) => ("--base-url", flag.to_string()),
        (None, Some(channel)) => (
            "[update] url",
            match channel.rfind('/') {
                Some(i) => channel[..=i].to_string(),
                None => channel.to_string(),
            },
        ),
        (None, None) => return Ok(None),
    };
    let mut url = crate::values::http_url(what, &text, "https://updates.example.org/vinyl/")?;
    if url.query().is_some() || url.fragment().is_some() {
        bail!("{what} {text:?}: a base URL has no query or fragment");
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(Some(url))
}

/// Writes the release into `spec.out`, the bundle through `write_bundle`
/// (given the staging directory), and swaps the directory in as one set.
pub fn write(
    spec: &ReleaseSpec,
    write_bundle: impl FnOnce(&Path) -> Result<Bundle>,
) -> Result<Release> {
    let out = OutputDir::lock(&spec.out)?;
    let staging = out.stage()?;
    let dir = staging.path().to_path_buf();
    let stem = format!("{}-{}", spec.name, spec.version);
    let mut files = Vec::new();

    let xz_name = format!("{stem}.img.xz");
    let xz = link_or_copy(&spec.image_xz, &dir.join(&xz_name))?;
    files.push(xz_name.clone());
    files.push(text(
        &dir,
        &format!("{xz_name}.sha256"),
        &format!("{}  {xz_name}\n", xz.sha256),
    )?);
    let bmap_name = format!("{stem}.bmap");
    link_or_copy(&spec.bmap, &dir.join(&bmap_name))?;
    files.push(bmap_name.clone());
    let image = file_digest(&spec.image)?;

    let bundle = write_bundle(&dir)?;
    let bundle_name = bundle
        .path
        .strip_prefix(&dir)
        .ok()
        .and_then(|p| p.to_str())
        .filter(|p| !p.contains('/'))
        .with_context(|| {
            format!(
                "the bundle {} is not in {}",
                bundle.path.display(),
                dir.display()
            )
        })?
        .to_string();
    let bundle_digest = file_digest(&bundle.path)?;
    files.push(bundle_name.clone());

    let channel = Channel {
        format: update_channel::FORMAT,
        compatible: spec.compatible.clone(),
        version: spec.version.clone(),
        build: spec.build.clone(),
        released: spec.released.clone(),
        min_version: spec.min_version.clone(),
        bundle: BundleRef {
            url: bundle_name,
            size: bundle_digest.size,
            sha256: bundle_digest.sha256,
            manifest_sha256: crate::store::sha256_hex(bundle.manifest.to_text().as_bytes()),
        },
    };
    files.push(text(&dir, update_channel::FILE_NAME, &channel.to_json())?);

    if let Some(base) = &spec.base_url {
        let join = |name: &str| -> Result<String> {
            Ok(base
                .join(name)
                .with_context(|| format!("joining {name} to {base}"))?
                .to_string())
        };
        std::fs::write(dir.join(ICON), ICON_BYTES)
            .with_context(|| format!("writing {}", dir.join(ICON).display()))?;
        files.push(ICON.to_string());
        let entry = ImagerEntry {
            name: format!("{} {}", spec.name, spec.version),
            description: spec.description.clone(),
            icon: join(ICON)?,
            url: join(&xz_name)?,
            extract_size: image.size,
            extract_sha256: image.sha256,
            image_download_size: xz.size,
            image_download_sha256: xz.sha256,
            release_date: spec.released.clone(),
            devices: spec.imager_devices.clone(),
            bmap_url: join(&bmap_name)?,
        };
        files.push(text(&dir, OS_LIST, &os_list_json(&entry))?);
    }
    files.sort();
    // Never up to date by its key alone: publishing is rare and the
    // bundle is signed anew, so every publish writes the set.
    staging.publish(&format!("release {stem} {}", spec.build), &files, &[])?;
    let bundle = Bundle {
        path: spec
            .out
            .join(bundle.path.file_name().expect("a bundle file name")),
        ..bundle
    };
    Ok(Release {
        dir: spec.out.clone(),
        files,
        channel,
        bundle,
    })
}

/// Size and SHA-256 of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub size: u64,
    pub sha256: String,
}

/// Reads `path` once: its size and SHA-256 (hex).
pub fn file_digest(path: &Path) -> Result<FileDigest> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut size = 0;
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok(FileDigest {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// A hard link to `from` at `to` (the image's outputs are never changed in
/// place, only replaced), or a copy across filesystems; returns the
/// digest of what `to` holds.
fn link_or_copy(from: &Path, to: &Path) -> Result<FileDigest> {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    file_digest(to)
}

/// Writes a small text file into `dir`; returns its name.
fn text(dir: &Path, name: &str, content: &str) -> Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_url_comes_from_the_flag_or_the_channel_url() {
        let url = |flag: Option<&str>, channel: Option<&str>| {
            base_url(flag, channel).map(|u| u.map(|u| u.to_string()))
        };
        assert_eq!(url(None, None).unwrap(), None);
        assert_eq!(
            url(Some("http://[2001:db8::1]:8080/vinyl"), None)
                .unwrap()
                .unwrap(),
            "http://[2001:db8::1]:8080/vinyl/"
        );
        assert_eq!(
            url(None, Some("https://updates.example.org/rpi4/channel.json"))
                .unwrap()
                .unwrap(),
            "https://updates.example.org/rpi4/"
        );
        assert_eq!(
            url(
                Some("https://a.example/x/"),
                Some("https://b.example/y/channel.json")
            )
            .unwrap()
            .unwrap(),
            "https://a.example/x/"
        );
        for bad in [
            "vinyl/",
            "ftp://a.example/",
            "file:///srv/www/",
            "http://a.example/?x=1",
        ] {
            let error = url(Some(bad), None).unwrap_err().to_string();
            assert!(error.starts_with(&format!("--base-url {bad:?}")), "{error}");
        }
        let error = url(None, Some("channel.json")).unwrap_err().to_string();
        assert!(error.starts_with("[update] url"), "{error}");
    }

    #[test]
    fn the_os_list_has_imagers_fields() {
        let entry = ImagerEntry {
            name: "vinyl-rpi4 2026.12.04".into(),
            description: "Raspberry Pi 4".into(),
            icon: "https://u.example/icon.png".into(),
            url: "https://u.example/vinyl-rpi4-2026.12.04.img.xz".into(),
            extract_size: 1 << 30,
            extract_sha256: "aa".repeat(32),
            image_download_size: 66_700_000,
            image_download_sha256: "bb".repeat(32),
            release_date: "2026-12-04".into(),
            devices: vec!["pi4-64bit".into()],
            bmap_url: "https://u.example/vinyl-rpi4-2026.12.04.bmap".into(),
        };
        let value: serde_json::Value = serde_json::from_str(&os_list_json(&entry)).unwrap();
        let listed = &value["os_list"][0];
        for key in [
            "name",
            "description",
            "icon",
            "url",
            "extract_size",
            "extract_sha256",
            "image_download_size",
            "image_download_sha256",
            "release_date",
            "devices",
            "bmap_url",
        ] {
            assert!(!listed[key].is_null(), "{key} missing: {listed}");
        }
        assert_eq!(listed["extract_size"], 1u64 << 30);
        assert_eq!(listed["devices"][0], "pi4-64bit");
        assert!(listed.get("init_format").is_none());
        let everywhere = ImagerEntry {
            devices: vec![],
            ..entry
        };
        let value: serde_json::Value = serde_json::from_str(&os_list_json(&everywhere)).unwrap();
        assert!(value["os_list"][0].get("devices").is_none());
    }
}
