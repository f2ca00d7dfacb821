//! skulk's integration tests, as one test binary.
//!
//! Every test binary links llama.cpp, and linking dominated the test build
//! when each file of `tests/` was a binary of its own; so the suites are
//! modules of this one binary (`[[test]] name = "integration"` in
//! `Cargo.toml`, with `autotests = false`: a new file here is a module to
//! add below, not a binary of its own). Run one suite with a name filter:
//! `cargo test --release --test integration shard::`.
//!
//! The suites share one process, and the harness runs tests on several
//! threads at once, so they share nothing by accident:
//! - no test changes the process's environment, working directory or other
//!   global state; a child process gets its own (`Command::env`);
//! - each suite has its own loopback network (127.0.N.x), ring ports
//!   (`apply_support::ring_port`) and test-host set (`hosts`);
//! - tests that start the real engine or rings, or use the test hosts, take
//!   [`serial::shared`], and
//!   the end-to-end suites, whose timing assumes a quiet machine, take
//!   [`serial::alone`] (see `serial`).
//!
//! What a test needs from the machine (test models, root for the test
//! hosts, the Python clients, `curl`) is checked through [`prereq`]: under
//! CI a missing prerequisite fails the test, elsewhere the test is skipped
//! with the reason printed.

// Shared support.
mod apply_support;
mod fake_hub;
mod hosts;
mod models;
mod prereq;
mod serial;
mod support;

// The suites.
mod api_clients;
mod apply_e2e;
mod apply_preflight;
mod arch_equivalence;
mod architectures_doc;
mod card_new;
mod cards;
mod cli;
mod dialects;
mod engine_equivalence;
mod generated;
mod gguf_models;
mod grammar;
mod hf;
mod plan_cli;
mod ring_engine;
mod run_shard_processes;
mod shard;
mod supervise_e2e;
mod transport;
