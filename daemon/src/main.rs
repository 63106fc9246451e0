//! `custosd`: the Custos key custody and signing daemon.

/// With the `mimalloc` feature (off by default), custosd allocates through
/// mimalloc: 7% less CPU per signature, but about 100 MiB more resident
/// memory under load (BENCHMARKS.md, "Same-session A/B").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use custos_daemon::Mode;
use std::path::PathBuf;
use std::process::ExitCode;

/// Hardware-backed key custody and JWS signing for FAPI servers.
#[derive(Debug, Parser)]
#[command(name = "custosd", version, args_conflicts_with_subcommands = true)]
struct Args {
    /// Configuration file (TOML).
    #[arg(long, conflicts_with = "dev")]
    config: Option<PathBuf>,
    /// Run with software keys in ./custos-dev/ on ./custos-dev.sock (NOT hardware-protected).
    #[arg(long)]
    dev: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that each PKCS#11 token of a config does what its profile
    /// promises: exit 0 when it does, 1 when not, 2 when it cannot check.
    Doctor {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Only this backend.
        #[arg(long)]
        backend: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy the keyring manifest between the state directory's file and
    /// etcd ([keyring.etcd] of the config), e.g. before switching a
    /// deployment to `manifest = "etcd"`. Stop the daemons first.
    Migrate {
        /// Configuration file (TOML) with [keyring.etcd].
        #[arg(long)]
        config: PathBuf,
        /// Where to: `etcd` (from state_dir/keyring.json) or `file` (from etcd).
        #[arg(long, value_parser = ["etcd", "file"])]
        to: String,
        /// Overwrite a destination that already holds a manifest.
        #[arg(long)]
        force: bool,
    },
    /// Measure the device directly (no gRPC): the ceiling the daemon is compared with.
    Bench {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Keyset whose active key signs.
        #[arg(long)]
        keyset: String,
        /// Threads.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Seconds.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Open a session, log in, find the key and sign per operation.
        #[arg(long)]
        no_pool: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // The TSS C library logs to stderr on its own; Custos reports TPM errors
    // through its log, so keep the library quiet unless asked (set before
    // any thread starts).
    if std::env::var_os("TSS2_LOG").is_none() {
        std::env::set_var("TSS2_LOG", "all+none");
    }
    custos_daemon::init_logging();
    let args = Args::parse();
    if let Some(Command::Doctor {
        config,
        backend,
        json,
    }) = &args.command
    {
        return doctor(config, backend.as_deref(), *json);
    }
    if let Some(Command::Migrate { config, to, force }) = &args.command {
        return match custos_daemon::migrate(config, to, *force) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("custosd migrate: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Some(Command::Bench {
        config,
        keyset,
        concurrency,
        duration,
        no_pool,
        json,
    }) = args.command
    {
        return bench(&config, keyset, concurrency, duration, no_pool, json);
    }
    // PINs named `env:NAME` leave the environment before any thread starts.
    if let Some(path) = &args.config {
        if let Ok(config) = custos_daemon::Config::load(path) {
            custos_daemon::take_from_environment(&config.env_secret_names());
        }
    }
    let mode = match (args.config, args.dev) {
        (Some(path), _) => Mode::Config(path),
        (None, true) => Mode::Dev,
        (None, false) => {
            eprintln!("custosd: give --config FILE, or --dev for software keys (see --help)");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("custosd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(custos_daemon::run(mode));
    // Let device calls still running on blocking threads finish, then close
    // the sessions (the keyring itself is never finalised: runtime::finish).
    rt.shutdown_timeout(std::time::Duration::from_secs(30));
    custos_daemon::finish();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custosd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(
    config: &std::path::Path,
    keyset: String,
    concurrency: usize,
    duration: u64,
    no_pool: bool,
    json: bool,
) -> ExitCode {
    let keyring = match custos_daemon::open_keyring(config) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("custosd bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = custos_daemon::bench::Options {
        keyset,
        concurrency,
        duration: std::time::Duration::from_secs(duration),
        no_pool,
    };
    match custos_daemon::bench::run(&keyring, &opts) {
        Ok(r) if json => {
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(r) => {
            println!(
                "{:.0} ops/s  p50 {} µs  p99 {} µs  p999 {} µs  errors {}  ({} ops, {} threads{})",
                r.ops_per_sec,
                r.p50_us,
                r.p99_us,
                r.p999_us,
                r.errors,
                r.ops,
                r.concurrency,
                if no_pool { ", no pool" } else { "" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("custosd bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `custosd doctor`: 0 when every token does what its profile promises,
/// 1 when one does not, 2 when the check could not run.
fn doctor(config: &std::path::Path, backend: Option<&str>, json: bool) -> ExitCode {
    match custos_daemon::doctor::run(config, backend) {
        Ok(reports) => {
            if json {
                match serde_json::to_string_pretty(&reports) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("custosd doctor: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                print!("{}", custos_daemon::doctor::render(&reports));
            }
            if reports.iter().all(custos_daemon::doctor::BackendReport::ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("custosd doctor: {e}");
            ExitCode::from(2)
        }
    }
}
