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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
