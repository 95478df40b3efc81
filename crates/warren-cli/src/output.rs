//! Rendering: human-readable lines on stderr (colour only on a terminal and without NO_COLOR),
//! NDJSON on stdout with `--json`, and errors in both forms.

use std::io::{IsTerminal, Write};

use serde::Serialize;
use warren_api::{ErrorEnvelope, SummaryEnvelope};
use warren_domain::{AgentEvent, ErrorInfo, EventRecord, ReasonCode, ToolStatus};
use warren_engine::{RunObserver, RunSummary};

pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
    fn green(&self, t: &str) -> String {
        self.paint("32", t)
    }
    fn red(&self, t: &str) -> String {
        self.paint("31", t)
    }
    fn bold(&self, t: &str) -> String {
        self.paint("1", t)
    }
}

/// Streams events: NDJSON to stdout with `--json`, readable lines to stderr otherwise.
pub struct EventPrinter {
    json: bool,
    style: Style,
    step: u64,
}

impl EventPrinter {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            style: Style {
                on: color_enabled(),
            },
            step: 0,
        }
    }

    fn human(&mut self, rec: &EventRecord) -> Option<String> {
        let s = &self.style;
        let line = match &rec.event {
            AgentEvent::StateChanged { state, detail } => {
                let detail = detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                s.dim(&format!("· {state}{detail}"))
            }
            AgentEvent::SyncedIn {
                files,
                bytes,
                dirty,
                skipped,
            } => {
                let mut line = format!("· synced {files} files ({})", human_bytes(*bytes));
                if *dirty {
                    line.push_str(", uncommitted changes included");
                }
                if !skipped.is_empty() {
                    line.push_str(&format!("; skipped submodules: {}", skipped.join(", ")));
                }
                s.dim(&line)
            }
            AgentEvent::Resynced { updated, deleted, conflicts } => {
                let mut line = format!("· synced from the host: {updated} updated, {deleted} deleted");
                if !conflicts.is_empty() {
                    line.push_str(&format!("; kept the agent's version of {}", conflicts.join(", ")));
                }
                s.dim(&line)
            }
            AgentEvent::StepStart { .. } => {
                self.step += 1;
                s.bold(&format!("▶ step {}", self.step))
            }
            AgentEvent::Text { text } => format!("  {}", text.trim_end().replace('\n', "\n  ")),
            AgentEvent::Reasoning { text } => {
                s.dim(&format!("  (thinking) {}", one_line(text, 100)))
            }
            AgentEvent::ToolUse {
                tool,
                status,
                title,
                error,
                ..
            } => {
                let mark = match status {
                    ToolStatus::Completed => s.green("✓"),
                    ToolStatus::Error => s.red("✗"),
                    _ => "…".to_owned(),
                };
                let title = title
                    .as_deref()
                    .map(|t| one_line(t, 80))
                    .unwrap_or_default();
                let error = error
                    .as_deref()
                    .map(|e| format!(" — {}", one_line(e, 120)))
                    .unwrap_or_default();
                format!("  {mark} {tool} {title}{error}")
            }
            AgentEvent::StepFinish { reason, usage } => s.dim(&format!(
                "  step finished ({reason}) · {} tokens in, {} out",
                usage.input, usage.output
            )),
            AgentEvent::AgentError {
                name,
                message,
                status_code,
                ..
            } => {
                let status = status_code
                    .map(|c| format!(" HTTP {c}"))
                    .unwrap_or_default();
                s.red(&format!("  agent error {name}{status}: {message}"))
            }
            AgentEvent::Unknown { raw } => {
                s.dim(&format!("  (event) {}", one_line(&raw.to_string(), 120)))
            }
            AgentEvent::Gateway { message } => s.dim(&format!("· gateway: {message}")),
            AgentEvent::ModelRequest {
                source,
                endpoint,
                model,
                status,
                input_tokens,
                output_tokens,
                latency_ms,
                error,
                cost_usd,
                ..
            } => {
                let what = model.as_deref().unwrap_or(endpoint);
                let mut line = format!(
                    "· model {what} ({}): HTTP {status} in {latency_ms} ms",
                    source.as_str()
                );
                if input_tokens.is_some() || output_tokens.is_some() {
                    line.push_str(&format!(
                        ", {} tokens in, {} out",
                        input_tokens.unwrap_or(0),
                        output_tokens.unwrap_or(0)
                    ));
                }
                if let Some(cost) = cost_usd {
                    line.push_str(&format!(", ${cost:.4}"));
                }
                match error {
                    Some(error) => s.red(&format!("{line}: {}", one_line(error, 120))),
                    None if *status >= 400 => s.red(&line),
                    None => s.dim(&line),
                }
            }
            AgentEvent::Exported {
                branch,
                files_changed,
                ..
            } => s.green(&format!(
                "✔ exported {files_changed} changed files to branch {branch}"
            )),
            AgentEvent::Retrying { attempt, max_attempts, reason_code, message, delay_ms } => s.red(&format!(
                "↻ attempt {attempt}/{max_attempts} failed ({reason_code}: {}); retrying in {:.1} s",
                one_line(message, 100),
                *delay_ms as f64 / 1000.0
            )),
            AgentEvent::Queued { pool, position } => {
                s.dim(&format!("· queued for pool {pool} (position {position})"))
            }
            AgentEvent::Outcome { outcome, summary, via, .. } => {
                s.bold(&format!("◆ outcome {outcome}: {} (via {via})", one_line(summary, 160)))
            }
            AgentEvent::ApprovalRequested(r) => s.bold(&format!(
                "? awaiting approval: {} `{}` (request {}; denied in {} s unless answered: warren approve / warren deny)",
                r.permission,
                one_line(&r.title, 160),
                r.request_id,
                r.timeout_secs
            )),
            AgentEvent::ApprovalAnswered { request_id, decision, reason } => s.dim(&format!(
                "· answer for {request_id}: {}{}",
                decision.as_str(),
                reason.as_deref().map(|r| format!(" ({})", one_line(r, 120))).unwrap_or_default()
            )),
            AgentEvent::ApprovalDecided { request_id, decision, by, reason } => {
                let by = match by {
                    warren_domain::DecidedBy::User => "by the operator",
                    warren_domain::DecidedBy::Timeout => "after the timeout",
                    warren_domain::DecidedBy::RunEnded => "as the run ended",
                };
                let line = format!(
                    "{} {request_id} {by}{}",
                    match decision {
                        warren_domain::Decision::Approve => "✔ approved",
                        warren_domain::Decision::Deny => "✘ denied",
                    },
                    reason.as_deref().map(|r| format!(": {}", one_line(r, 120))).unwrap_or_default()
                );
                match decision {
                    warren_domain::Decision::Approve => s.green(&line),
                    warren_domain::Decision::Deny => s.red(&line),
                }
            }
            AgentEvent::Egress {
                decision,
                method,
                host,
                port,
                rule,
                reason,
                status,
                bytes_up,
                bytes_down,
                duration_ms,
                ..
            } => match decision {
                warren_domain::EgressDecision::Allowed => {
                    let mut line = format!(
                        "· egress allowed {method} {host}:{port} by {}: HTTP {status}, {bytes_up} bytes up, {bytes_down} down in {duration_ms} ms",
                        rule.as_deref().unwrap_or("?")
                    );
                    if let Some(reason) = reason {
                        line.push_str(&format!(" ({})", one_line(reason, 120)));
                    }
                    s.dim(&line)
                }
                warren_domain::EgressDecision::Denied => s.red(&format!(
                    "· egress denied {method} {host}:{port}: {}",
                    one_line(reason.as_deref().unwrap_or("refused"), 160)
                )),
            },
            AgentEvent::Finished { .. } => return None,
            // --- budgets (issue 12) ---
            AgentEvent::Budget { .. } => return None,
            AgentEvent::BudgetWarning { scope, budget, spent, limit } => s.red(&format!(
                "! {} budget for {} at {:.0}%: {} of {}",
                scope.as_str(),
                budget.key(),
                spent / limit * 100.0,
                budget.show(*spent),
                budget.show(*limit)
            )),
            AgentEvent::BudgetExceeded { scope, budget, spent, limit } => s.red(&format!(
                "✗ {} budget for {} spent: {} of {}; stopping the agent",
                scope.as_str(),
                budget.key(),
                budget.show(*spent),
                budget.show(*limit)
            )),
            // --- end budgets ---
        };
        Some(line)
    }
}

