#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `cargo bench -p warren-sync --bench sync`: what moving files costs on a large repository, each
//! figure next to `cp -a` of the same files measured in the same run (p50 of a few iterations).
//!
//! The repository: 10,000 committed files, about 100 MB (many small text files, some large text
//! and binary ones, nested three levels), generated under the target dir. Figures:
//! - full sync-in (`sync_in` into a fresh workspace) against `cp -a` of the work tree;
//! - a partial sync of 10 files the user changed (`sync_partial`) against the full sync;
//! - sync-out of 10 files the agent changed (`collect_changes` + `export_branch`) against the
//!   full sync.
//!
//! Environment: `WARREN_BENCH_ITERS` (iterations per figure, default 5), `WARREN_BENCH_PACKED=1`
//! (repack the repository first, as a long-lived clone would be).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use warren_sync::{ExportRequest, Limits, RepoInfo, SyncInReport, SyncOptions};

const FILES: usize = 10_000;
const LARGE_EVERY: usize = 100;

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// xorshift64*: deterministic content without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "fn", "let", "mut", "struct", "impl", "return", "match", "Some", "None", "self", "value",
    "index", "buffer", "config", "error", "result", "path", "sandbox", "warren", "agent",
];

fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
        out.push(if rng.below(8) == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

fn binary(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

fn rel_path(i: usize) -> String {
    format!(
        "d{:02}/s{:02}/t{}/f{i:05}.txt",
        i % 10,
        (i / 10) % 10,
        (i / 100) % 4
    )
}

/// 10,000 files: 1 in 100 is large (0.5 to 1.5 MB, half of them random binary), the rest are
/// 100 B to 6 KB of text. About 100 MB in all.
fn generate(repo: &Path) -> u64 {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut total = 0u64;
    for i in 0..FILES {
        let path = repo.join(rel_path(i));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let bytes = if i.is_multiple_of(LARGE_EVERY) {
            let len = 500_000 + rng.below(1_000_000) as usize;
            if (i / LARGE_EVERY).is_multiple_of(2) {
                binary(&mut rng, len)
            } else {
                text(&mut rng, len)
            }
        } else {
            let len = 100 + rng.below(6_000) as usize;
            text(&mut rng, len)
        };
        total += bytes.len() as u64;
        std::fs::write(&path, &bytes).unwrap();
    }
    total
}

struct World {
    root: PathBuf,
    repo: PathBuf,
    info: RepoInfo,
    top_level: Vec<PathBuf>,
}

impl World {
    fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sync(&self, id: &str) -> (PathBuf, PathBuf, SyncInReport, f64) {
        let ws = self.scratch(&format!("ws-{id}"));
        let baseline = self.scratch(&format!("baseline-{id}"));
        settle();
        let start = Instant::now();
        let report =
            warren_sync::sync_in(&self.info, &ws, &baseline, &SyncOptions::new(id, id)).unwrap();
        (ws, baseline, report, ms(start))
    }

    fn cleanup(&self, id: &str, ws: &Path, baseline: &Path) {
        warren_sync::release_baseline(&self.info, id).unwrap();
        std::fs::remove_dir_all(ws).unwrap();
        std::fs::remove_dir_all(baseline).unwrap();
    }
}

/// Flushes dirty pages before a measurement, so none pays for the previous one's writeback.
fn settle() {
    assert!(Command::new("sync").status().unwrap().success());
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

fn cp_a(world: &World) -> f64 {
    let dest = world.scratch("cp");
    settle();
    let start = Instant::now();
    let ok = Command::new("cp")
        .arg("-a")
        .args(&world.top_level)
        .arg(&dest)
        .status()
        .unwrap()
        .success();
    let took = ms(start);
    assert!(ok, "cp -a");
    std::fs::remove_dir_all(&dest).unwrap();
    took
}

/// Nine existing paths spread over the tree (two of them large files): eight to edit, the last
/// to delete. With one new file, ten changes.
fn nine_paths() -> Vec<String> {
    (0..9)
        .map(|k| rel_path(if k < 2 { k * 3_700 } else { 17 + k * 911 }))
        .collect()
}

/// The user edits eight files, deletes one and adds one; then only those are sent.
fn partial(world: &World, i: usize) -> f64 {
    let id = format!("partial-{i}");
    let (ws, baseline, report, _) = world.sync(&id);
    let paths = nine_paths();
    for (k, rel) in paths.iter().enumerate() {
        let path = world.repo.join(rel);
        if k == 8 {
            std::fs::remove_file(&path).unwrap();
        } else {
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend_from_slice(format!("user edit {i}\n").as_bytes());
            std::fs::write(&path, bytes).unwrap();
        }
    }
    let added = world.repo.join("d01/user-new.txt");
    std::fs::write(&added, b"new file\n").unwrap();
    settle();
    let start = Instant::now();
    let (_, done) = warren_sync::sync_partial(&world.info, &report, &ws, &baseline).unwrap();
    let took = ms(start);
    assert_eq!(
        (done.updated, done.deleted, done.conflicts.len()),
        (9, 1, 0),
        "{done:?}"
    );
    assert_eq!(done.workspace_git_skipped, None);
    std::fs::remove_file(&added).unwrap();
    let mut restore = vec!["checkout", "--"];
    restore.extend(paths.iter().map(String::as_str));
    git(&world.repo, &restore);
    world.cleanup(&id, &ws, &baseline);
    took
}

fn sync_out(world: &World, i: usize) -> f64 {
    let id = format!("out-{i}");
    let (ws, baseline, report, _) = world.sync(&id);
    for (k, rel) in nine_paths().iter().enumerate() {
        let path = ws.join(rel);
        if k == 8 {
            std::fs::remove_file(&path).unwrap();
        } else {
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend_from_slice(format!("agent edit {i}\n").as_bytes());
            std::fs::write(&path, bytes).unwrap();
        }
    }
    std::fs::write(ws.join("d00/agent-new.txt"), b"new file\n").unwrap();
    let branch = format!("warren/bench-{i}");
    settle();
    let start = Instant::now();
    let changes = warren_sync::collect_changes(&ws, &baseline, &Limits::default()).unwrap();
    let req = ExportRequest {
        branch: branch.clone(),
        agent_message: "agent".to_owned(),
        user_changes_message: "user".to_owned(),
        agent_author: ("agent".to_owned(), "agent@example.com".to_owned()),
    };
    warren_sync::export_branch(&world.info, &report, &ws, &changes, &req).unwrap();
    let took = ms(start);
    assert_eq!(changes.len(), 10);
    git(&world.repo, &["branch", "-D", &branch]);
    world.cleanup(&id, &ws, &baseline);
    took
}

fn main() {
    let iters: usize = std::env::var("WARREN_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("warren-sync-bench");
    let _ = std::fs::remove_dir_all(&root);
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).unwrap();

    let start = Instant::now();
    git(&repo, &["init", "-q", "-b", "main"]);
    let bytes = generate(&repo);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "generated"]);
    if std::env::var_os("WARREN_BENCH_PACKED").is_some_and(|v| v == "1") {
        git(&repo, &["repack", "-adq"]);
    }
    println!(
        "repository: {FILES} files, {:.1} MB, generated in {:.1} s",
        bytes as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    let info = warren_sync::inspect_repo(&repo).unwrap();
    let mut top_level: Vec<PathBuf> = std::fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != ".git"))
        .collect();
    top_level.sort();
    let world = World {
        root,
        repo,
        info,
        top_level,
    };

    // Warm the page cache and git's own caches once before measuring anything.
    cp_a(&world);
    let (ws, baseline, _, _) = world.sync("warmup");
    world.cleanup("warmup", &ws, &baseline);

    let mut cp = Vec::new();
    let mut full = Vec::new();
    for i in 0..iters {
        cp.push(cp_a(&world));
        let id = format!("full-{i}");
        let (ws, baseline, _, took) = world.sync(&id);
        full.push(took);
        world.cleanup(&id, &ws, &baseline);
    }
    let (cp, full) = (p50(cp), p50(full));
    println!("cp -a of the work tree:          {cp:8.1} ms");
    println!(
        "full sync-in:                    {full:8.1} ms  = {:.2}x cp -a (goal <= 1.5x)",
        full / cp
    );

    let part = p50((0..iters).map(|i| partial(&world, i)).collect());
    println!(
        "partial sync of 10 changed files: {part:7.1} ms  = {:.1}% of the full sync (goal <= 5%)",
        100.0 * part / full
    );

    let out = p50((0..iters).map(|i| sync_out(&world, i)).collect());
    println!(
        "sync-out of 10 changed files:    {out:8.1} ms  = {:.1}% of the full sync (goal <= 5%)",
        100.0 * out / full
    );
}
