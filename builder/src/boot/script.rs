//! U-Boot's legacy image format for boot scripts (`boot.scr`), the same bytes
//! `mkimage -A arm64 -O linux -T script -C none` writes.
//!
//! Layout: a 64-byte big-endian header (magic, header CRC32 computed with its
//! own field zeroed, timestamp, data size, load and entry addresses, data
//! CRC32, OS, architecture, type, compression, 32-byte name), then the data:
//! a table of image sizes ending in a zero word, then the script text.

const MAGIC: u32 = 0x2705_1956;
const OS_LINUX: u8 = 5;
const ARCH_ARM64: u8 = 22;
const TYPE_SCRIPT: u8 = 6;
const COMPRESSION_NONE: u8 = 0;

/// Wraps a U-Boot script as a legacy script image. `timestamp` is the
/// image's creation time (SOURCE_DATE_EPOCH); `name` is truncated to 31 bytes.
pub fn script_image(script: &str, name: &str, timestamp: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity(script.len() + 8);
    data.extend_from_slice(&(script.len() as u32).to_be_bytes());
    data.extend_from_slice(&0u32.to_be_bytes());
    data.extend_from_slice(script.as_bytes());

    let mut header = [0u8; 64];
    header[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    header[8..12].copy_from_slice(&timestamp.to_be_bytes());
    header[12..16].copy_from_slice(&(data.len() as u32).to_be_bytes());
    header[24..28].copy_from_slice(&crc32fast::hash(&data).to_be_bytes());
    header[28] = OS_LINUX;
    header[29] = ARCH_ARM64;
    header[30] = TYPE_SCRIPT;
    header[31] = COMPRESSION_NONE;
    let name = &name.as_bytes()[..name.len().min(31)];
    header[32..32 + name.len()].copy_from_slice(name);
    let header_crc = crc32fast::hash(&header);
    header[4..8].copy_from_slice(&header_crc.to_be_bytes());

    let mut image = header.to_vec();
    image.extend_from_slice(&data);
    image
}

/// The script inside a legacy script image, after checking both CRCs.
pub fn read_script_image(image: &[u8]) -> Result<String, String> {
    if image.len() < 72 || image[0..4] != MAGIC.to_be_bytes() {
        return Err("not a U-Boot legacy image (bad magic)".into());
    }
    let word = |at: usize| u32::from_be_bytes(image[at..at + 4].try_into().expect("4 bytes"));
    let mut header = image[..64].to_vec();
    header[4..8].fill(0);
    if crc32fast::hash(&header) != word(4) {
        return Err("header CRC mismatch".into());
    }
    let data = image
        .get(64..64 + word(12) as usize)
        .ok_or("image shorter than its header says")?;
    if crc32fast::hash(data) != word(24) {
        return Err("data CRC mismatch".into());
    }
    if image[30] != TYPE_SCRIPT {
        return Err(format!("image type {} is not a script", image[30]));
    }
    let length = u32::from_be_bytes(data[0..4].try_into().expect("4 bytes")) as usize;
    let text = data
        .get(8..8 + length)
        .ok_or("script length past the data")?;
    String::from_utf8(text.to_vec()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "echo vinyl boot\nsetenv bootargs console=ttyAMA0\n";

    #[test]
    fn round_trips_and_rejects_corruption() {
        let image = script_image(SCRIPT, "vinyl boot script", 1_789_199_741);
        assert_eq!(read_script_image(&image).unwrap(), SCRIPT);
        let mut corrupt = image.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        assert_eq!(
            read_script_image(&corrupt).unwrap_err(),
            "data CRC mismatch"
        );
        let mut corrupt = image;
        corrupt[40] ^= 1;
        assert_eq!(
            read_script_image(&corrupt).unwrap_err(),
            "header CRC mismatch"
        );
    }

    /// The real judge: U-Boot's own `mkimage` (Debian package u-boot-tools).
    #[test]
    fn matches_mkimage_byte_for_byte() {
        let which = crate::doctor::which("mkimage");
        let Some(mkimage) = test_support::found("matches_mkimage_byte_for_byte", which, || {
            "mkimage is not installed (apt-get install u-boot-tools)".into()
        }) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (input, output) = (dir.path().join("boot.cmd"), dir.path().join("boot.scr"));
        std::fs::write(&input, SCRIPT).unwrap();
        let status = std::process::Command::new(mkimage)
            .args([
                "-A",
                "arm64",
                "-O",
                "linux",
                "-T",
                "script",
                "-C",
                "none",
                "-n",
                "vinyl boot script",
                "-d",
            ])
            .arg(&input)
            .arg(&output)
            .env("SOURCE_DATE_EPOCH", "1789199741")
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        assert_eq!(
            std::fs::read(&output).unwrap(),
            script_image(SCRIPT, "vinyl boot script", 1_789_199_741)
        );
    }
}