impl RunObserver for EventPrinter {
    fn event(&mut self, rec: &EventRecord) {
        if self.json {
            if let Ok(line) = serde_json::to_string(rec) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        } else if let Some(line) = self.human(rec) {
            eprintln!("{line}");
        }
    }

    fn progress(&mut self, message: &str) {
        if !self.json {
            eprintln!("{}", self.style.dim(&format!("· {message}")));
        }
    }
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    }
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Prints one `--json` result on stdout: a `warren-api` view, on one line. Its keys come out
/// sorted (serde_json's map orders them), as `--json` has always printed them; event lines are
/// printed as they stream, in field order.
pub fn print_json(view: &impl Serialize) -> Result<(), ErrorInfo> {
    let value = serde_json::to_value(view).map_err(|e| {
        ErrorInfo::new(
            ReasonCode::Internal,
            format!("cannot serialise the result: {e}"),
        )
    })?;
    println!("{value}");
    Ok(())
}

pub fn print_summary(summary: &RunSummary, json: bool) -> Result<(), ErrorInfo> {
    if json {
        return print_json(&SummaryEnvelope {
            summary: summary.clone(),
        });
    }
    let style = Style {
        on: color_enabled(),
    };
    let status = if summary.success {
        style.green("succeeded")
    } else {
        style.red("failed")
    };
    println!("run {} {status}", summary.name);
    match &summary.branch {
        Some(branch) => println!("  branch:   {branch} ({})", files(summary.files_changed)),
        None => println!("  branch:   none (the agent changed no files)"),
    }
    println!(
        "  tokens:   {} in, {} out{}",
        summary.usage.input,
        summary.usage.output,
        if summary.usage.cost > 0.0 {
            format!(", ${:.4}", summary.usage.cost)
        } else {
            String::new()
        }
    );
    println!(
        "  duration: {:.1} s (agent {:.1} s)",
        summary.duration_ms / 1000.0,
        summary.phases.agent_ms / 1000.0
    );
    if let Some(session) = &summary.session_id {
        println!("  session:  {session}");
    }
    if let Some(kept) = &summary.kept_workspace {
        println!(
            "  kept:     {} (its changes could not be exported)",
            kept.display()
        );
    }
    if let Some(error) = &summary.error {
        eprintln!("{}", render_error(error));
    }
    Ok(())
}

