//! Reading one kernel module: decompression and the ELF `.modinfo` section.

use std::borrow::Cow;
use std::io::Read;

use object::{Object, ObjectSection, ObjectSymbol, SymbolSection};

use crate::{Error, module_name_from_path, normalize_name};

/// How a module file is compressed, as told by its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain `.ko`.
    None,
    /// `.ko.xz`
    Xz,
    /// `.ko.zst`
    Zstd,
    /// `.ko.gz`
    Gzip,
}

impl Compression {
    const SUFFIXES: [(&'static str, Compression); 4] = [
        (".ko", Compression::None),
        (".ko.xz", Compression::Xz),
        (".ko.zst", Compression::Zstd),
        (".ko.gz", Compression::Gzip),
    ];

    /// The compression of a module path, or `None` if the path is not a
    /// kernel module file name.
    pub fn from_path(path: &str) -> Option<Compression> {
        Self::SUFFIXES
            .iter()
            .find(|(suffix, _)| path.ends_with(suffix))
            .map(|&(_, c)| c)
    }

    /// `path` with the compression suffix removed (`a/b.ko.xz` → `a/b.ko`).
    pub fn uncompressed_path(path: &str) -> Option<&str> {
        let cut = match Self::from_path(path)? {
            Compression::None => 0,
            Compression::Xz => 3,
            Compression::Zstd => 4,
            Compression::Gzip => 3,
        };
        Some(&path[..path.len() - cut])
    }
}

/// Decompresses a module file according to its file name's suffix.
///
/// Plain `.ko` data is borrowed, not copied.
pub fn decompress<'a>(path: &str, bytes: &'a [u8]) -> Result<Cow<'a, [u8]>, Error> {
    let compression = Compression::from_path(path).ok_or_else(|| Error::NotAModule {
        path: path.to_owned(),
    })?;
    let mut out = Vec::with_capacity(bytes.len() * 4);
    let (format, result) = match compression {
        Compression::None => return Ok(Cow::Borrowed(bytes)),
        Compression::Xz => ("xz", xz2::read::XzDecoder::new(bytes).read_to_end(&mut out)),
        Compression::Zstd => (
            "zstd",
            zstd::stream::copy_decode(bytes, &mut out).map(|()| 0),
        ),
        Compression::Gzip => (
            "gzip",
            flate2::read::GzDecoder::new(bytes).read_to_end(&mut out),
        ),
    };
    result.map_err(|source| Error::Decompress {
        path: path.to_owned(),
        format,
        source,
    })?;
    Ok(Cow::Owned(out))
}

/// What the index generator and the closure need to know about one module.
/// Serialisable so callers can cache it: parsing means decompressing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModuleInfo {
    /// The module name as kmod derives it from the file name, normalised
    /// (`snd-aloop.ko.xz` → `snd_aloop`).
    pub name: String,
    /// Every `key=value` entry of `.modinfo`, in file order.
    pub modinfo: Vec<(String, String)>,
    /// `depends=`: the modules this one needs loaded first, normalised, in
    /// the order modpost wrote them.
    pub depends: Vec<String>,
    /// Raw `softdep=` values (`pre: a b post: c`), as `modules.softdep` wants them.
    pub softdeps: Vec<String>,
    /// Modules from `softdep pre:`, normalised.
    pub softdep_pre: Vec<String>,
    /// Modules from `softdep post:`, normalised.
    pub softdep_post: Vec<String>,
    /// Raw `weakdep=` values (kmod ≥ 33 writes them to `modules.weakdep`).
    pub weakdeps: Vec<String>,
    /// `alias=` values, raw (`of:N*T*Cfoo`, `pci:v…`, `devname:…`).
    pub aliases: Vec<String>,
    /// `firmware=` files the module may request.
    pub firmware: Vec<String>,
    /// Symbols the module exports (from `__crc_*` symbols, else
    /// `__ksymtab_strings`, like kmod), in symbol-table order.
    pub exports: Vec<String>,
    /// Undefined symbols the module uses, in symbol-table order. Only used
    /// to order dependencies exactly like depmod does.
    pub imports: Vec<String>,
}

