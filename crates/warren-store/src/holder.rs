//! Who holds a lease, and whether that holder still exists. A lease outlives a crashed process,
//! so the store must be able to tell a busy sandbox from one whose holder is gone.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The identity a lease is taken under. Two holders are the same only if all three fields match:
/// the name is what people read, the pid and its start time are what liveness is judged by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHolder {
    pub name: String,
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks after boot); 0 when it could not be read,
    /// which turns the start-time check off for this holder.
    pub start_time: u64,
}

impl LeaseHolder {
    /// This process, as [`lease_holder_for_this_process`] names it.
    pub fn this_process() -> LeaseHolder {
        let pid = std::process::id();
        LeaseHolder {
            name: lease_holder_for_this_process(),
            pid,
            start_time: process_start_time(pid).unwrap_or(0),
        }
    }

    /// Whether this holder's process still runs (its pid, started when it was recorded).
    pub fn is_alive(&self) -> bool {
        process_alive(self.pid, self.start_time)
    }
}

/// The holder string for this process: `pid:<pid>@<hostname>`.
pub fn lease_holder_for_this_process() -> String {
    format!("pid:{}@{}", std::process::id(), hostname())
}

/// The host this process runs on, as a store records it beside a holder's pid (the `host` column
/// of leases and pool rows): another implementation of the store records the same value.
pub fn this_host() -> &'static str {
    hostname()
}

/// The hostname pids are meaningful on. Read once: it names the machine, which does not change
/// under a running process in any way that matters here.
pub(crate) fn hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|raw| raw.trim().to_owned())
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    })
}

/// What `/proc/<pid>/stat` says about a process.
struct ProcStat {
    /// Field 3: `Z` (zombie) and `X` (dead) mean the process has exited but not been reaped.
    state: char,
    /// Field 22.
    start_time: u64,
}

fn read_stat(pid: u32) -> std::io::Result<Option<ProcStat>> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(parse_stat(&raw))
}

/// Parses the fields after the command name. The name (field 2) is in parentheses and may itself
/// contain spaces and parentheses, so the split starts after the last `)`.
fn parse_stat(raw: &str) -> Option<ProcStat> {
    let (_, rest) = raw.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 was the one just taken, so field 22 is 19 further on.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// Field 22 of `/proc/<pid>/stat`, if the process exists and `/proc` is readable.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    read_stat(pid).ok().flatten().map(|stat| stat.start_time)
}

/// Whether the process a lease names on this host still runs. `start_time` 0 means "unknown"
/// and skips the pid-reuse check.
pub(crate) fn process_alive(pid: u32, start_time: u64) -> bool {
    match read_stat(pid) {
        Ok(Some(stat)) => {
            let exited = matches!(stat.state, 'Z' | 'X');
            let reused = start_time != 0 && stat.start_time != start_time;
            !exited && !reused
        }
        // Readable but unparseable: the kernel's format changed under us; trust the expiry.
        Ok(None) => true,
        Err(_) => !proc_is_usable(),
    }
}

/// Whether the process recorded as `pid` (started at `start_time`, 0 = unknown) on `host` still
/// runs. A pid from another host cannot be checked from here, so it counts as alive and only
/// whatever else the caller knows (a lease's expiry, an explicit release) can retire it.
pub(crate) fn recorded_process_alive(pid: u32, start_time: u64, host: &str) -> bool {
    host != hostname() || process_alive(pid, start_time)
}

/// Without a mounted `/proc` a missing entry proves nothing, so liveness falls back to expiry.
fn proc_is_usable() -> bool {
    std::path::Path::new("/proc/self/stat").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_command_name_with_spaces_and_parens() {
        let raw = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 \
                   1000 200 18446744073709551615";
        let stat = parse_stat(raw);
        assert_eq!(stat.as_ref().map(|s| s.state), Some('S'));
        assert_eq!(stat.map(|s| s.start_time), Some(987_654));
    }

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = LeaseHolder::this_process();
        assert!(me.start_time > 0);
        assert!(process_alive(me.pid, me.start_time));
        assert!(!process_alive(me.pid, me.start_time + 1));
        assert!(me.name.starts_with(&format!("pid:{}@", me.pid)));
    }
}