pub fn render_error(error: &ErrorInfo) -> String {
    let style = Style {
        on: color_enabled(),
    };
    let mut text = format!(
        "{} {} [{}]",
        style.red("error:"),
        error.message,
        error.reason_code
    );
    if let Some(hint) = &error.hint {
        text.push_str(&format!("\n{} {hint}", style.bold("hint:")));
    }
    text
}

/// Reports a failure: `{"error": ...}` alone on stdout with `--json`, a readable message on stderr.
pub fn print_error(error: &ErrorInfo, json: bool) {
    if json {
        let envelope = ErrorEnvelope {
            error: error.clone(),
        };
        // Strings, a bool and a code: serialising it cannot fail.
        let _ = print_json(&envelope);
    } else {
        eprintln!("{}", render_error(error));
    }
}

/// A spinner on stderr while something takes more than a moment; silent without a terminal, with
/// `--json`, or with NO_COLOR-style plain output requested.
pub struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    pub fn start(json: bool, message: &str) -> Self {
        if json || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        Self(Some(bar))
    }

    pub fn finish(self) {
        if let Some(bar) = self.0 {
            bar.finish_and_clear();
        }
    }
}

/// "1 file changed", "3 files changed".
pub fn files(n: u64) -> String {
    if n == 1 {
        "1 file changed".to_owned()
    } else {
        format!("{n} files changed")
    }
}
