//! The PostgreSQL store's tests, in one binary so it starts one PostgreSQL server
//! (`warren_store_postgres::testing::shared`) for all of them; each test takes a fresh database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
