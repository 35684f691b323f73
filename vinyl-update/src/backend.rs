//! RAUC's `custom` bootloader backend: `get-primary`, `set-primary SLOT`,
//! `get-state SLOT`, `set-state SLOT good|bad`, `get-current`. Answers go
//! to stdout, one word; failures exit non-zero with a message on stderr.

use crate::paths::Paths;
use crate::state_dir::{self, Written};
use crate::{booted, status};
use ab_state::{DEFAULT_TRIES, STATE_FILES, Slot, State};
use anyhow::Result;

/// A backend command, as RAUC calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The slot the next boot boots.
    GetPrimary,
    /// Make the slot the next boot (a trial unless it is the active slot).
    SetPrimary(Slot),
    /// `good` or `bad`.
    GetState(Slot),
    /// Mark the slot good (`true`) or bad.
    SetState(Slot, bool),
    /// The running slot.
    GetCurrent,
}

/// Runs a command; returns what to print on stdout.
pub fn run(command: Command, paths: &Paths) -> Result<Option<String>> {
    let dir = &paths.boot_dir;
    let answer = |text: &str| Ok(Some(text.to_string()));
    match command {
        Command::GetPrimary => answer(state_dir::read(dir)?.state.primary().name()),
        Command::GetState(slot) => answer(status::good_or_bad(
            state_dir::read(dir)?.state.is_good(slot),
        )),
        Command::GetCurrent => answer(booted::read(&paths.boot_env)?.slot.name()),
        Command::SetPrimary(slot) => change(paths, |state| state.set_primary(slot, DEFAULT_TRIES)),
        Command::SetState(slot, true) => change(paths, |state| state.mark_good(slot)),
        Command::SetState(slot, false) => {
            // Unknown when boot.env is unreadable: mark_bad then keeps the
            // active slot as the fallback.
            let running = booted::read(&paths.boot_env).ok().map(|b| b.slot);
            change(paths, |state| state.mark_bad(slot, running))
        }
    }
}

/// Applies a transition; a write is logged on stderr (RAUC's journal).
fn change(paths: &Paths, f: impl FnOnce(&State) -> Option<State>) -> Result<Option<String>> {
    if let Some(Written { copy, state }) = state_dir::update(&paths.boot_dir, f)? {
        let trial = match state.trial {
            Some(slot) => format!("slot {slot} on trial ({} tries)", state.tries.unwrap_or(0)),
            None => "nothing on trial".to_string(),
        };
        eprintln!(
            "vinyl-update: boot state {:#x} written to {}: active slot {}, {trial}",
            state.seq,
            paths.boot_dir.join(STATE_FILES[copy]).display(),
            state.active,
        );
    }
    Ok(None)
}
