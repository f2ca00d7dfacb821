//! Which tests may run beside which, in the one test process.
//!
//! The harness runs tests on several threads at once. Suites never collide
//! on addresses, ports or test hosts (each has its own), but some tests
//! assume a quiet machine: the end-to-end runs of `skulk apply` (`apply_e2e`,
//! `supervise_e2e`, the README's examples) time health checks, grace periods
//! and failure detection against real ranks, and were written to run with
//! nothing else in their process. Those take [`alone`]; tests that load the
//! real engine, run rings or talk to the test hosts with short timeouts take
//! [`shared`], so they run beside each other (as they always did) but never
//! beside an end-to-end run. Quick tests (parsing, planning, files) take
//! neither.
//!
//! A test takes one guard, first, and holds it to its end. A lock poisoned by
//! a failed test is taken anyway: the guard protects no data.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static MACHINE: RwLock<()> = RwLock::new(());

/// For a test that must have the machine to itself (among the tests that
/// take a guard): waits until no other guard is held.
pub fn alone() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|e| e.into_inner())
}

/// For a test that loads the real engine, runs a ring or uses the test
/// hosts: runs beside other such tests, not beside one that runs [`alone`].
pub fn shared() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|e| e.into_inner())
}
