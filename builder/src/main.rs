//! `builder`: builds read-only Raspberry Pi images from Debian packages,
//! without root. See README.md for the two commands that matter.

use anyhow::{Context as _, Result};
use builder::config::Project;
use builder::pipeline::{Options, Pipeline, Product};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    version,
    about = "Builds reproducible, read-only Raspberry Pi images from Debian packages — no root needed"
)]
struct Cli {
    /// Board to build for (see `builder boards`).
    #[arg(long, global = true, default_value = "rpi4")]
    board: String,
    /// Debian mirror URL (else $BUILDER_DEBIAN_MIRROR, else the host's apt sources).
    #[arg(long, global = true, value_name = "URL")]
    mirror: Option<String>,
    /// Cache directory for downloads and unpacked packages
    /// (default: $BUILDER_CACHE_DIR or ~/.cache/vinyl-builder).
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Project directory holding boards/, recipes/ and overlay/ (default: this workspace).
    #[arg(long, global = true, value_name = "DIR")]
    project: Option<PathBuf>,
    /// Add a recipe to the board's for this build (repeatable); used for test
    /// layers such as `test-shell`.
    #[arg(long = "recipe", global = true, value_name = "NAME")]
    recipes: Vec<String>,
    /// The device's hostname, also its mDNS name `<name>.local` (default: the board's).
    #[arg(long, global = true, value_name = "NAME")]
    hostname: Option<String>,
    /// An OpenSSH public key file (authorized_keys format) whose keys may
    /// log in as root (repeatable). Passwords are never accepted.
    #[arg(long = "ssh-key", global = true, value_name = "FILE")]
    ssh_keys: Vec<PathBuf>,
    /// NTP server (host name or IPv6 address) replacing the board's list (repeatable).
    #[arg(long = "ntp", global = true, value_name = "SERVER")]
    ntp: Vec<String>,
    /// WiFi network to join (needs --wifi-psk-file; boards with WiFi only).
    #[arg(long, global = true, value_name = "SSID")]
    wifi_ssid: Option<String>,
    /// File holding the WiFi passphrase on its first line.
    #[arg(long, global = true, value_name = "FILE")]
    wifi_psk_file: Option<PathBuf>,
    /// WiFi regulatory country, two letters (e.g. DE).
    #[arg(long, global = true, value_name = "CC")]
    wifi_country: Option<String>,
    /// PEM file of the CA certificates the image trusts update bundles from
    /// (overrides the board's `[update] keyring`).
    #[arg(long, global = true, value_name = "FILE")]
    keyring: Option<PathBuf>,
    /// The release version images, bundles and releases carry (overrides
    /// the board's `[update] version`; default: the locked archive's date).
    #[arg(long, global = true, value_name = "VERSION")]
    image_version: Option<String>,
    /// The URL of the update channel file (`channel.json`) devices check
    /// (overrides the board's `[update] url`).
    #[arg(long, global = true, value_name = "URL")]
    update_url: Option<String>,
    /// Only print warnings and errors; no progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Build the board's image (the default command).
    Build {
        /// Output directory (default: out/<board> in the workspace).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Also write <name>.img.gz.
        #[arg(long)]
        gzip: bool,
        /// xz compression level, 0 (fastest) to 9 (smallest).
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
        xz_level: u32,
        /// Also write the root filesystem as a tar archive to this path.
        #[arg(long, value_name = "FILE")]
        rootfs_tar: Option<PathBuf>,
    },
    /// Show an image's partitions, or list/print files on one of them.
    Inspect {
        /// The .img file.
        image: PathBuf,
        /// Partition number (1 boot, 2 root A, 3 root B, 4 data).
        #[arg(long, short)]
        partition: Option<usize>,
        /// List this directory of the partition.
        #[arg(long, value_name = "PATH", conflicts_with = "cat")]
        ls: Option<String>,
        /// Print this file of the partition.
        #[arg(long, value_name = "PATH")]
        cat: Option<String>,
    },
    /// List the boards, one line each.
    Boards,
    /// Check host prerequisites and print the command that installs what is missing.
    Doctor,
    /// Build the image, then write a signed RAUC update bundle of its root
    /// filesystem (`rauc install` on the device).
    Bundle {
        /// Private key (PEM, ECDSA P-256 or RSA) that signs the bundle.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Its certificate (PEM), issued by a CA in the image's keyring;
        /// further certificates in the file are intermediate CAs.
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// Directory for the bundle (default: out/<board>-bundle in the workspace).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Directory of the image built on the way (default: out/<board>).
        #[arg(long, value_name = "DIR")]
        image_out: Option<PathBuf>,
    },
    /// Build the image and bundle, then write a release directory any web
    /// server can host: the image for people (.img.xz, .sha256, .bmap,
    /// Raspberry Pi Imager's os_list.json), the signed bundle and
    /// channel.json for devices.
    Publish {
        /// Private key (PEM) that signs the bundle.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Its certificate (PEM), issued by a CA in the image's keyring.
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// The release directory (replaced as one set).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The URL the directory is served under (default: the directory
        /// of the board's `[update] url`); needed for os_list.json.
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
        /// Devices running an older version must not install this release.
        #[arg(long, value_name = "VERSION")]
        min_version: Option<String>,
        /// Directory of the image built on the way (default: out/<board>).
        #[arg(long, value_name = "DIR")]
        image_out: Option<PathBuf>,
        /// xz compression level of the published image, 0 to 9.
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
        xz_level: u32,
    },
    /// Make a development CA and a bundle-signing key and certificate in DIR
    /// (for trying updates; use your own PKI for devices in the field).
    Keygen {
        /// Directory to create them in (never inside the repository).
        dir: PathBuf,
    },
    /// Resolve the board's packages and write boards/<board>.lock.
    Lock {
        /// Re-resolve against the mirror's current archive even if the lock is fresh.
        #[arg(long)]
        update: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if cli.quiet { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BUILDER_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(format!("{level},backhand=warn"))
            }),
        )
        .with_target(false)
        .without_time()
        .with_writer(std::io::stderr)
        .init();
    // An interrupted build removes its partial outputs.
    if let Err(error) = builder::output_dir::remove_pending_on_signals() {
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The device-setting flags, with the files they name read.
fn device_overrides(cli: &Cli) -> Result<builder::device::Overrides> {
    let read = |flag: &str, path: &PathBuf| -> Result<(String, String)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{flag} {}: cannot read the file", path.display()))?;
        Ok((path.display().to_string(), text))
    };
    Ok(builder::device::Overrides {
        hostname: cli.hostname.clone(),
        ntp: cli.ntp.clone(),
        ssh_key_files: cli
            .ssh_keys
            .iter()
            .map(|path| read("--ssh-key", path))
            .collect::<Result<_>>()?,
        wifi_ssid: cli.wifi_ssid.clone(),
        wifi_psk_file: cli
            .wifi_psk_file
            .as_ref()
            .map(|path| read("--wifi-psk-file", path))
            .transpose()?,
        wifi_country: cli.wifi_country.clone(),
    })
}

