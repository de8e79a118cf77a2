//! The `ioc` application: configuration, telemetry and the wiring of the
//! library crates into one system. `main.rs` only parses flags and calls in.

pub mod app;
pub mod config;
pub mod proxy;
pub mod telemetry;
