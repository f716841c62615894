//! The bundle review workflow (`docs/bundles.md`), as a library.
//!
//! A bundle change is reviewed like code: [`source`] loads a bundle from its
//! directory of YAML documents (compiled with the bundle model's own
//! loader, `portcullis_core::bundle::yaml`) or from the compiled JSON
//! `bundle build` writes; [`diff`] says what changed between two bundles in
//! the terms a reviewer approves (servers, tools, pins, identity, rules);
//! [`promote`] carries an approved `McpServer` from one environment's
//! directory to the next by editing the YAML text in place, so the result
//! is an ordinary commit.
//!
//! This crate reads and plans; it prints nothing and writes nothing but
//! what it is asked to (the caller writes a promotion's file).

pub mod diff;
pub mod promote;
pub mod source;
