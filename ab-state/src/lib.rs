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
//! serialising, choosing the copy that wins, and the transitions RAUC's
//! bootloader backend makes ([`State::set_primary`], [`State::mark_good`],
//! [`State::mark_bad`]: the next state, or `None` when nothing changes, so
//! nothing is written) — shared by the builder (the
//! initial state of an image) and the tests (scenario states, reading back
//! what U-Boot wrote) and the device's `vinyl-update`, and pure: callers
//! read and write the files.

pub mod env;

use env::Env;
use std::collections::BTreeMap;
use std::fmt;

/// The two copies on the boot partition, by copy number.
pub const STATE_FILES: [&str; 2] = ["ab-state-0.env", "ab-state-1.env"];

/// The size every copy is created with and rewritten at: U-Boot only
/// overwrites the files, never allocates (FAT allocation has failed on Pis).
pub const STATE_FILE_SIZE: usize = env::STATE_FILE_SIZE;

/// Trial boots a slot gets when it is made primary.
pub const DEFAULT_TRIES: u32 = 3;

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

    /// RAUC's primary slot: the one the next boot boots ([`State::next_boot`]).
    pub fn primary(&self) -> Slot {
        self.next_boot()
    }

    /// RAUC's `good`: the boot script may boot the slot — it is the active
    /// slot (where every failed trial returns), or on trial with tries left.
    /// Any other slot is `bad`.
    pub fn is_good(&self, slot: Slot) -> bool {
        slot == self.active || (self.trial == Some(slot) && self.tries.is_some_and(|t| t > 0))
    }

    /// The slot on trial, unless the entry names the active slot (which
    /// the boot script would boot anyway).
    fn trial_slot(&self) -> Option<Slot> {
        self.trial.filter(|&t| t != self.active)
    }

    /// `slot` as the active slot with nothing on trial.
    fn settled(&self, slot: Slot) -> State {
        State {
            seq: self.seq,
            active: slot,
            trial: None,
            tries: None,
        }
    }

    /// `slot` on trial with `tries` boots, the active slot unchanged.
    fn trying(&self, slot: Slot, tries: u32) -> State {
        State {
            seq: self.seq,
            active: self.active,
            trial: Some(slot),
            tries: Some(tries),
        }
    }

    /// `next` with the following sequence number, or `None` when it changes
    /// nothing: repeated calls never write.
    fn advance(&self, next: State) -> Option<State> {
        (next != *self).then(|| State {
            seq: self.seq.saturating_add(1),
            ..next
        })
    }

    /// RAUC's `set-primary` (after an install, and `rauc status
    /// mark-active`): make `slot` the next boot.
    ///
    /// - the active slot: ends any trial (`None` if there is none);
    /// - the other slot: puts it on trial with `tries` boots (at least 1),
    ///   the active slot staying the fallback (`None` if exactly that is
    ///   already recorded). It never becomes active without
    ///   [`State::mark_good`].
    pub fn set_primary(&self, slot: Slot, tries: u32) -> Option<State> {
        if slot == self.active {
            return self.trial.and_then(|_| self.advance(self.settled(slot)));
        }
        self.advance(self.trying(slot, tries.max(1)))
    }

    /// RAUC's `set-state SLOT good` (`rauc status mark-good`): the slot
    /// started successfully, so it becomes the active slot and any trial
    /// ends — the slot on trial (also in its last trial boot, when U-Boot
    /// has already counted the try down to 0), or the slot booted by the
    /// boot script's fallback because the active one would not load (for
    /// a slot neither running nor on trial, the caller's word is taken).
    /// `None` for the active slot: a trial of the other slot stays pending.
    pub fn mark_good(&self, slot: Slot) -> Option<State> {
        if slot == self.active {
            return None;
        }
        self.advance(self.settled(slot))
    }

    /// RAUC's `set-state SLOT bad` (before an install into the slot, and
    /// `rauc status mark-bad`): the boot script must not boot `slot`,
    /// unless nothing proven is left. `booted` is the running slot, if
    /// known: it reached user space, so it can take the active role.
    ///
    /// - the slot on trial: the trial ends, the active slot boots next;
    /// - the active slot, running the other: the other becomes the active
    ///   slot (an install into the active slot after a fallback boot: the
    ///   following `set-primary` then puts it on trial, the running slot as
    ///   the fallback);
    /// - the active slot, running it (or not known): the other slot goes on
    ///   trial with [`DEFAULT_TRIES`] boots and the active slot stays the
    ///   fallback, since the other slot is unproven: the device never loses
    ///   its last slot known to boot. (`None` if the other slot is already
    ///   on trial with tries left.) The active slot then still reads `good`;
    /// - any other slot: `None`, it is already `bad`.
    pub fn mark_bad(&self, slot: Slot, booted: Option<Slot>) -> Option<State> {
        if self.trial_slot() == Some(slot) {
            return self.advance(self.settled(self.active));
        }
        if slot != self.active {
            return None;
        }
        let other = slot.other();
        if booted == Some(other) {
            return self.advance(self.settled(other));
        }
        if self.is_good(other) {
            return None;
        }
        self.advance(self.trying(other, DEFAULT_TRIES))
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

    /// A state with the given fields.
    fn at(seq: u32, active: Slot, trial: Option<Slot>, tries: Option<u32>) -> State {
        State {
            seq,
            active,
            trial,
            tries,
        }
    }

    /// One boot as boot.cmd runs it: the slot it boots and the state it
    /// writes (`None` on a normal boot).
    fn boot(state: &State) -> (Slot, Option<State>) {
        match (state.trial, state.tries) {
            (Some(trial), Some(tries)) if tries > 0 => (
                trial,
                Some(at(
                    state.seq + 1,
                    state.active,
                    Some(trial),
                    Some(tries - 1),
                )),
            ),
            (Some(_), tries) => (
                state.active,
                Some(at(state.seq + 1, state.active, None, tries)),
            ),
            (None, _) => (state.active, None),
        }
    }

    #[test]
    fn primary_and_good_follow_the_boot_script() {
        let settled = State::initial(1);
        assert_eq!(settled.primary(), Slot::A);
        assert!(settled.is_good(Slot::A));
        assert!(!settled.is_good(Slot::B));
        let trying = trial(2, 2);
        assert_eq!(trying.primary(), Slot::B);
        assert!(trying.is_good(Slot::A) && trying.is_good(Slot::B));
        // The last trial boot has counted its try: b no longer boots next.
        let spent = trial(3, 0);
        assert_eq!(spent.primary(), Slot::A);
        assert!(!spent.is_good(Slot::B));
    }

    #[test]
    fn set_primary_puts_the_other_slot_on_trial() {
        let state = State::initial(4);
        assert_eq!(state.set_primary(Slot::A, DEFAULT_TRIES), None);
        let next = state.set_primary(Slot::B, DEFAULT_TRIES).unwrap();
        assert_eq!(next, at(5, Slot::A, Some(Slot::B), Some(3)));
        assert_eq!(next.set_primary(Slot::B, DEFAULT_TRIES), None);
        // Back to the active slot: the trial ends.
        assert_eq!(
            next.set_primary(Slot::A, DEFAULT_TRIES),
            Some(State::initial(6))
        );
        // A rollback's ab_tries=0 needs no write.
        let rolled_back = at(9, Slot::A, None, Some(0));
        assert_eq!(rolled_back.set_primary(Slot::A, 3), None);
        assert_eq!(
            rolled_back.set_primary(Slot::B, 0),
            Some(at(10, Slot::A, Some(Slot::B), Some(1)))
        );
    }

    #[test]
    fn rauc_install_then_trial_boot_then_mark_good() {
        // Running a. RAUC: set-state b bad, writes b, set-primary b.
        let state = State::initial(1);
        assert_eq!(state.mark_bad(Slot::B, Some(Slot::A)), None);
        let installed = state.set_primary(Slot::B, DEFAULT_TRIES).unwrap();
        assert_eq!(installed, at(2, Slot::A, Some(Slot::B), Some(3)));
        let (booted, counted) = boot(&installed);
        assert_eq!(booted, Slot::B);
        let counted = counted.unwrap();
        assert_eq!(counted, at(3, Slot::A, Some(Slot::B), Some(2)));
        // rauc-mark-good: set-state b good.
        let good = counted.mark_good(Slot::B).unwrap();
        assert_eq!(good, at(4, Slot::B, None, None));
        assert_eq!(good.mark_good(Slot::B), None);
        assert_eq!(boot(&good), (Slot::B, None));
    }

    #[test]
    fn install_during_a_pending_trial_restarts_it() {
        let pending = at(7, Slot::A, Some(Slot::B), Some(1));
        let bad = pending.mark_bad(Slot::B, Some(Slot::A)).unwrap();
        assert_eq!(bad, State::initial(8));
        assert_eq!(
            bad.set_primary(Slot::B, DEFAULT_TRIES),
            Some(at(9, Slot::A, Some(Slot::B), Some(3)))
        );
    }

    #[test]
    fn mark_good_in_the_last_trial_boot() {
        // U-Boot counted the last try (ab_tries=0) and booted b.
        let last = at(5, Slot::A, Some(Slot::B), Some(0));
        assert_eq!(last.mark_good(Slot::B), Some(at(6, Slot::B, None, None)));
        // Marking the active slot good leaves a pending trial alone.
        assert_eq!(trial(5, 2).mark_good(Slot::A), None);
    }

    #[test]
    fn mark_good_after_a_fallback_boot_promotes_the_running_slot() {
        // a would not load, the boot script fell back to b (no trial).
        let state = State::initial(3);
        assert_eq!(state.mark_good(Slot::B), Some(at(4, Slot::B, None, None)));
    }

    #[test]
    fn mark_bad_during_a_trial_rolls_back() {
        let trying = trial(4, 2);
        let rolled_back = trying.mark_bad(Slot::B, Some(Slot::B)).unwrap();
        assert_eq!(rolled_back, State::initial(5));
        assert_eq!(rolled_back.primary(), Slot::A);
        assert!(!rolled_back.is_good(Slot::B));
        assert_eq!(rolled_back.mark_bad(Slot::B, Some(Slot::B)), None);
        assert_eq!(boot(&rolled_back), (Slot::A, None));
    }

    #[test]
    fn failed_trial_rolls_back_without_a_write_from_us() {
        let mut state = State::initial(1).set_primary(Slot::B, 2).unwrap();
        let mut boots = Vec::new();
        for _ in 0..4 {
            let (slot, written) = boot(&state);
            boots.push(slot);
            if let Some(written) = written {
                state = written;
            }
        }
        assert_eq!(boots, [Slot::B, Slot::B, Slot::A, Slot::A]);
        assert_eq!(state, at(5, Slot::A, None, Some(0)));
        assert!(!state.is_good(Slot::B));
    }

    #[test]
    fn mark_bad_of_the_active_slot_keeps_a_proven_slot() {
        // Running a, a marked bad: b is unproven, so it goes on trial and a
        // stays where a failed trial returns.
        let state = State::initial(2);
        let next = state.mark_bad(Slot::A, Some(Slot::A)).unwrap();
        assert_eq!(next, at(3, Slot::A, Some(Slot::B), Some(DEFAULT_TRIES)));
        assert_eq!(next.mark_bad(Slot::A, None), None);
        assert_eq!(state.mark_bad(Slot::A, None), Some(next));
        // Running b after a fallback boot, RAUC installs into a (the active
        // slot): b takes over, then a goes on trial with b as the fallback.
        let taken_over = state.mark_bad(Slot::A, Some(Slot::B)).unwrap();
        assert_eq!(taken_over, at(3, Slot::B, None, None));
        assert_eq!(
            taken_over.set_primary(Slot::A, DEFAULT_TRIES),
            Some(at(4, Slot::B, Some(Slot::A), Some(3)))
        );
    }

    #[test]
    fn marking_the_other_slot_bad_changes_nothing() {
        assert_eq!(State::initial(1).mark_bad(Slot::B, Some(Slot::A)), None);
        assert_eq!(State::initial(1).mark_bad(Slot::B, None), None);
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
