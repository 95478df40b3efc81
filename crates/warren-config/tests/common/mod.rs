//! What the config crate's test binaries share: loading a config from a user file's text.

use warren_config::{Config, LoadOptions, load};

/// `body` as the user's config file, loaded alone; the error as its text.
pub fn loaded(body: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, body).unwrap();
    load(&LoadOptions {
        user_file: Some(path),
        repo_dir: None,
        env: vec![],
        flags: vec![],
    })
    .map(|l| l.config)
    .map_err(|e| e.to_string())
}
