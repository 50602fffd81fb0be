//! berth's images: references, registry client, content-addressed store,
//! pulling, and the layer unpacker.
//!
//! The engine uses [`Store`] (open, resolve, holds) and [`pull_blocking`];
//! the CLI uses the rest. Nothing here prints: a pull reports [`PullEvent`]s to the
//! [`PullSink`] its caller passes (the CLI draws them as progress bars).

pub mod auth;
pub mod login;
pub mod manifest;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod settings;
pub mod store;
pub mod unpack;

pub use pull::{pull_blocking, Outcome, PullError, PullEvent, PullOptions, PullSink};
pub use reference::{Reference, ReferenceError};
pub use store::{Image, Store, StoreError};
