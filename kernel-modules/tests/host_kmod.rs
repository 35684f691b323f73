//! Real Debian trixie arm64 modules (a small fixture taken from
//! `linux-image-6.12.107+deb13-arm64`), judged by the host's kmod:
//! `modprobe`/`modinfo` must read the generated indexes correctly, and the
//! host's `depmod` must write the same bytes for the same kept modules.
//!
//! Without kmod installed these tests panic when `CI` is set and are
//! skipped (with a message) otherwise. Install it with `apt-get install kmod`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kernel_modules::{
    Compression, Error, IndexLayout, ModuleInfo, PackageFiles, closure, generate_indexes,
    parse_module,
};

const VERSION: &str = "6.12.107+deb13-arm64";
const WANTED: [&str; 6] = ["snd-aloop", "ext4", "virtio_blk", "loop", "tdfxfb", "fuse"];
const PACKAGE_FILES: [&str; 3] = [
    "modules.order",
    "modules.builtin",
    "modules.builtin.modinfo",
];

struct Fixture {
    files: BTreeMap<String, Vec<u8>>,
    modules: BTreeMap<String, ModuleInfo>,
    order: String,
    builtin: String,
    builtin_modinfo: Vec<u8>,
}

impl Fixture {
    fn load() -> Fixture {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(VERSION);
        let mut files = BTreeMap::new();
        collect(&dir, &dir, &mut files);
        let modules = files
            .iter()
            .map(|(path, bytes)| (path.clone(), parse_module(path, bytes).unwrap()))
            .collect();
        let text = |name: &str| fs::read_to_string(dir.join(name)).unwrap();
        Fixture {
            files,
            modules,
            order: text("modules.order"),
            builtin: text("modules.builtin"),
            builtin_modinfo: fs::read(dir.join("modules.builtin.modinfo")).unwrap(),
        }
    }

    fn package(&self) -> PackageFiles<'_> {
        PackageFiles {
            modules_order: &self.order,
            modules_builtin: &self.builtin,
            modules_builtin_modinfo: &self.builtin_modinfo,
        }
    }

    fn kept(&self) -> BTreeMap<String, ModuleInfo> {
        let keep = closure(&self.modules, &self.builtin, &WANTED).unwrap();
        self.modules
            .iter()
            .filter(|(path, _)| keep.contains(*path))
            .map(|(path, info)| (path.clone(), info.clone()))
            .collect()
    }

    /// A root laid out like the image: `usr/lib/modules/<ver>/` with the kept
    /// modules and package files, `lib` → `usr/lib` (merged /usr), plus
    /// `extra` files (our indexes) in the module directory.
    fn install(&self, root: &Path, extra: &BTreeMap<String, Vec<u8>>) -> PathBuf {
        let moddir = root.join("usr/lib/modules").join(VERSION);
        for path in self.kept().keys() {
            let dest = moddir.join(path);
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::write(dest, &self.files[path]).unwrap();
        }
        fs::write(moddir.join("modules.order"), &self.order).unwrap();
        fs::write(moddir.join("modules.builtin"), &self.builtin).unwrap();
        fs::write(
            moddir.join("modules.builtin.modinfo"),
            &self.builtin_modinfo,
        )
        .unwrap();
        for (name, bytes) in extra {
            fs::write(moddir.join(name), bytes).unwrap();
        }
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        fs::create_dir(root.join("empty-config")).unwrap();
        moddir
    }
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            if Compression::from_path(&rel).is_some() {
                files.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
}

#[test]
fn closure_of_real_modules() {
    let fixture = Fixture::load();
    let kept: Vec<String> = fixture.kept().into_keys().collect();
    assert_eq!(
        kept,
        [
            "kernel/crypto/crc32c_generic.ko.xz", // ext4 softdep pre: crypto-crc32c (an alias)
            "kernel/drivers/block/loop.ko.xz",
            "kernel/drivers/block/virtio_blk.ko.xz",
            "kernel/drivers/i2c/algos/i2c-algo-bit.ko.xz",
            "kernel/drivers/video/fbdev/core/fb_ddc.ko.xz",
            "kernel/drivers/video/fbdev/tdfxfb.ko.xz",
            "kernel/fs/ext4/ext4.ko.xz",
            "kernel/fs/jbd2/jbd2.ko.xz",
            "kernel/fs/mbcache.ko.xz",
            "kernel/lib/crc16.ko.xz",
            "kernel/sound/core/snd-pcm.ko.xz",
            "kernel/sound/core/snd-timer.ko.xz",
            "kernel/sound/core/snd.ko.xz",
            "kernel/sound/drivers/snd-aloop.ko.xz",
            "kernel/sound/soundcore.ko.xz",
        ]
    );
    assert!(
        fixture.modules.contains_key("kernel/lib/libcrc32c.ko.xz"),
        "fixture has an unneeded module"
    );

    let err = closure(&fixture.modules, &fixture.builtin, &["snd-alop"]).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownModule { suggestions, .. } if suggestions[0] == "snd_aloop"),
        "{err}"
    );
}

