//! The A/B boot state: which root slot boots, and whether one is on trial.
//!
//! It lives on the FAT boot partition in two copies, `ab-state-0.env` and
//! `ab-state-1.env`, each a U-Boot environment file ([`env`]) that the boot
//! script (`builder/src/boot/boot.cmd`) reads with `env import -c` and
//! writes with `env export -c`. The valid copy with the higher sequence
//! number wins; a write goes to the other copy with the next number, so a
//! write torn by a power cut leaves the previous state readable.
//!
//! This crate is the one typed model of that state — its keys, parsing,
//! serialising and choosing the copy that wins — shared by the builder (the
//! initial state of an image) and the tests (scenario states, reading back
//! what U-Boot wrote), and pure so that the device-side update backend can
//! use it too: callers read and write the files.

pub mod env;

use env::Env;
use std::collections::BTreeMap;
use std::fmt;

/// The two copies on the boot partition, by copy number.
pub const STATE_FILES: [&str; 2] = ["ab-state-0.env", "ab-state-1.env"];

/// The size every copy is created with and rewritten at: U-Boot only
/// overwrites the files, never allocates (FAT allocation has failed on Pis).
pub const STATE_FILE_SIZE: usize = env::STATE_FILE_SIZE;

/// The environment keys, as the boot script spells them.
pub mod keys {
    /// Sequence number, hex (as U-Boot's `setexpr` counts).
    pub const SEQ: &str = "ab_seq";
    /// The slot known to work.
    pub const ACTIVE: &str = "ab_active";
    /// The slot on trial, absent when none is.
    pub const TRIAL: &str = "ab_trial";
    /// Trial boots left, hex; U-Boot keeps it (at 0) after a rollback.
    pub const TRIES: &str = "ab_tries";
    /// Every key, in the order the boot script imports them.
    pub const ALL: [&str; 4] = [SEQ, ACTIVE, TRIAL, TRIES];
}

/// A root slot, by its boot name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    /// Partition 2.
    A,
    /// Partition 3.
    B,
}

impl Slot {
    /// The boot name (`a` or `b`): the value in the state files, in
    /// `vinyl.slot=` on the kernel command line and in RAUC's `bootname`.
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    /// The slot's MBR partition number.
    pub fn partition(self) -> u32 {
        match self {
            Slot::A => 2,
            Slot::B => 3,
        }
    }

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Slot {
    type Err = StateError;
    fn from_str(text: &str) -> Result<Slot, StateError> {
        match text {
            "a" => Ok(Slot::A),
            "b" => Ok(Slot::B),
            other => Err(StateError::BadValue {
                key: keys::ACTIVE,
                value: other.to_string(),
                expected: "a or b",
            }),
        }
    }
}

/// Why a state copy is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The file is torn, corrupted or not an environment file.
    #[error("{0}")]
    Env(String),
    /// A key the state needs is absent.
    #[error("no {0} in the boot state")]
    Missing(&'static str),
    /// A key has a value the boot script would not write.
    #[error("boot state {key}={value:?}: expected {expected}")]
    BadValue {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// One copy of the boot state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Sequence number: the valid copy with the higher one wins.
    pub seq: u32,
    /// The slot known to work.
    pub active: Slot,
    /// The slot on trial, if one is.
    pub trial: Option<Slot>,
    /// Trial boots left (`None`: never set, as in a new image).
    pub tries: Option<u32>,
}

impl State {
    /// A new image's state: slot a active, nothing on trial.
    pub fn initial(seq: u32) -> State {
        State {
            seq,
            active: Slot::A,
            trial: None,
            tries: None,
        }
    }

    /// The state from environment variables (other keys are ignored, as
    /// the boot script imports only its own).
    pub fn from_env(env: &Env) -> Result<State, StateError> {
        let get = |key: &'static str| env.0.get(key).filter(|v| !v.is_empty());
        let hex = |key: &'static str, value: &String| {
            u32::from_str_radix(value, 16).map_err(|_| StateError::BadValue {
                key,
                value: value.clone(),
                expected: "a hexadecimal number",
            })
        };
        let slot = |key: &'static str, value: &String| {
            value.parse::<Slot>().map_err(|_| StateError::BadValue {
                key,
                value: value.clone(),
                expected: "a or b",
            })
        };
        Ok(State {
            seq: hex(
                keys::SEQ,
                get(keys::SEQ).ok_or(StateError::Missing(keys::SEQ))?,
            )?,
            active: slot(
                keys::ACTIVE,
                get(keys::ACTIVE).ok_or(StateError::Missing(keys::ACTIVE))?,
            )?,
            trial: get(keys::TRIAL).map(|v| slot(keys::TRIAL, v)).transpose()?,
            tries: get(keys::TRIES).map(|v| hex(keys::TRIES, v)).transpose()?,
        })
    }

