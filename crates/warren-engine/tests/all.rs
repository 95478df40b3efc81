#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The engine's tests: the real engine (store, sync, export, gateway, supervision, reconciler)
//! over a recording fake provider whose "agent" is a scripted host process. One test binary,
//! suites in `suite/`.

mod suite;
