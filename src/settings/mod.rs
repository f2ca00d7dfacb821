//! What skulk takes from the machine it runs on, each rule in one file:
//! [`env`](mod@env) the environment variables it reads (`SKULK_*`, `HF_*`, `HOME`,
//! `NO_COLOR`, ...) and how each value is read, [`paths`] where its files
//! live (the home directory and `~`, the model directory and its layout,
//! the caches, the run directories, the SSH files), and [`ports`] its
//! default ports.
//!
//! Invariant: no other module reads an environment variable, expands `~`
//! or writes one of these paths or ports as a literal; they take the values
//! resolved here (the command line resolves them once per command and hands
//! them to the command's settings).

pub mod env;
pub mod paths;
pub mod ports;
