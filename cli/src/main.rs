//! `xbus`: the command-line tool for an xbus bus.
//!
//! - `xbus sub [NAME[.TOPIC]…]`: print events as they pass (any codec, shown as JSON).
//! - `xbus pub NAME [--topic T] [JSON]`: publish one event, or one per stdin line.
//! - `xbus bench`: publishers × subscribers load test against a running proxy.
//!
//! Each subcommand lives in its own module; [`error`] maps failures to exit codes.

mod bench;
mod error;
mod filter;
mod format;
mod publish;
mod sub;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;

/// Tap, feed and measure an xbus bus.
#[derive(Debug, Parser)]
#[command(
    name = "xbus",
    version,
    about,
    after_help = "Exit codes: 0 success; 1 error (bad input, client failure); 2 usage error; \
                  3 proxy unreachable (not running, or wrong --endpoint); 4 --count not reached \
                  within --timeout.\n\
                  Environment: XBUS_FRONTEND (where `pub` and `bench` publish, default \
                  tcp://127.0.0.1:5122), XBUS_BACKEND (where `sub` and `bench` subscribe, default \
                  tcp://127.0.0.1:5123)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Subscribe and print each event as one line: time, topic frame, payload as JSON.
    Sub(sub::SubArgs),
    /// Publish one event (JSON object on the command line) or one per line of stdin.
    Pub(publish::PubArgs),
    /// Measure the bus: N publishers × M subscribers through a running proxy.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("xbus: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), CliError> = runtime.block_on(async {
        match cli.command {
            Command::Sub(args) => sub::run(args).await,
            Command::Pub(args) => publish::run(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xbus: {err}");
            err.exit_code()
        }
    }
}
