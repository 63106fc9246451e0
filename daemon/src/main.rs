//! `custosd`: the Custos key custody and signing daemon.

use clap::Parser;
use custos_daemon::runtime::{self, Mode};
use std::path::PathBuf;
use std::process::ExitCode;

/// Hardware-backed key custody and JWS signing for FAPI servers.
#[derive(Debug, Parser)]
#[command(name = "custosd", version)]
struct Args {
    /// Configuration file (TOML).
    #[arg(long, conflicts_with = "dev", required_unless_present = "dev")]
    config: Option<PathBuf>,
    /// Run with software keys in ./custos-dev/ on ./custos-dev.sock (NOT hardware-protected).
    #[arg(long)]
    dev: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CUSTOS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let mode = match args.config {
        Some(path) => Mode::Config(path),
        None => Mode::Dev,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("custosd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(runtime::run(mode)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custosd: {e}");
            ExitCode::FAILURE
        }
    }
}
