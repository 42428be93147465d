//! dolg's integration tests, one test binary with a module per area (what each checks is in the
//! module's own doc). One binary instead of one per file: every integration-test binary links the
//! whole crate, burn included, and 31 of them spent minutes of each CI run linking. Tests that
//! must run alone (crash tests, the allocation bound, the unreadable-folder check) re-run this
//! binary as a child with `--exact <module>::<test>` (see `common::this_test`).
//!
//! Run one area with `cargo test --release --test integration dedup::`.

mod common;

mod checkpoint_errors;
mod cli_extract;
mod cli_local;
mod cli_search;
mod decode_bad_inputs;
mod dedup;
mod delg_index;
mod delg_parity;
mod durable_files;
mod eval_groups;
mod eval_rank;
mod eval_revisitop;
mod eval_spatial;
mod extract_resume;
mod filters;
mod gradcheck;
mod index_compat;
mod index_conformance;
mod index_sync;
#[cfg(unix)]
mod inputs;
mod lighterglue_reference;
mod metadata;
mod mobilenetv2_reference;
mod orientation;
mod parity;
#[cfg(feature = "postgres")]
mod postgres;
mod properties;
mod read_once;
mod rerank;
#[cfg(feature = "serve")]
mod serve;
mod spatial;
#[cfg(feature = "train")]
mod train_run;
#[cfg(feature = "train")]
mod train_step;
mod xfeat_reference;