impl ModuleInfo {
    /// All values of a `.modinfo` key, in file order.
    pub fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.modinfo
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Decompresses and parses a module file; `path` is used for the module
/// name, the compression and error messages.
pub fn parse_module(path: &str, bytes: &[u8]) -> Result<ModuleInfo, Error> {
    let elf = decompress(path, bytes)?;
    parse_module_elf(path, &elf)
}

/// Parses an already decompressed module ELF object.
pub fn parse_module_elf(path: &str, elf: &[u8]) -> Result<ModuleInfo, Error> {
    let elf_error = |source| Error::Elf {
        path: path.to_owned(),
        source,
    };
    let file = object::File::parse(elf).map_err(elf_error)?;
    let modinfo = file
        .section_by_name(".modinfo")
        .ok_or_else(|| Error::NoModinfo {
            path: path.to_owned(),
        })?
        .data()
        .map_err(elf_error)?;

    let mut info = ModuleInfo {
        name: module_name_from_path(path),
        exports: exports(&file).map_err(elf_error)?,
        imports: imports(&file),
        ..ModuleInfo::default()
    };
    for entry in strings(modinfo) {
        let Some((key, value)) = entry.split_once('=') else {
            continue;
        };
        match key {
            "depends" => info.depends.extend(
                value
                    .split(',')
                    .filter(|d| !d.is_empty())
                    .map(normalize_name),
            ),
            "softdep" => {
                let (pre, post) = parse_softdep(value);
                info.softdep_pre.extend(pre);
                info.softdep_post.extend(post);
                info.softdeps.push(value.to_owned());
            }
            "weakdep" => info.weakdeps.push(value.to_owned()),
            "alias" => info.aliases.push(value.to_owned()),
            "firmware" => info.firmware.push(value.to_owned()),
            _ => {}
        }
        info.modinfo.push((key.to_owned(), value.to_owned()));
    }
    Ok(info)
}

/// The non-empty NUL-terminated strings of a section (lossily decoded).
fn strings(data: &[u8]) -> impl Iterator<Item = Cow<'_, str>> {
    data.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(String::from_utf8_lossy)
}

/// Exported symbols the way kmod's `kmod_elf_get_symbols` finds them.
fn exports(file: &object::File) -> Result<Vec<String>, object::Error> {
    let crcs: Vec<String> = file
        .symbols()
        .filter_map(|sym| {
            let name = sym.name_bytes().ok()?.strip_prefix(b"__crc_")?;
            Some(String::from_utf8_lossy(name).into_owned())
        })
        .collect();
    if !crcs.is_empty() {
        return Ok(crcs);
    }
    match file.section_by_name("__ksymtab_strings") {
        Some(section) => Ok(strings(section.data()?).map(Cow::into_owned).collect()),
        None => Ok(Vec::new()),
    }
}

/// Undefined symbols the way kmod's `kmod_elf_get_dependency_symbols`
/// finds them: in symbol-table order, skipping empty names.
fn imports(file: &object::File) -> Vec<String> {
    file.symbols()
        .filter(|sym| sym.section() == SymbolSection::Undefined)
        .filter_map(|sym| sym.name_bytes().ok().filter(|name| !name.is_empty()))
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect()
}

