#![allow(clippy::unwrap_used, clippy::expect_used)]
//! warren's end-to-end tests: the real `warren` binary, real bubblewrap, the real OpenCode, and
//! the scripted model server (the one stand-in). One test binary, suites in `suite/`.

mod suite;
