//! `warren serve` and `warren token`: the CLI hosts the server, handing it the provider backends
//! and the settings loader (the server crate depends on no provider), and manages its tokens.

use std::sync::Arc;

use serde_json::json;
use warren_server::ServeOptions;

use super::store::open_stores;
use super::{CmdResult, data_dir, load_config};
use crate::cli::{GlobalArgs, ServeArgs, TokenArgs, TokenCommand};
use crate::output::print_json;
use crate::provider::AnyProvider;

pub async fn serve(global: &GlobalArgs, args: ServeArgs) -> CmdResult<i32> {
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(warren_server::TlsFiles { cert, key }),
        _ => None,
    };
    warren_server::check_bind(&args.listen, args.insecure_bind, tls.is_some())?;
    // The server's own settings are checked at start: a broken config fails now, not per request.
    load_config(None, Vec::new())?;
    let data_dir = data_dir(global)?;
    // The store is created and migrated before the first request.
    let stores = open_stores(args.store.url.as_deref(), &data_dir)?;
    let options = ServeOptions {
        listen: args.listen,
        insecure_bind: args.insecure_bind,
        tls,
        data_dir,
        store: stores.state,
        tenancy: stores.tenancy,
        max_body_bytes: args.max_body_bytes,
        max_streams_per_token: usize::try_from(args.max_streams_per_token).unwrap_or(usize::MAX),
        providers: Arc::new(AnyProvider::for_kind),
        config: Arc::new(|repo| Ok(load_config(repo, Vec::new())?.config)),
    };
    warren_server::serve(options).await?;
    Ok(0)
}

fn rfc3339(t: &time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn token(global: &GlobalArgs, args: TokenArgs) -> CmdResult<i32> {
    let store = open_stores(args.store.url.as_deref(), &data_dir(global)?)?.tenancy;
    match args.command {
        TokenCommand::Create { owner, admin } => {
            let (token, record) = warren_server::create_token(&*store, &owner, admin)?;
            if global.json {
                print_json(
                    &json!({ "token": { "id": record.id, "owner": record.owner, "admin": record.admin, "secret": token } }),
                )?;
            } else {
                println!("{token}");
                eprintln!(
                    "token {} for {}{}: shown once, keep it; revoke it with 'warren token revoke {}'",
                    record.id,
                    record.owner,
                    if record.admin { " (admin)" } else { "" },
                    record.id
                );
            }
        }
        TokenCommand::List => {
            let tokens = store.tokens()?;
            if global.json {
                let list: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        json!({
                            "id": t.id,
                            "owner": t.owner,
                            "admin": t.admin,
                            "created_at": rfc3339(&t.created_at),
                            "revoked_at": t.revoked_at.as_ref().map(rfc3339),
                        })
                    })
                    .collect();
                print_json(&json!({ "tokens": list }))?;
            } else {
                println!(
                    "{:<14} {:<20} {:<6} {:<26} REVOKED",
                    "ID", "OWNER", "ADMIN", "CREATED"
                );
                for t in &tokens {
                    println!(
                        "{:<14} {:<20} {:<6} {:<26} {}",
                        t.id,
                        t.owner,
                        if t.admin { "yes" } else { "no" },
                        rfc3339(&t.created_at),
                        t.revoked_at.as_ref().map_or("-".to_owned(), rfc3339)
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            if !store.revoke_token(&id)? {
                return Err(warren_domain::ErrorInfo::new(
                    warren_domain::ReasonCode::InvalidArgument,
                    format!("no live token has the id {id:?}"),
                )
                .with_hint("see 'warren token list'")
                .into());
            }
            println!("revoked token {id}");
        }
    }
    Ok(0)
}