#[test]
fn parses_real_modules() {
    let fixture = Fixture::load();
    let aloop = &fixture.modules["kernel/sound/drivers/snd-aloop.ko.xz"];
    assert_eq!(aloop.name, "snd_aloop");
    assert_eq!(aloop.depends, ["snd_timer", "snd", "snd_pcm"]);
    assert_eq!(
        aloop.values("vermagic").next(),
        Some("6.12.107+deb13-arm64 SMP mod_unload modversions aarch64")
    );
    let ext4 = &fixture.modules["kernel/fs/ext4/ext4.ko.xz"];
    assert_eq!(ext4.softdep_pre, ["crypto_crc32c"]);
    assert!(ext4.aliases.iter().any(|a| a == "fs-ext4"));
    let pcm = &fixture.modules["kernel/sound/core/snd-pcm.ko.xz"];
    assert!(pcm.exports.iter().any(|s| s == "snd_pcm_new"));
    assert!(aloop.imports.iter().any(|s| s == "snd_pcm_new"));
    let loop_ = &fixture.modules["kernel/drivers/block/loop.ko.xz"];
    assert!(loop_.aliases.iter().any(|a| a == "block-major-7-*"));
}

#[test]
fn indexes_are_deterministic() {
    let fixture = Fixture::load();
    let kept = fixture.kept();
    let a = generate_indexes(&kept, &fixture.package(), IndexLayout::PreOrder).unwrap();
    let b = generate_indexes(&kept, &fixture.package(), IndexLayout::PreOrder).unwrap();
    assert_eq!(a, b);
    let names: Vec<&str> = a.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "modules.alias",
            "modules.alias.bin",
            "modules.builtin.alias.bin",
            "modules.builtin.bin",
            "modules.dep",
            "modules.dep.bin",
            "modules.devname",
            "modules.softdep",
            "modules.symbols",
            "modules.symbols.bin",
            "modules.weakdep",
        ]
    );
}

/// The path of a kmod tool, or `None` (after panicking under CI) when kmod
/// is not installed.
fn kmod_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path
        .split(':')
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    let found = dirs.map(|dir| dir.join(name)).find(|p| p.is_file());
    test_support::found(&test_support::current_test(), found, || {
        format!("host kmod's `{name}` not found; install it with `apt-get install kmod`")
    })
}

fn run(tool: &Path, args: &[&str]) -> Output {
    Command::new(tool).args(args).output().unwrap()
}

