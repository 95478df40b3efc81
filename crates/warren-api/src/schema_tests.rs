#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use super::*;

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas")
}

fn file_text(schema: &serde_json::Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(schema).unwrap())
}

/// `docs/schemas/` is what the code generates: change a view and this fails until the files are
/// regenerated with `WARREN_BLESS_SCHEMAS=1 cargo test -p warren-api`.
#[test]
fn committed_schemas_match_the_types() {
    let dir = schemas_dir();
    if std::env::var_os("WARREN_BLESS_SCHEMAS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, schema) in schemas() {
            std::fs::write(dir.join(format!("{name}.json")), file_text(&schema)).unwrap();
        }
    }
    let mut stale = Vec::new();
    for (name, schema) in schemas() {
        let path = dir.join(format!("{name}.json"));
        if std::fs::read_to_string(&path).ok() != Some(file_text(&schema)) {
            stale.push(path.display().to_string());
        }
    }
    let mut unknown = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let view = name.strip_suffix(".json").unwrap_or(&name);
        if !VIEWS.iter().any(|v| v.name == view) {
            unknown.push(name);
        }
    }
    assert!(
        stale.is_empty() && unknown.is_empty(),
        "docs/schemas/ differs from the views: stale {stale:?}, no such view {unknown:?}; \
         regenerate with WARREN_BLESS_SCHEMAS=1 cargo test -p warren-api"
    );
}

#[test]
fn names_are_unique_and_every_schema_is_an_object_schema() {
    let mut names: Vec<&str> = VIEWS.iter().map(|v| v.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), VIEWS.len());
    for (name, schema) in schemas() {
        assert_eq!(schema["type"], "object", "{name}");
        assert!(jsonschema::meta::is_valid(&schema), "{name}");
    }
    assert!(schema("nope").is_none());
}
