//! What commands print, from the protocol's views: one renderer per result, used by the local
//! commands and by remote mode alike, so both print exactly the same lines and `--json`.

use warren_api::{
    ExportEnvelope, ExportView, ListView, SandboxEnvelope, SandboxView, StatusView, SyncEnvelope,
    SyncView,
};
use warren_domain::ErrorInfo;

use crate::output::print_json;

fn rfc3339(t: &time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `launch`, `teardown`: the sandbox and its state; `follow` adds how to watch it.
pub fn sandbox(view: &SandboxView, json: bool, follow: bool) -> Result<(), ErrorInfo> {
    if json {
        return print_json(&SandboxEnvelope {
            sandbox: view.clone(),
        });
    }
    println!("sandbox {} is {}", view.name, view.state);
    if follow {
        eprintln!("follow it with: warren logs {} -f", view.name);
    }
    Ok(())
}

/// `exec --detach`.
pub fn detached(view: &SandboxView, json: bool) -> Result<(), ErrorInfo> {
    if json {
        return print_json(&SandboxEnvelope {
            sandbox: view.clone(),
        });
    }
    println!(
        "sandbox {} is {}; follow it with: warren logs {} -f",
        view.name, view.state, view.name
    );
    Ok(())
}

pub fn list(sandboxes: &[SandboxView], all: bool, json: bool) -> Result<(), ErrorInfo> {
    if json {
        return print_json(&ListView {
            sandboxes: sandboxes.to_vec(),
            next_cursor: None,
        });
    }
    if sandboxes.is_empty() {
        eprintln!(
            "no sandboxes{}",
            if all {
                ""
            } else {
                " (use --all to include destroyed ones)"
            }
        );
        return Ok(());
    }
    println!(
        "{:<28} {:<13} {:<8} {:<21} BRANCH",
        "NAME", "STATE", "PROVIDER", "CREATED"
    );
    for r in sandboxes {
        let created = rfc3339(&r.created_at);
        println!(
            "{:<28} {:<13} {:<8} {:<21} {}",
            r.name,
            r.state,
            r.provider,
            created.get(..19).unwrap_or(&created),
            r.branch.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

/// `status`: the recorded error gets the hint that names this CLI's commands.
pub fn status(mut view: StatusView, json: bool) -> Result<(), ErrorInfo> {
    view.sandbox.error = view
        .sandbox
        .error
        .take()
        .map(|e| crate::hints::for_sandbox(e, &view.sandbox.name));
    if json {
        return print_json(&view);
    }
    let r = &view.sandbox;
    println!("name:      {}", r.name);
    println!("id:        {}", r.id);
    let note = match (&view.lease, view.supervisor_lost) {
        (Some(l), _) => format!(", busy: {}", l.operation),
        (None, true) => ", but its supervisor died: 'warren gc' records it".to_owned(),
        (None, false) => String::new(),
    };
    println!(
        "state:     {} (since {}{note})",
        r.state,
        rfc3339(&r.state_changed_at)
    );
    println!("repo:      {}", r.repo);
    println!("provider:  {}", r.provider);
    if let Some(model) = &r.model {
        println!("model:     {model}");
    }
    println!("created:   {}", rfc3339(&r.created_at));
    match &view.lease {
        Some(l) => println!(
            "lease:     {} by {} until {}",
            l.operation,
            l.holder,
            rfc3339(&l.expires_at)
        ),
        None => println!("lease:     none"),
    }
    if let Some(session) = &r.session_id {
        println!("session:   {session}");
    }
    if let Some(w) = &view.warm_server {
        println!(
            "opencode:  warm server (monitor pid {}), idle since {}, stops after {} s idle",
            w.monitor.pid, w.idle_since, w.idle_secs
        );
    }
    println!("tokens:    {} in, {} out", r.usage.input, r.usage.output);
    if let Some(a) = &view.awaiting_approval {
        println!(
            "awaiting:  approval of {} `{}` (request {}, denied after {} s); answer with: warren approve {} / warren deny {} --reason TEXT",
            a.permission, a.title, a.request_id, a.timeout_secs, r.name, r.name
        );
    }
    if let Some(budget) = &view.budget {
        for line in &budget.lines {
            let share = if line.limit > 0.0 {
                line.spent / line.limit * 100.0
            } else {
                100.0
            };
            println!(
                "budget:    {} {}: {} of {} ({share:.0}%){}",
                line.scope.as_str(),
                line.budget.key(),
                line.budget.show(line.spent),
                line.budget.show(line.limit),
                if line.exhausted() { ", spent" } else { "" }
            );
        }
    }
    let egress = &view.egress;
    if egress.allowed + egress.denied > 0 {
        println!(
            "egress:    {} allowed, {} denied ({} bytes up, {} down)",
            egress.allowed, egress.denied, egress.bytes_up, egress.bytes_down
        );
    }
    if !view.changed_files.is_empty() {
        println!("changes:   {} files", view.changed_files.len());
        for c in &view.changed_files {
            println!("           {} {}", c.kind.as_str(), c.path);
        }
    }
    if let Some(branch) = &r.branch {
        println!(
            "exported:  {branch} ({} files)",
            r.changed_files.unwrap_or(0)
        );
    }
    if let Some(error) = &r.error {
        println!("error:     {} [{}]", error.message, error.reason_code);
        if let Some(hint) = &error.hint {
            println!("hint:      {hint}");
        }
    }
    Ok(())
}

pub fn export(view: &ExportView, name: &str, json: bool) -> Result<(), ErrorInfo> {
    if let (Some(base), Some(now)) = (&view.based_on, &view.head_moved_to) {
        let short = |oid: &str| oid.chars().take(10).collect::<String>();
        eprintln!(
            "note: the export is based on {} (HEAD when the sandbox was last synced); your HEAD has moved on to {}. Run 'warren sync {}' before exporting to build on it, or rebase the branch.",
            short(base),
            short(now),
            name
        );
    }
    if json {
        return print_json(&ExportEnvelope {
            export: view.clone(),
        });
    }
    match (&view.branch, &view.patch) {
        (Some(branch), _) => println!(
            "exported {} changed files to branch {branch}",
            view.files_changed
        ),
        (None, Some(patch)) => {
            println!(
                "wrote {} changed files as a patch series to {patch}",
                view.files_changed,
            );
            let keep_cr = if view.keep_cr { " --keep-cr" } else { "" };
            eprintln!("apply it on the base commit with: git am{keep_cr} {patch}");
        }
        (None, None) => println!("nothing to export: the agent changed no files"),
    }
    Ok(())
}

pub fn sync(view: &SyncView, name: &str, json: bool) -> Result<(), ErrorInfo> {
    if json {
        return print_json(&SyncEnvelope { sync: view.clone() });
    }
    println!(
        "sent {} updated and {} deleted paths into {name}",
        view.updated, view.deleted
    );
    if !view.conflicts.is_empty() {
        println!("kept the agent's version of: {}", view.conflicts.join(", "));
    }
    Ok(())
}

/// `approve`, `deny`: the request answered and what the agent was told.
pub fn approval(view: &warren_api::ApprovalView, name: &str, json: bool) -> Result<(), ErrorInfo> {
    if json {
        return print_json(&warren_api::ApprovalEnvelope {
            approval: view.clone(),
        });
    }
    let what = format!("{} `{}`", view.request.permission, view.request.title);
    match (view.decision, view.decided_by) {
        (Some(d), Some(warren_domain::DecidedBy::User)) if d == view.answer => {
            let verb = match d {
                warren_domain::Decision::Approve => "approved",
                warren_domain::Decision::Deny => "denied",
            };
            println!("{verb} {what} in sandbox {name}");
        }
        (Some(_), by) => println!(
            "your answer came too late: {what} in sandbox {name} was already denied ({})",
            match by {
                Some(warren_domain::DecidedBy::RunEnded) => "the run ended",
                _ => "nobody answered in time",
            }
        ),
        (None, _) => println!(
            "answer recorded for {what} in sandbox {name}; the run has not applied it yet (see warren logs {name} -f)"
        ),
    }
    Ok(())
}
