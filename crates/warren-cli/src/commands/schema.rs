//! `warren schema [VIEW]`: the JSON Schema of what `--json` prints, generated from the
//! protocol's types (`warren-api`); the same files are committed under `docs/schemas/`.

use warren_domain::{ErrorInfo, ReasonCode};

use crate::output::print_json;

pub fn schema(json: bool, view: Option<&str>) -> Result<i32, ErrorInfo> {
    let names = || {
        warren_api::VIEWS
            .iter()
            .map(|v| v.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(name) = view else {
        if json {
            let all: serde_json::Map<String, serde_json::Value> = warren_api::schemas()
                .into_iter()
                .map(|(name, schema)| (name.to_owned(), schema))
                .collect();
            print_json(&serde_json::json!({ "schemas": all }))?;
        } else {
            for v in warren_api::VIEWS {
                println!("{:<8} {}", v.name, v.printed_by);
            }
            eprintln!("print one with: warren schema VIEW");
        }
        return Ok(0);
    };
    let schema = warren_api::schema(name).ok_or_else(|| {
        ErrorInfo::new(ReasonCode::InvalidArgument, format!("no view {name:?}"))
            .with_hint(format!("use one of {}", names()))
    })?;
    let text = serde_json::to_string_pretty(&schema)
        .map_err(|e| ErrorInfo::new(ReasonCode::Internal, e.to_string()))?;
    println!("{text}");
    Ok(0)
}
