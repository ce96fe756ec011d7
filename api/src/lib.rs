//! pgplane: managed PostgreSQL. The HTTP API ([`http`]) calls the operations
//! ([`operations`]) over a [`backend::Backend`]; [`model`] holds the pure
//! domain rules, [`config`] the settings, [`auth`] users and tokens.

pub mod audit;
pub mod auth;
pub mod backend;
pub mod cli;
pub mod config;
pub mod error;
pub mod events;
pub mod files;
pub mod http;
pub mod journal;
pub mod metrics;
pub mod model;
pub mod operations;
pub mod records;
pub mod secret;
pub mod serve;
pub mod states;
