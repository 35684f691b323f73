//! `vinyl-update`: the device side of updates — RAUC's `custom` bootloader
//! backend for the A/B boot state (`vinyl-update backend …`, or the binary
//! invoked as `vinyl-update-backend …`), the self-updater
//! (`vinyl-update check`, run by `vinyl-update-check.timer`) and
//! `vinyl-update status`.

mod backend;
mod booted;
mod check;
mod config;
mod download;
mod installed;
mod paths;
mod policy;
mod state_dir;
mod status;
mod update_state;

use ab_state::Slot;
use clap::{Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// The name RAUC's `bootloader-custom-backend=` calls (a symbolic link to
/// this binary): its arguments are the backend's.
const BACKEND_NAME: &str = "vinyl-update-backend";

/// The A/B boot state on the device: RAUC's custom bootloader backend and status.
///
/// Files: the boot state in $VINYL_BOOT_DIR (default /boot/firmware), what
/// booted in $VINYL_BOOT_ENV (default /run/vinyl/boot.env).
#[derive(Debug, Parser)]
#[command(name = "vinyl-update", version)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// RAUC's custom bootloader backend (also: this binary as `vinyl-update-backend`).
    Backend {
        #[command(subcommand)]
        command: BackendCommand,
    },
    /// Check the update channel and install a newer release (the timer runs
    /// `check --timer` every few minutes; by hand it checks now).
    Check {
        /// As the timer: do nothing when switched off or not due yet.
        #[arg(long)]
        timer: bool,
        /// Install an older release too, or one whose min-version this
        /// device is below.
        #[arg(long)]
        force: bool,
    },
    /// What booted, the active and trial slots, each slot's state, and the
    /// self-updater's last check.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// RAUC's custom bootloader backend for the vinyl A/B boot state.
#[derive(Debug, Parser)]
#[command(name = BACKEND_NAME, version)]
struct BackendCli {
    #[command(subcommand)]
    command: BackendCommand,
}

#[derive(Debug, Subcommand)]
enum BackendCommand {
    /// Print the slot the next boot boots.
    GetPrimary,
    /// Make SLOT the next boot: a trial of 3 boots unless it is the active slot.
    SetPrimary { slot: SlotArg },
    /// Print `good` or `bad`.
    GetState { slot: SlotArg },
    /// Mark SLOT good (it becomes the active slot) or bad (it is not booted).
    SetState { slot: SlotArg, state: GoodBad },
    /// Print the running slot.
    GetCurrent,
}

/// A slot's boot name.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum SlotArg {
    A,
    B,
}

impl From<SlotArg> for Slot {
    fn from(slot: SlotArg) -> Slot {
        match slot {
            SlotArg::A => Slot::A,
            SlotArg::B => Slot::B,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GoodBad {
    Good,
    Bad,
}

impl From<BackendCommand> for backend::Command {
    fn from(command: BackendCommand) -> backend::Command {
        use backend::Command as C;
        match command {
            BackendCommand::GetPrimary => C::GetPrimary,
            BackendCommand::SetPrimary { slot } => C::SetPrimary(slot.into()),
            BackendCommand::GetState { slot } => C::GetState(slot.into()),
            BackendCommand::SetState { slot, state } => {
                C::SetState(slot.into(), matches!(state, GoodBad::Good))
            }
            BackendCommand::GetCurrent => C::GetCurrent,
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|arg0| Path::new(arg0).file_name())
        .and_then(|name| name.to_str());
    let command = if invoked_as == Some(BACKEND_NAME) {
        Top::Backend {
            command: BackendCli::parse_from(args).command,
        }
    } else {
        Cli::parse_from(args).command
    };
    let paths = paths::Paths::from_env();
    let result = match command {
        Top::Backend { command } => backend::run(command.into(), &paths),
        Top::Check { timer, force } => {
            check::run(&paths, check::Options { timer, force }).map(Some)
        }
        Top::Status { json } => status_output(&paths, json).map(Some),
    };
    match result {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            match output.map_or(Ok(()), |text| writeln!(stdout, "{text}")) {
                Ok(()) => ExitCode::SUCCESS,
                // A reader that stopped early (`| head`) needs no message.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("vinyl-update: error: writing to stdout: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("vinyl-update: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `status`'s text or JSON.
fn status_output(paths: &paths::Paths, json: bool) -> anyhow::Result<String> {
    let booted = booted::read(&paths.boot_env).map_err(|e| format!("{e:#}"));
    let state = state_dir::read(&paths.boot_dir)?;
    // Absent until RAUC's first install.
    let installed = installed::read(&paths.rauc_status);
    let pending = booted
        .as_ref()
        .ok()
        .and_then(|b| policy::pending(b.slot, &state.state, &installed));
    let report = status::Report {
        booted,
        state,
        boot_dir: paths.boot_dir.clone(),
        installed,
        updates: status::Updates {
            running: check::running(paths).map_err(|e| format!("{e:#}")),
            config: check::config(paths).map_err(|e| format!("{e:#}")),
            last_check: update_state::read(&paths.update_state),
            pending,
        },
    };
    Ok(if json {
        format!("{:#}", status::json(&report))
    } else {
        status::text(&report).trim_end().to_string()
    })
}