    /// The environment variables, as U-Boot's `env export` writes them
    /// (unset keys absent, numbers in lowercase hex).
    pub fn to_env(&self) -> Env {
        let mut vars = BTreeMap::from([
            (keys::SEQ.to_string(), format!("{:x}", self.seq)),
            (keys::ACTIVE.to_string(), self.active.name().to_string()),
        ]);
        if let Some(trial) = self.trial {
            vars.insert(keys::TRIAL.to_string(), trial.name().to_string());
        }
        if let Some(tries) = self.tries {
            vars.insert(keys::TRIES.to_string(), format!("{tries:x}"));
        }
        Env(vars)
    }

    /// Parses one state file, checking its CRC.
    pub fn from_bytes(bytes: &[u8]) -> Result<State, StateError> {
        State::from_env(&Env::from_bytes(bytes).map_err(StateError::Env)?)
    }

    /// The file's bytes, [`STATE_FILE_SIZE`] long.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_env()
            .to_bytes(STATE_FILE_SIZE)
            // Four short keys and their values always fit in 4 KiB.
            .expect("a boot state fits its file")
    }

    /// The slot the boot script boots with this state (before counting a
    /// try): the trial slot while tries are left, else the active one.
    pub fn next_boot(&self) -> Slot {
        match (self.trial, self.tries) {
            (Some(trial), Some(tries)) if tries > 0 => trial,
            _ => self.active,
        }
    }
}

/// The copy that wins, as the boot script chooses it: the valid copy with
/// the higher sequence number (copy 0 on a tie). `None` when neither copy
/// is valid — the boot script then boots slot a.
pub fn current(copies: [Option<&[u8]>; 2]) -> Option<(usize, State)> {
    let mut best: Option<(usize, State)> = None;
    for (copy, bytes) in copies.into_iter().enumerate() {
        let Some(Ok(state)) = bytes.map(State::from_bytes) else {
            continue;
        };
        if best.as_ref().is_none_or(|(_, b)| state.seq > b.seq) {
            best = Some((copy, state));
        }
    }
    best
}

/// The copy a write goes to: the other one, so the winner stays intact
/// until the new copy is complete.
pub fn write_target(current_copy: usize) -> usize {
    1 - current_copy.min(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(seq: u32, tries: u32) -> State {
        State {
            seq,
            active: Slot::A,
            trial: Some(Slot::B),
            tries: Some(tries),
        }
    }

    #[test]
    fn initial_state_is_what_images_carry() {
        let env = State::initial(1).to_env();
        assert_eq!(env.0.len(), 2);
        assert_eq!(env.0[keys::SEQ], "1");
        assert_eq!(env.0[keys::ACTIVE], "a");
        assert_eq!(State::initial(0).next_boot(), Slot::A);
    }

    #[test]
    fn round_trips_through_the_file() {
        for state in [State::initial(0x1f), trial(0xabc, 3), {
            // After a rollback U-Boot keeps ab_tries=0 and drops ab_trial.
            State {
                trial: None,
                tries: Some(0),
                ..State::initial(8)
            }
        }] {
            let bytes = state.to_bytes();
            assert_eq!(bytes.len(), STATE_FILE_SIZE);
            assert_eq!(State::from_bytes(&bytes).unwrap(), state);
        }
        assert_eq!(trial(0x1a, 2).to_env().0[keys::SEQ], "1a");
    }

    #[test]
    fn bad_values_are_named() {
        let mut env = trial(1, 1).to_env();
        env.0.insert(keys::TRIAL.into(), "c".into());
        let error = State::from_env(&env).unwrap_err().to_string();
        assert_eq!(error, "boot state ab_trial=\"c\": expected a or b");
        env.0.remove(keys::SEQ);
        assert_eq!(
            State::from_env(&env).unwrap_err(),
            StateError::Missing(keys::SEQ)
        );
        let mut torn = State::initial(1).to_bytes();
        torn[6] ^= 1;
        assert!(matches!(State::from_bytes(&torn), Err(StateError::Env(_))));
    }

    #[test]
    fn trial_boots_while_tries_are_left() {
        assert_eq!(trial(2, 2).next_boot(), Slot::B);
        assert_eq!(trial(2, 0).next_boot(), Slot::A);
    }

    #[test]
    fn the_newer_valid_copy_wins() {
        let (old, new) = (State::initial(4).to_bytes(), trial(5, 2).to_bytes());
        assert_eq!(current([Some(&old), Some(&new)]), Some((1, trial(5, 2))));
        assert_eq!(current([Some(&new), Some(&old)]), Some((0, trial(5, 2))));
        let mut torn = new.clone();
        torn[20] ^= 0x20;
        assert_eq!(
            current([Some(&old), Some(&torn)]),
            Some((0, State::initial(4)))
        );
        assert_eq!(current([None, Some(&torn)]), None);
        // Equal numbers: the first copy read wins, as in boot.cmd.
        assert_eq!(current([Some(&old), Some(&old)]).unwrap().0, 0);
        assert_eq!(write_target(0), 1);
        assert_eq!(write_target(1), 0);
    }
}
