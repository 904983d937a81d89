//! Test suites for the store traits, each run against every backend.

pub(super) mod orders;