fn stdout(tool: &Path, args: &[&str]) -> String {
    let out = run(tool, args);
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        tool.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn host_modprobe_and_modinfo_read_our_indexes() {
    let (Some(modprobe), Some(modinfo)) = (kmod_tool("modprobe"), kmod_tool("modinfo")) else {
        return;
    };
    let fixture = Fixture::load();
    let indexes =
        generate_indexes(&fixture.kept(), &fixture.package(), IndexLayout::PreOrder).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    fixture.install(tmp.path(), &indexes);
    let root = tmp.path().to_str().unwrap();
    let config = format!("{root}/empty-config");
    let probe = |args: &[&str]| {
        let mut all = vec!["-C", &config, "-d", root, "-S", VERSION];
        all.extend(args);
        stdout(&modprobe, &all)
    };
    // Which files `modprobe --show-depends` would insmod, in order.
    let show = |module: &str| -> Vec<String> {
        probe(&["--show-depends", module])
            .lines()
            .map(|line| {
                let path = line.trim_end().strip_prefix("insmod ").unwrap_or(line);
                path.rsplit('/').next().unwrap().to_owned()
            })
            .collect()
    };

    assert_eq!(
        show("snd-aloop"),
        [
            "soundcore.ko.xz",
            "snd.ko.xz",
            "snd-timer.ko.xz",
            "snd-pcm.ko.xz",
            "snd-aloop.ko.xz"
        ]
    );
    assert_eq!(
        show("ext4"),
        [
            "crc32c_generic.ko.xz",
            "jbd2.ko.xz",
            "mbcache.ko.xz",
            "crc16.ko.xz",
            "ext4.ko.xz"
        ]
    );
    assert_eq!(
        show("tdfxfb"),
        ["fb_ddc.ko.xz", "i2c-algo-bit.ko.xz", "tdfxfb.ko.xz"]
    );
    let first = probe(&["--show-depends", "snd_aloop"]);
    assert!(
        first.starts_with(&format!(
            "insmod {root}/lib/modules/{VERSION}/kernel/sound/soundcore.ko.xz"
        )),
        "{first}"
    );
    assert_eq!(probe(&["--show-depends", "fuse"]).trim(), "builtin fuse");
    assert!(
        !run(
            &modprobe,
            &[
                "-C",
                &config,
                "-d",
                root,
                "-S",
                VERSION,
                "--show-depends",
                "libcrc32c"
            ]
        )
        .status
        .success()
    );

    for (alias, module) in [
        ("block-major-7-0", "loop"), // glob alias in modules.alias.bin
        ("char-major-10-237", "loop"),
        ("virtio:d00000002v00001AF4", "virtio_blk"),
        ("crypto-crc32c", "crc32c_generic"),
        ("fs-ext4", "ext4"),
        ("fs-fuse", "fuse"),               // modules.builtin.alias.bin
        ("symbol:snd_pcm_new", "snd_pcm"), // modules.symbols.bin
    ] {
        assert_eq!(probe(&["-R", alias]).trim(), module, "alias {alias}");
    }

    let info = stdout(&modinfo, &["-b", root, "-k", VERSION, "snd-aloop"]);
    assert!(
        info.lines()
            .any(|l| l.starts_with("filename:")
                && l.ends_with("/kernel/sound/drivers/snd-aloop.ko.xz")),
        "{info}"
    );
    assert!(
        info.lines()
            .any(|l| l == "depends:        snd-timer,snd,snd-pcm"),
        "{info}"
    );
    let info = stdout(&modinfo, &["-b", root, "-k", VERSION, "fuse"]);
    assert!(
        info.lines().any(|l| l == "filename:       (builtin)"),
        "{info}"
    );
}

/// The major version of the host's kmod (`kmod version 30` → 30).
fn kmod_major(kmod: &Path) -> u32 {
    let version = stdout(kmod, &["--version"]);
    let number = version.split_whitespace().nth(2).expect("kmod version N");
    number.split('.').next().unwrap().parse().unwrap()
}

#[test]
fn host_depmod_writes_the_same_bytes() {
    let (Some(depmod), Some(kmod)) = (kmod_tool("depmod"), kmod_tool("kmod")) else {
        return;
    };
    let major = kmod_major(&kmod);
    // depmod of kmod ≥ 34 writes tries in pre-order, older ones in post-order.
    let layout = if major >= 34 {
        IndexLayout::PreOrder
    } else {
        IndexLayout::PostOrder
    };
    let fixture = Fixture::load();
    let ours = generate_indexes(&fixture.kept(), &fixture.package(), layout).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let moddir = fixture.install(tmp.path(), &BTreeMap::new());
    let root = tmp.path().to_str().unwrap();
    let config = format!("{root}/empty-config");
    stdout(&depmod, &["-C", &config, "-b", root, VERSION]);

    let mut theirs = BTreeMap::new();
    for entry in fs::read_dir(&moddir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.starts_with("modules.") && !PACKAGE_FILES.contains(&name.as_str()) {
            theirs.insert(name, fs::read(entry.path()).unwrap());
        }
    }
    for (name, bytes) in &theirs {
        let mine = ours
            .get(name)
            .unwrap_or_else(|| panic!("host depmod wrote {name}, we did not"));
        if name == "modules.symbols" {
            // depmod writes these lines in hash order; we sort them.
            let sorted = |b: &[u8]| {
                let mut lines: Vec<String> = String::from_utf8_lossy(b)
                    .lines()
                    .map(str::to_owned)
                    .collect();
                lines.sort();
                lines
            };
            assert_eq!(sorted(mine), sorted(bytes), "{name}");
        } else {
            assert!(
                mine == bytes,
                "{name} differs from host depmod (kmod {major}):\nours:   {}\ntheirs: {}",
                String::from_utf8_lossy(mine).escape_debug(),
                String::from_utf8_lossy(bytes).escape_debug()
            );
        }
    }
    for name in ours.keys() {
        // kmod < 33 knows no weak dependencies.
        assert!(
            theirs.contains_key(name) || (name == "modules.weakdep" && major < 33),
            "host depmod did not write {name}"
        );
    }
    assert!(
        theirs.len() >= 10,
        "host depmod wrote only {:?}",
        theirs.keys()
    );
}