/// Splits a `softdep=` value into its `pre:` and `post:` module names,
/// normalised, like kmod's config parser (words before any `pre:`/`post:`
/// are ignored).
fn parse_softdep(value: &str) -> (Vec<String>, Vec<String>) {
    let (mut pre, mut post) = (Vec::new(), Vec::new());
    let mut target: Option<&mut Vec<String>> = None;
    for word in value.split_whitespace() {
        match word {
            "pre:" => target = Some(&mut pre),
            "post:" => target = Some(&mut post),
            _ => {
                if let Some(list) = target.as_deref_mut() {
                    list.push(normalize_name(word));
                }
            }
        }
    }
    (pre, post)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use object::write::{self, StandardSection};
    use object::{
        Architecture, BinaryFormat, Endianness, SectionKind, SymbolFlags, SymbolKind, SymbolScope,
    };

    use super::*;

    /// A tiny relocatable ELF object like a kernel module: `.modinfo`
    /// strings, optional extra sections and symbols (defined or undefined).
    fn elf(modinfo: &[&str], sections: &[(&str, &[u8])], symbols: &[(&str, bool)]) -> Vec<u8> {
        let mut obj =
            write::Object::new(BinaryFormat::Elf, Architecture::Aarch64, Endianness::Little);
        if !modinfo.is_empty() {
            let id = obj.add_section(vec![], b".modinfo".to_vec(), SectionKind::ReadOnlyString);
            let data: Vec<u8> = modinfo.iter().flat_map(|e| e.bytes().chain([0])).collect();
            obj.append_section_data(id, &data, 1);
        }
        for (name, data) in sections {
            let id = obj.add_section(vec![], name.as_bytes().to_vec(), SectionKind::ReadOnlyData);
            obj.append_section_data(id, data, 1);
        }
        let text = obj.section_id(StandardSection::Text);
        obj.append_section_data(text, &[0; 16], 4);
        for &(name, defined) in symbols {
            obj.add_symbol(write::Symbol {
                name: name.as_bytes().to_vec(),
                value: 0,
                size: 0,
                kind: SymbolKind::Data,
                scope: SymbolScope::Linkage,
                weak: false,
                section: if defined {
                    write::SymbolSection::Section(text)
                } else {
                    write::SymbolSection::Undefined
                },
                flags: SymbolFlags::None,
            });
        }
        obj.write().unwrap()
    }

    fn sample() -> Vec<u8> {
        elf(
            &[
                "license=GPL",
                "depends=snd-timer,snd,,snd-pcm",
                "softdep=pre: crypto-crc32c foo post: bar-baz",
                "alias=of:N*T*Cfoo,bar",
                "alias=char-major-10-237",
                "firmware=foo/bar.bin",
                "weakdep=dummy",
                "novalue",
                "name=snd_aloop",
            ],
            &[],
            &[
                ("__crc_snd_foo", true),
                ("__crc_snd_bar", true),
                ("snd_timer_open", false),
                ("kfree", false),
            ],
        )
    }

    #[test]
    fn reads_modinfo_fields() {
        let info = parse_module("kernel/sound/drivers/snd-aloop.ko", &sample()).unwrap();
        assert_eq!(info.name, "snd_aloop");
        assert_eq!(info.depends, ["snd_timer", "snd", "snd_pcm"]);
        assert_eq!(info.softdeps, ["pre: crypto-crc32c foo post: bar-baz"]);
        assert_eq!(info.softdep_pre, ["crypto_crc32c", "foo"]);
        assert_eq!(info.softdep_post, ["bar_baz"]);
        assert_eq!(info.aliases, ["of:N*T*Cfoo,bar", "char-major-10-237"]);
        assert_eq!(info.firmware, ["foo/bar.bin"]);
        assert_eq!(info.weakdeps, ["dummy"]);
        assert_eq!(info.values("license").collect::<Vec<_>>(), ["GPL"]);
        assert_eq!(info.modinfo.len(), 8, "entries without '=' are skipped");
        assert_eq!(info.exports, ["snd_foo", "snd_bar"]);
        assert_eq!(info.imports, ["snd_timer_open", "kfree"]);
    }

    #[test]
    fn exports_fall_back_to_ksymtab_strings() {
        let bytes = elf(
            &["license=GPL"],
            &[("__ksymtab_strings", b"\0\0alpha\0beta\0")],
            &[],
        );
        let info = parse_module_elf("m.ko", &bytes).unwrap();
        assert_eq!(info.exports, ["alpha", "beta"]);
    }

    #[test]
    fn decompresses_xz_zstd_and_gzip() {
        let plain = sample();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&plain).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let zst = zstd::encode_all(plain.as_slice(), 3).unwrap();
        let expected = parse_module("a/snd-aloop.ko", &plain).unwrap();
        for (path, bytes) in [
            ("a/snd-aloop.ko.xz", xz.finish().unwrap()),
            ("a/snd-aloop.ko.gz", gz.finish().unwrap()),
            ("a/snd-aloop.ko.zst", zst),
        ] {
            assert_eq!(parse_module(path, &bytes).unwrap(), expected, "{path}");
        }
    }

    #[test]
    fn errors_name_the_file() {
        let err = parse_module("x/foo.ko.xz", b"not xz").unwrap_err();
        assert!(
            matches!(err, Error::Decompress { format: "xz", .. }),
            "{err}"
        );
        assert!(err.to_string().starts_with("x/foo.ko.xz: "), "{err}");

        let err = parse_module("x/foo.ko", b"\x7fELF garbage").unwrap_err();
        assert!(matches!(err, Error::Elf { .. }), "{err}");

        let err = parse_module("x/foo.ko", &elf(&[], &[], &[])).unwrap_err();
        assert!(matches!(err, Error::NoModinfo { .. }), "{err}");

        let err = parse_module("x/foo.ko.bz2", b"").unwrap_err();
        assert!(matches!(err, Error::NotAModule { .. }), "{err}");
    }

    #[test]
    fn compression_from_path() {
        assert_eq!(
            Compression::from_path("a/b.ko.zst"),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::from_path("a/b.ko"), Some(Compression::None));
        assert_eq!(Compression::from_path("a/b.o"), None);
        assert_eq!(
            Compression::uncompressed_path("a/b-c.ko.xz"),
            Some("a/b-c.ko")
        );
        assert_eq!(Compression::uncompressed_path("a/b.ko.gz"), Some("a/b.ko"));
    }
}
