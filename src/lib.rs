//! skulk: run one large language model split across several machines.
//!
//! Data flows one way (`docs/architecture.md` has the whole map and the
//! invariants):
//!
//! - files: card and inventory files are read at the edge ([`load`]) and
//!   checked ([`validate`], against the schemas of [`schema`]);
//! - validated types: [`card`] and [`inventory`] cannot be invalid, and
//!   [`backend`] parses the backend tags both name;
//!   [`cardgen`] derives cards from GGUF headers and Hugging Face
//!   repositories;
//! - pure plan: [`plan`] places the model, deterministically and without
//!   I/O, into a plan document;
//! - execution: [`exec`] carries a plan out on the hosts (SSH or local), and
//!   [`hub`], [`fetch`] and [`model_add`] put models where ranks find them;
//! - ranks: [`run_shard`] turns a plan into one rank's settings and
//!   [`rank`] runs it, with its layers in [`engine`] cut from the model by
//!   [`gguf`] ([`synth`] writes test models);
//! - ring: [`ring`] links the ranks over TCP;
//! - API: rank 0 serves [`api`].
//!
//! Around them: [`cli`] (the only module that knows clap, and the exit
//! codes), [`output`] (the one output channel), [`settings`] (environment
//! variables, paths and ports, each rule in one place).

pub mod api;
pub mod backend;
pub mod card;
pub mod cardgen;
pub mod cli;
pub mod engine;
pub mod exec;
pub mod fetch;
pub mod gguf;
pub mod hub;
pub mod inventory;
pub mod load;
pub mod model_add;
pub mod output;
pub mod plan;
pub mod rank;
pub mod ring;
pub mod run_shard;
pub mod schema;
pub mod settings;
pub mod synth;
pub mod validate;