fn run(cli: Cli) -> Result<()> {
    let project = match &cli.project {
        Some(dir) => Project::new(dir),
        None => Project::from_workspace(),
    };
    let mut options = Options::for_board(&Project::from_workspace(), &cli.board);
    options.mirror = cli.mirror.clone();
    options.quiet = cli.quiet;
    options.extra_recipes = cli.recipes.clone();
    options.device = device_overrides(&cli)?;
    options.keyring = cli.keyring.clone();
    options.version = cli
        .image_version
        .clone()
        .map(builder::values::Version::try_from)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--image-version: {e}"))?;
    options.update_url = cli.update_url.clone();
    if let Some(dir) = &cli.cache_dir {
        // Absolute: the cross build runs cargo and C tools in the workspace,
        // where a path relative to here would point elsewhere.
        options.cache_dir =
            std::path::absolute(dir).with_context(|| format!("--cache-dir {}", dir.display()))?;
    }
    let command = cli.command.unwrap_or(Command::Build {
        out: None,
        gzip: false,
        xz_level: 6,
        rootfs_tar: None,
    });
    match command {
        Command::Inspect {
            image,
            partition,
            ls,
            cat,
        } => inspect(&image, partition, ls, cat),
        Command::Boards => boards(&project),
        Command::Doctor => doctor(&project, &options.board),
        Command::Lock { update } => lock(Pipeline::new(project, &options)?, update),
        Command::Keygen { dir } => keygen(&dir),
        Command::Bundle {
            key,
            cert,
            out,
            image_out,
        } => {
            let workspace_out = Project::from_workspace().root.join("out");
            let out = out.unwrap_or_else(|| workspace_out.join(format!("{}-bundle", cli.board)));
            let image_out = image_out.unwrap_or_else(|| workspace_out.join(&cli.board));
            bundle(
                Pipeline::new(project, &options)?,
                &key,
                &cert,
                &out,
                &image_out,
            )
        }
        Command::Publish {
            key,
            cert,
            out,
            base_url,
            min_version,
            image_out,
            xz_level,
        } => {
            let image_out = image_out
                .unwrap_or_else(|| Project::from_workspace().root.join("out").join(&cli.board));
            let min_version = min_version
                .map(builder::values::Version::try_from)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--min-version: {e}"))?;
            publish(
                Pipeline::new(project, &options)?,
                (&key, &cert),
                &builder::pipeline::PublishOptions {
                    out,
                    base_url,
                    min_version,
                },
                &image_out,
                xz_level,
            )
        }
        Command::Build {
            out,
            gzip,
            xz_level,
            rootfs_tar,
        } => {
            let out =
                out.unwrap_or_else(|| Project::from_workspace().root.join("out").join(&cli.board));
            let outputs = builder::image::OutputOptions { gzip, xz_level };
            build(
                Pipeline::new(project, &options)?,
                &out,
                &outputs,
                rootfs_tar.as_deref(),
            )
        }
    }
}

