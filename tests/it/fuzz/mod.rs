//! Property tests (proptest) of the oplog entry parser and the diff applier.
//!
//! - [`parser`]: `entry::header`, `parse`, `parse_op`, `parse_update` and `DocDiff::parse` never
//!   panic, on random oplog-ish documents, diffs that nearly follow the grammar, mutated captured
//!   entries and arbitrary bytes; `header` agrees with `parse`.
//! - [`diff`]: a `$v:2` diff computed by [`reference`] (mongod's diff calculator, written again
//!   here) between two random documents, applied to the first, gives the second byte for byte,
//!   also replayed over a later version of the document.
//! - [`live`]: random update sequences (operators and pipelines) run on a source server, their
//!   oplog replayed on a destination, leave identical deployments; reference diffs sent through
//!   the applier (and so its update-operator translation) to a live destination give the
//!   post-image.
//!
//! The default suite runs a few hundred cases of the pure properties and a handful of live ones,
//! from a fixed seed ([`SEED`]): the same inputs on every run and every machine, so a failure is
//! a regression, never a flaky draw. `PROPTEST_CASES=N` sets the number of cases of every
//! property and `PROPTEST_RNG_SEED=N` the seed, to explore inputs the default run never draws
//! (see `docs/testing.md` for the long runs and `docs/reliability.md` for their results).

mod arbitrary;
mod diff;
mod live;
mod parser;
mod reference;

use proptest::test_runner::{Config, FailurePersistence, RngSeed};

/// The seed of the default run.
const SEED: u64 = 0x5EED_2026;

/// `cases` cases from [`SEED`], unless `PROPTEST_CASES` and `PROPTEST_RNG_SEED` say otherwise.
/// Failures are not persisted to files: proptest prints the minimal failing input, the seed in
/// force reproduces it, and each bug found becomes a named regression test next to the code it
/// fixes.
fn config(cases: u32) -> Config {
    proptest::test_runner::contextualize_config(Config {
        cases,
        rng_seed: RngSeed::Fixed(SEED),
        failure_persistence: None::<Box<dyn FailurePersistence>>,
        ..Config::default()
    })
}
