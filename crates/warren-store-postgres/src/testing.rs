//! A throwaway PostgreSQL server for tests (cargo feature `testing`), so this crate's suite and
//! later ones (the CLI's, a server's) run against a real PostgreSQL, not a fake.
//!
//! [`shared`] starts one server per test binary, the first time a test asks: `initdb` into a
//! temp dir, then `pg_ctl start` on a free loopback port (`listen_addresses=127.0.0.1`, its
//! socket in the temp dir, durability off for speed). Tests then take a database each with
//! [`TestServer::fresh_database`], so they run in parallel without seeing each other's rows.
//!
//! The server binaries refuse to run as root, so as root every command runs as the `postgres`
//! user (`runuser -u postgres --`), in a temp dir under `/tmp` given to that user.
//!
//! Stopping: a server a test owns ([`TestServer::start`]) is stopped when it is dropped
//! (`pg_ctl stop -m immediate`, then its pid is killed if it is still there). The shared one
//! lives in a `static`, which Rust never drops, so a small watchdog process started beside it
//! waits for this test process to end, then stops the server the same way and deletes its
//! directory. Nothing is ever stopped by name.
//!
//! Missing binaries: [`shared`] fails the test under CI (the `CI` environment variable is set)
//! and otherwise prints why it skips and returns `None`.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tempfile::TempDir;

/// The superuser the test server is created with; TCP connections must give its password.
pub const USER: &str = "warren";
/// That superuser's password.
pub const PASSWORD: &str = "warren-test-password";
/// Where Debian's `postgresql-15` package puts the server binaries; otherwise `initdb` is looked
/// up on `PATH`.
const DEBIAN_BIN: &str = "/usr/lib/postgresql/15/bin";

/// One running PostgreSQL server in a temp dir.
#[derive(Debug)]
pub struct TestServer {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    pid: u32,
    as_postgres: bool,
    /// Deleted with the server (an owned one); `None` for the shared one, whose watchdog deletes
    /// the directory.
    root: Option<TempDir>,
}

/// The server shared by every test of this binary, started on first use. `None` (after printing
/// why) when the machine has no PostgreSQL server binaries and `CI` is not set.
///
/// # Panics
/// When the binaries are missing under CI, or the server fails to start.
pub fn shared() -> Option<&'static TestServer> {
    static SERVER: OnceLock<Option<TestServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let Some(bin) = find_binaries() else {
                let why = format!(
                    "no PostgreSQL server binaries (initdb, pg_ctl, postgres) in {DEBIAN_BIN} or \
                     on PATH; install Debian's postgresql-15"
                );
                if std::env::var_os("CI").is_some() {
                    panic!("{why}: the PostgreSQL tests cannot be skipped on CI");
                }
                // Past the test harness's capture (which takes only `eprintln!`), so the skip
                // shows in a passing run; printed once, as this runs once.
                let _ = writeln!(std::io::stderr(), "skipping the PostgreSQL tests: {why}");
                return None;
            };
            let mut server = match TestServer::start_with(&bin) {
                Ok(server) => server,
                Err(err) => panic!("starting the test PostgreSQL server failed: {err}"),
            };
            // A static is never dropped: the watchdog stops the server when this process ends.
            let root = server.root.take().map(TempDir::keep);
            if let Err(err) = server.watch(root.as_deref()) {
                panic!("starting the test PostgreSQL server's watchdog failed: {err}");
            }
            Some(server)
        })
        .as_ref()
}

/// Whether [`shared`] has a server: the condition for
/// `warren_store::conformance_tests!(factory, when = warren_store_postgres::testing::available())`.
pub fn available() -> bool {
    shared().is_some()
}

impl TestServer {
    /// Starts a server of its own, stopped when the value is dropped.
    pub fn start() -> Result<TestServer, String> {
        let bin = find_binaries().ok_or("no PostgreSQL server binaries found")?;
        Self::start_with(&bin)
    }