fn inspect(
    image: &Path,
    partition: Option<usize>,
    ls: Option<String>,
    cat: Option<String>,
) -> Result<()> {
    match (partition, ls, cat) {
        (None, None, None) => {
            let file = std::fs::File::open(image)
                .with_context(|| format!("opening {}", image.display()))?;
            print!("{}", builder::image::inspect::table(&file)?);
        }
        (Some(number), Some(dir), None) => {
            for line in builder::image::inspect::list(image, number, &dir)? {
                println!("{line}");
            }
        }
        (Some(number), None, Some(path)) => {
            let bytes = builder::image::inspect::read(image, number, &path)?;
            std::io::Write::write_all(&mut std::io::stdout(), &bytes)?;
        }
        _ => anyhow::bail!("use --partition N with --ls PATH or --cat PATH, or neither"),
    }
    Ok(())
}

fn boards(project: &Project) -> Result<()> {
    for name in project.board_names() {
        let board = project.board(&name)?;
        println!("{name:<12} {}", board.description);
    }
    Ok(())
}

fn doctor(project: &Project, board: &str) -> Result<()> {
    let board = project.board(board)?;
    let checks = builder::doctor::cross_checks(board.architecture.rust_triple());
    for check in &checks {
        let mark = if check.ok { "ok     " } else { "MISSING" };
        println!("{mark} {:<12} {}", check.what, check.why);
    }
    match builder::doctor::fix_commands(&checks) {
        None => {
            println!("This host can build {}.", board.name);
            Ok(())
        }
        Some(fix) => anyhow::bail!("missing prerequisites; install them with:\n  {fix}"),
    }
}

fn keygen(dir: &Path) -> Result<()> {
    let keys = builder::bundle::signing::keygen(dir, "vinyl", std::time::SystemTime::now())?;
    println!("development keys in {}:", dir.display());
    println!(
        "  {:<40} the CA: the images' keyring (--keyring)",
        keys.ca_cert.display()
    );
    println!(
        "  {:<40} the CA's key: keep it offline",
        keys.ca_key.display()
    );
    println!(
        "  {:<40} signs bundles (--cert)",
        keys.signing_cert.display()
    );
    println!("  {:<40} its key (--key)", keys.signing_key.display());
    Ok(())
}

