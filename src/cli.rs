//! The command line: one binary, thin subcommands over the library.

use std::{io::Write, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{Config, config::ConfigError, db, schema, telemetry};

/// GraphQL backend-for-frontend for release rollouts and organization onboarding.
#[derive(Debug, Parser)]
#[command(name = "temporal-bff", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the GraphQL server.
    Serve,
    /// Run the reference Temporal worker (release and bootstrap workflows).
    #[cfg(feature = "worker")]
    Worker,
    /// Apply the database migrations and exit.
    Migrate,
    /// Seed demo data: a dev admin (admin@example.com / admin123), releases, organizations.
    #[cfg(feature = "demo")]
    Demo {
        /// Also the releases read in part: a 10,211-node rollout through the reference worker
        /// and a 100,101-node release written into the event store (about 15 s).
        #[arg(long)]
        large: bool,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Write the JSON Schema of every contract type (what other teams' workers must produce and
    /// accept) into a directory; `contracts/` in the repository must equal it.
    Contracts {
        /// Where to write `{Type}.json`.
        #[arg(default_value = "contracts")]
        dir: std::path::PathBuf,
    },
    /// Manage login users.
    User {
        /// What to do.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Run everything locally: starts Postgres and a Temporal dev server when DATABASE_URL /
    /// TEMPORAL_ADDRESS are unset, migrates, and serves.
    #[cfg(feature = "dev")]
    Dev {
        /// Seed the releases of `demo --large` too.
        #[arg(long)]
        large: bool,
    },
}

/// `user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a login user; the password is read from standard input, never from an argument.
    Create(CreateUserArgs),
}

/// Arguments of `user create`.
#[derive(Debug, clap::Args)]
pub struct CreateUserArgs {
    /// E-mail address (unique, case-insensitively).
    #[arg(long)]
    pub email: String,
    /// Read the password from standard input (required: passwords never go in arguments).
    #[arg(long, required = true)]
    pub password_stdin: bool,
    /// The user's organization (UUID).
    #[arg(long)]
    pub org_id: Option<uuid::Uuid>,
    /// Role name.
    #[arg(long)]
    pub role: Option<String>,
    /// A permission to grant; repeat for several.
    #[arg(long = "permission")]
    pub permissions: Vec<String>,
    /// Succeed, changing nothing, when a user with this e-mail exists already: for a
    /// first-admin step that runs on every deploy (Docker Compose, a Kubernetes Job).
    #[arg(long)]
    pub if_absent: bool,
}

/// Runs `cli` to completion and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Schema => print_schema(),
        Command::Contracts { dir } => write_contracts(&dir),
        Command::Serve => with_runtime(|| async {
            let config = load_config()?;
            telemetry::init(&config.log_level, config.log_format);
            crate::serve(config).await.map_err(|e| failure(&e))
        }),
        #[cfg(feature = "worker")]
        Command::Worker => with_runtime(|| async {
            let config = load_config()?;
            let worker = crate::worker::WorkerConfig::from_env().map_err(|e| config_failure(&e))?;
            telemetry::init(&config.log_level, config.log_format);
            let db = db::connect(&config.db)
                .await
                .map_err(|e| failure(&format!("cannot connect to Postgres: {e}")))?;
            let local = tokio::task::LocalSet::new();
            local
                .run_until(crate::worker::run(
                    &config,
                    worker,
                    db,
                    crate::shutdown_signal(),
                ))
                .await
                .map_err(|e| failure(&e))
        }),
        #[cfg(feature = "demo")]
        Command::Demo { large } => with_runtime(|| async {
            let config = load_config()?;
            telemetry::init(&config.log_level, config.log_format);
            let db = db::connect(&config.db)
                .await
                .map_err(|e| failure(&format!("cannot connect to Postgres: {e}")))?;
            crate::worker::demo::seed(&config, &db)
                .await
                .map_err(|e| failure(&e))?;
            if large {
                crate::worker::demo::seed_large(&config, &db)
                    .await
                    .map_err(|e| failure(&e))?;
            }
            Ok(())
        }),
        Command::Migrate => with_runtime(|| async {
            let db = Config::db_from_env().map_err(|e| config_failure(&e))?;
            telemetry::init("info", crate::config::LogFormat::Json);
            db::migrate_session(&db).await.map_err(|e| failure(&e))?;
            tracing::info!("migrations applied");
            Ok(())
        }),
        Command::User {
            command: UserCommand::Create(args),
        } => with_runtime(|| create_user(args)),
        #[cfg(feature = "dev")]
        Command::Dev { large } => with_runtime(|| async {
            crate::devstack::dev::run(large)
                .await
                .map_err(|e| failure(&e))
        }),
    }
}

async fn create_user(args: CreateUserArgs) -> Result<(), ExitCode> {
    use crate::auth::{password::Hasher, users};
    let db = Config::db_from_env().map_err(|e| config_failure(&e))?;
    let email = crate::types::Email::parse(&args.email)
        .map_err(|why| failure(&format!("--email: {why}")))?;
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .map_err(|e| failure(&format!("cannot read the password from stdin: {e}")))?;
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    let pool = db::connect(&db)
        .await
        .map_err(|e| failure(&format!("cannot connect to Postgres: {e}")))?;
    let user = users::create(
        &pool,
        &Hasher::new(),
        users::NewUser {
            email,
            password: password.into(),
            org_id: args.org_id,
            role: args.role,
            permissions: args.permissions,
        },
    )
    .await;
    let mut out = std::io::stdout().lock();
    let line = match user {
        Ok(user) => format!("created user {} <{}>", user.id, user.email),
        Err(users::CreateUserError::Duplicate(email)) if args.if_absent => {
            format!("user <{email}> exists already; left as it is")
        }
        Err(error) => return Err(failure(&error)),
    };
    writeln!(out, "{line}").map_err(|_| ExitCode::FAILURE)
}

fn print_schema() -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(schema::sdl().as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn write_contracts(dir: &std::path::Path) -> ExitCode {
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        crate::contracts::schemas()
            .iter()
            .try_for_each(|(name, schema)| {
                std::fs::write(
                    dir.join(format!("{name}.json")),
                    crate::contracts::schema_file(schema),
                )
            })
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => failure(&format!("cannot write {}: {error}", dir.display())),
    }
}

/// Exit code for a bad configuration, distinct from a runtime failure.
const EXIT_CONFIG: u8 = 2;

fn load_config() -> Result<Config, ExitCode> {
    Config::from_env().map_err(|e| config_failure(&e))
}

fn config_failure(error: &ConfigError) -> ExitCode {
    eprintln!("temporal-bff: {error}");
    ExitCode::from(EXIT_CONFIG)
}

fn failure(error: &dyn std::fmt::Display) -> ExitCode {
    // Logging may not be set up yet (or may go to a file): stderr always reaches the operator.
    eprintln!("temporal-bff: {error}");
    ExitCode::FAILURE
}

/// Longest wait, after a command has finished, for the runtime's leftover tasks.
const RUNTIME_EXIT: std::time::Duration = std::time::Duration::from_millis(200);

fn with_runtime<F, Fut>(body: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), ExitCode>>,
{
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let outcome = runtime.block_on(body());
            // Everything that matters has stopped by now (`run_server` waited for it); tasks
            // still parked, such as a connection's cleanup, do not hold the exit up.
            runtime.shutdown_timeout(RUNTIME_EXIT);
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(code) => code,
            }
        }
        Err(error) => failure(&error),
    }
}
