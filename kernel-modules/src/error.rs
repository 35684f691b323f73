//! The crate's error type.

/// Everything that can go wrong while parsing modules, computing the closure
/// or writing indexes. Each message names the module or file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path does not end in `.ko`, `.ko.xz`, `.ko.zst` or `.ko.gz`.
    #[error("{path}: not a kernel module file name (expected .ko, .ko.xz, .ko.zst or .ko.gz)")]
    NotAModule {
        /// The offending path.
        path: String,
    },
    /// The compressed module could not be decompressed.
    #[error(
        "{path}: cannot decompress {format} data ({source}); is the file truncated or mislabelled?"
    )]
    Decompress {
        /// The module's path.
        path: String,
        /// `xz`, `zstd` or `gzip`.
        format: &'static str,
        /// The decoder's error.
        source: std::io::Error,
    },
    /// The (decompressed) module is not a readable ELF object.
    #[error("{path}: not a valid ELF object ({source}); is it really a kernel module?")]
    Elf {
        /// The module's path.
        path: String,
        /// The ELF reader's error.
        source: object::Error,
    },
    /// The ELF object has no `.modinfo` section.
    #[error("{path}: has no .modinfo section; is it really a kernel module?")]
    NoModinfo {
        /// The module's path.
        path: String,
    },
    /// Two files provide the same module name.
    #[error("module `{name}` is provided by both {first} and {second}; remove one of them")]
    DuplicateModule {
        /// The (normalised) module name.
        name: String,
        /// The first path.
        first: String,
        /// The second path.
        second: String,
    },
    /// A wanted module is neither a module file nor built into the kernel.
    #[error(
        "unknown kernel module `{name}`: neither a module file nor listed in modules.builtin{}; \
         check the board's module list",
        suggest(.suggestions)
    )]
    UnknownModule {
        /// The name as requested.
        name: String,
        /// Close module names, best first.
        suggestions: Vec<String>,
    },
    /// A module's `depends=` names a module that is not available.
    #[error(
        "{path} depends on `{dependency}`, which is not among the given modules; \
         pass the complete module tree (or the complete closure when generating indexes)"
    )]
    MissingDependency {
        /// The depending module's path.
        path: String,
        /// The missing dependency's name.
        dependency: String,
    },
    /// The modules' `depends=` form a cycle, so no load order exists.
    #[error("dependency cycle among modules: {}; the module set is broken", .0.join(", "))]
    DependencyCycle(Vec<String>),
    /// kmod's index format only stores 7-bit ASCII.
    #[error(
        "{what} `{text}` is not 7-bit ASCII, which kmod's index format cannot store; rename it"
    )]
    NonAscii {
        /// Which kind of string (module name, alias, path, …).
        what: &'static str,
        /// The offending string.
        text: String,
    },
}

fn suggest(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", names.join(", "))
    }
}