fn bundle(pipeline: Pipeline, key: &Path, cert: &Path, out: &Path, image_out: &Path) -> Result<()> {
    let started = std::time::Instant::now();
    // Checked before the long stages: the key, and that devices trust it.
    let signer = builder::bundle::signing::Signer::load(key, cert, std::time::SystemTime::now())?;
    let keyring = pipeline.keyring()?;
    signer.check_trusted(&keyring.certificates, &keyring.path)?;
    let (rootfs, product) = pipeline.build(image_out, &Default::default(), None)?;
    let Product::SdImage(built) = product else {
        anyhow::bail!(
            "board {} builds a root filesystem archive, not an SD image with A/B slots; it has no updates",
            pipeline.board.name
        );
    };
    let written = pipeline.bundle(&built, &rootfs.digest, &signer, out, true)?;
    println!(
        "{}: version {}, build {}",
        written.manifest.compatible, written.manifest.version, written.manifest.build
    );
    println!(
        "  {:<50} {:>8.1} MB",
        written.path.display(),
        written.size as f64 / 1e6
    );
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn publish(
    pipeline: Pipeline,
    (key, cert): (&Path, &Path),
    options: &builder::pipeline::PublishOptions,
    image_out: &Path,
    xz_level: u32,
) -> Result<()> {
    let started = std::time::Instant::now();
    // Checked before the long stages: the key, that devices trust it, the
    // URL and the release directory.
    let signer = builder::bundle::signing::Signer::load(key, cert, std::time::SystemTime::now())?;
    let keyring = pipeline.keyring()?;
    signer.check_trusted(&keyring.certificates, &keyring.path)?;
    builder::release::base_url(
        options.base_url.as_deref(),
        pipeline.board.update.url.as_deref(),
    )?;
    builder::output_dir::check(&options.out)?;
    if let Some(version) = &pipeline.board.update.version {
        // Else the version is the lock's date, checked once it is read.
        builder::pipeline::check_min_version(version.as_str(), options)?;
    }
    let outputs = builder::image::OutputOptions {
        gzip: false,
        xz_level,
    };
    let (rootfs, product) = pipeline.build(image_out, &outputs, None)?;
    let Product::SdImage(built) = product else {
        anyhow::bail!(
            "board {} builds a root filesystem archive, not an SD image; there is nothing to publish",
            pipeline.board.name
        );
    };
    let release = pipeline.publish(&built, &rootfs.digest, &signer, options)?;
    println!(
        "{}: version {}, build {}",
        release.channel.compatible, release.channel.version, release.channel.build
    );
    for name in &release.files {
        let size = std::fs::metadata(release.dir.join(name))
            .map(|m| m.len())
            .unwrap_or(0);
        println!(
            "  {:<50} {:>8.1} MB",
            release.dir.join(name).display(),
            size as f64 / 1e6
        );
    }
    if !release.files.iter().any(|f| f == builder::release::OS_LIST) {
        println!(
            "  (no {}: Raspberry Pi Imager needs absolute URLs; pass --base-url or set [update] url)",
            builder::release::OS_LIST
        );
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn lock(pipeline: Pipeline, update: bool) -> Result<()> {
    let (lock, changes) = pipeline.lock(update)?;
    let path = pipeline.lock_path();
    if changes.is_empty() {
        println!(
            "{} is up to date ({} packages)",
            path.display(),
            lock.packages.len()
        );
    } else {
        println!("{} ({} packages):", path.display(), lock.packages.len());
        for line in changes {
            println!("{line}");
        }
    }
    Ok(())
}

fn build(
    pipeline: Pipeline,
    out: &Path,
    outputs: &builder::image::OutputOptions,
    rootfs_tar: Option<&Path>,
) -> Result<()> {
    let started = std::time::Instant::now();
    let (rootfs, product) = pipeline.build(out, outputs, rootfs_tar)?;
    println!(
        "{}: {} packages, {} files, {:.1} MB, tree {}",
        pipeline.board.name,
        rootfs.packages,
        rootfs.files,
        rootfs.bytes as f64 / 1e6,
        rootfs.digest
    );
    match product {
        Product::RootfsTar(path) => println!("  {}", path.display()),
        Product::SdImage(built) => {
            if built.up_to_date {
                println!("  {} is up to date", out.display());
            }
            for file in &built.files {
                let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
                println!("  {:<50} {:>8.1} MB", file.display(), size as f64 / 1e6);
            }
        }
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
