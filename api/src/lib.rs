//! pgplane: managed PostgreSQL. Layers, each importing only those below it
//! (a test in `api/tests/layers.rs` enforces it):
//!
//! - wiring: [`cli`] (with [`client`], its client of the API), [`serve`]
//! - [`http`]: routes, admission, extractors, the one problem+json mapping
//! - [`app`]: what a request does
//! - [`backend`] (local PostgreSQL, CloudNativePG), then [`auth`] and [`records`]
//! - [`model`], [`states`], [`metrics`], [`config`], [`secret`], [`files`], [`chain`]: leaves

pub mod app;
pub mod auth;
pub mod backend;
pub mod chain;
pub mod cli;
pub mod client;
pub mod config;
pub mod files;
pub mod http;
pub mod metrics;
pub mod model;
pub mod records;
pub mod secret;
pub mod serve;
pub mod states;