    fn start_with(bin: &Path) -> Result<TestServer, String> {
        let as_postgres = rustix::process::geteuid().is_root();
        let root = if as_postgres {
            // The postgres user must be able to reach it, which a root-only TMPDIR may not allow.
            tempfile::Builder::new()
                .prefix("warren-pg-")
                .tempdir_in("/tmp")
        } else {
            tempfile::Builder::new().prefix("warren-pg-").tempdir()
        }
        .map_err(|e| format!("creating a temp dir: {e}"))?;
        let data = root.path().join("data");
        let sockets = root.path().join("sockets");
        std::fs::create_dir(&sockets)
            .map_err(|e| format!("creating {}: {e}", sockets.display()))?;
        let pwfile = root.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).map_err(|e| format!("writing the password file: {e}"))?;
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(root.path()))?;
        }
        let mut server = TestServer {
            bin: bin.to_path_buf(),
            data,
            port: 0,
            pid: 0,
            as_postgres,
            root: Some(root),
        };
        run(server
            .command("initdb")
            .arg("-D")
            .arg(&server.data)
            .args(["-U", USER, "-E", "UTF8", "--no-locale", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display())))?;

        // A free port can be taken by someone else before the server binds it: try a few.
        let mut last = String::new();
        for _ in 0..3 {
            server.port = free_port()?;
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=300 \
                 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                server.port,
                sockets.display()
            );
            let log = server
                .root
                .as_ref()
                .map(|r| r.path().join("server.log"))
                .unwrap_or_default();
            let started = run(server
                .command("pg_ctl")
                .arg("-D")
                .arg(&server.data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &options, "start"]));
            match started {
                Ok(()) => {
                    server.pid = server.read_pid()?;
                    return Ok(server);
                }
                Err(err) => {
                    let tail = std::fs::read_to_string(&log).unwrap_or_default();
                    last = format!("{err}\n{tail}");
                }
            }
        }
        Err(last)
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The server's process (the postmaster).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the server's process still runs (exists and has not exited; an exited server
    /// may linger as a zombie until its parent, init by then, reaps it).
    pub fn is_running(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|stat| {
                let (_, rest) = stat.rsplit_once(')')?;
                rest.split_whitespace().next().map(str::to_owned)
            })
            .is_some_and(|state| state != "Z" && state != "X")
    }

    /// The URL of `database` on this server, as [`USER`] with its password.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// Creates a new, empty database and returns its URL.
    ///
    /// # Panics
    /// If the server refuses (a test failure, not a skip).
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if let Err(err) = self.execute(&format!("CREATE DATABASE {name}")) {
            panic!("creating test database {name}: {err}");
        }
        self.url(&name)
    }

    /// Runs `sql` on the `postgres` database as the superuser, on a thread and runtime of its
    /// own, so it can be called from inside a test's runtime too.
    pub fn execute(&self, sql: &str) -> Result<(), String> {
        let (url, sql) = (self.url("postgres"), sql.to_owned());
        let job = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                let connection = tokio::spawn(connection);
                let result = client.batch_execute(&sql).await.map_err(|e| e.to_string());
                drop(client);
                let _ = connection.await;
                result
            })
        });
        job.join()
            .map_err(|_| "the SQL thread panicked".to_owned())?
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.stdin(Stdio::null());
        command
    }

    fn read_pid(&self) -> Result<u32, String> {
        let file = self.data.join("postmaster.pid");
        let raw = std::fs::read_to_string(&file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        raw.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| format!("{} names no pid", file.display()))
    }

    /// Starts the watchdog of a shared server: once this process is gone, it stops the server
    /// (`pg_ctl stop -m immediate`, then a kill by pid) and deletes `root`.
    fn watch(&self, root: Option<&Path>) -> Result<(), String> {
        let stop = self.command("pg_ctl");
        let mut argv: Vec<String> = std::iter::once(stop.get_program())
            .chain(stop.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        argv.extend(["-D".into(), self.data.display().to_string()]);
        argv.extend(["-m", "immediate", "-w", "stop"].map(String::from));
        let script = r#"
            test_pid="$1" server_pid="$2" root="$3"; shift 3
            while kill -0 "$test_pid" 2>/dev/null; do sleep 0.5; done
            "$@" >/dev/null 2>&1 || kill -KILL "$server_pid" 2>/dev/null
            if [ -n "$root" ]; then rm -rf "$root"; fi
        "#;
        Command::new("sh")
            .args(["-c", script, "warren-pg-watchdog"])
            .arg(std::process::id().to_string())
            .arg(self.pid.to_string())
            .arg(root.map(|r| r.display().to_string()).unwrap_or_default())
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so a Ctrl-C of the tests does not stop the cleanup.
            .process_group(0)
            .spawn()
            .map(drop)
            .map_err(|e| format!("spawning sh: {e}"))
    }

    fn stop(&self) {
        let stopped = run(self.command("pg_ctl").arg("-D").arg(&self.data).args([
            "-m",
            "immediate",
            "-w",
            "stop",
        ]));
        if stopped.is_err() && self.is_running() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // The shared server's directory belongs to its watchdog; an owned one's is ours.
        if self.root.is_some() && self.pid != 0 {
            self.stop();
        }
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`, if the machine has them.
fn find_binaries() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    let debian = PathBuf::from(DEBIAN_BIN);
    if has_all(&debian) {
        return Some(debian);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("initdb"))
        .find(|initdb| initdb.is_file())
        .and_then(|initdb| std::fs::canonicalize(initdb).ok())
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
        .filter(|dir| has_all(dir))
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("finding a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("running {:?}: {e}", command.get_program()))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{:?} {:?} failed ({}): {}{}",
        command.get_program(),
        command.get_args().collect::<Vec<_>>(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}
