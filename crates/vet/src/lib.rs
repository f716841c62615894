//! From a server's tool definitions to a registry entry.
//!
//! Approving a server's tools is committing an `McpServer` document that
//! pins them (issue 4, the rug-pull defence), and a definition the
//! poisoning screen flags must not be approved without a person looking
//! first. This crate holds those steps, with no I/O: [`screen`] runs the
//! screen the filter runs over every tools/list (`scan::default_policy()`
//! and `ContentPolicy::screen_tools`), [`scores`] gives every tool's score
//! by the learned detector and the n-grams behind it, [`pin_tools`] pins each tool with the
//! filter's own `pins::tool_pin` (so a pin taken here is the one the filter
//! computes), and [`document`] writes the two documents: `pin`'s (every
//! tool pinned) and `vet`'s (`status: submitted`, flagged tools left out and
//! the findings recorded as comments and an annotation).
//!
//! The definitions come from a live server (`mcp_client::fetch_tools`) or a
//! saved tools/list answer ([`tools_list`]); names for the document come
//! from [`name`].

pub mod document;
pub mod name;
mod pins;
mod screen;
pub mod tools_list;

pub use document::{Origin, PinDocument, VetEntry};
pub use pins::{PinError, Pins, pin_tools};
pub use screen::{ScreenError, ToolScore, findings_text, score_text, scores, screen};
