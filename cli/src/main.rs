//! `xbus`: the command-line tool for an xbus bus.
//!
//! - `xbus sub [NAME[.TOPIC]…]`: print events as they pass (any codec, shown as JSON).
//! - `xbus pub NAME [--topic T] [JSON]`: publish one event, or one per stdin line.
//! - `xbus bench`: publishers × subscribers load test against a running proxy.
//! - `xbus latest [FILTER…]`, `xbus history [FILTER…]`: what the proxy recorded (its query
//!   endpoint).
//! - `xbus keygen [--out PATH_STEM]`: a CURVE key pair, as a ZeroMQ certificate.
//! - `xbus stats`, `xbus topics`, `xbus top`: the proxy's counters, topics and connections,
//!   from its HTTP face (`--http`, default `http://127.0.0.1:5180`); see [`monitor`].
//! - `xbus completions SHELL`, `xbus man`: a shell completion script, the man page.
//!
//! `sub`, `pub` and `bench` speak CURVE to a proxy that has a key with
//! `--curve-server-key` (and `--curve-key-file` for a key the proxy's access file lists); see
//! [`keys`]. Each subcommand lives in its own module; [`error`] maps failures to exit codes.

mod bench;
mod error;
mod filter;
mod format;
mod keys;
mod monitor;
mod publish;
mod query;
mod sub;

use std::process::ExitCode;

use std::io::Write;

use clap::{CommandFactory, Parser, Subcommand};

use crate::error::CliError;

/// Tap, feed and measure an xbus bus.
#[derive(Debug, Parser)]
#[command(
    name = "xbus",
    version,
    about,
    after_help = "Exit codes: 0 success; 1 error (bad input, client failure, a subscription \
                  or publish the proxy's access rules refuse); 2 usage error; 3 proxy unreachable \
                  (not running, wrong --endpoint, or refusing this client's CURVE keys or \
                  mechanism); 4 --count not reached within --timeout.\n\
                  Environment: XBUS_FRONTEND (where `pub` and `bench` publish, default \
                  tcp://127.0.0.1:5122), XBUS_BACKEND (where `sub` and `bench` subscribe, default \
                  tcp://127.0.0.1:5123), XBUS_QUERY (where `latest` and `history` ask, default \
                  tcp://127.0.0.1:5124), XBUS_CURVE_SERVER_KEY (--curve-server-key), \
                  XBUS_CURVE_KEY_FILE (--curve-key-file), XBUS_HTTP (the proxy's HTTP face for \
                  `stats`, `topics` and `top`, default http://127.0.0.1:5180), \
                  XBUS_HTTP_TOKEN_FILE (--http-token-file)."
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
    /// Print the last recorded event of every topic (the proxy must record: --data-dir).
    Latest(query::LatestArgs),
    /// Print recorded events by time or sequence range, oldest (or with --reverse newest)
    /// first.
    History(query::HistoryArgs),
    /// Make a CURVE key pair: print its secret certificate to stdout (the public key to
    /// stderr), or with --out write PATH_STEM.key_secret and PATH_STEM.key. For the proxy
    /// (xbus-proxy --curve-key-file) and for clients (--curve-key-file; the public key goes in
    /// the proxy's access file). The files are ZeroMQ certificates, as pyzmq's zmq.auth reads
    /// them.
    Keygen(keys::KeygenArgs),
    /// Print the proxy's counters (from its HTTP face, --http).
    Stats(monitor::StatsArgs),
    /// List the topics the proxy has routed, busiest first (from its HTTP face).
    Topics(monitor::TopicsArgs),
    /// A live view of the proxy: counters, rates, connections, topics; refreshed until
    /// Ctrl-C (--once: one screen).
    Top(monitor::TopArgs),
    /// Print a completion script for SHELL to stdout, e.g.
    /// `xbus completions bash > ~/.local/share/bash-completion/completions/xbus`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, e.g.
    /// `xbus man > ~/.local/share/man/man1/xbus.1`, then `man xbus`; `xbus man sub` prints
    /// xbus-sub(1), the page of one subcommand.
    Man {
        /// The subcommand whose page to print; none: xbus(1).
        #[arg(value_parser = ["sub", "pub", "bench", "latest", "history", "keygen", "stats", "topics", "top", "completions"])]
        subcommand: Option<String>,
    },
}

/// A subcommand's man page title, `xbus-NAME`.
fn page_name(subcommand: &str) -> &'static str {
    match subcommand {
        "sub" => "xbus-sub",
        "pub" => "xbus-pub",
        "bench" => "xbus-bench",
        "latest" => "xbus-latest",
        "history" => "xbus-history",
        "keygen" => "xbus-keygen",
        "stats" => "xbus-stats",
        "topics" => "xbus-topics",
        "top" => "xbus-top",
        _ => "xbus-completions",
    }
}

/// Runs what needs no runtime: `xbus completions`, `xbus man`, `xbus keygen`, and the HTTP
/// commands (`stats`, `topics`, `top`, blocking HTTP).
/// Returns whether `command` was one of them.
fn print_docs(command: &Command) -> Result<bool, CliError> {
    match command {
        Command::Keygen(args) => keys::keygen(args)?,
        Command::Stats(args) => monitor::stats(args)?,
        Command::Topics(args) => monitor::topics(args)?,
        Command::Top(args) => monitor::top(args)?,
        _ => {}
    }
    if matches!(
        command,
        Command::Keygen(_) | Command::Stats(_) | Command::Topics(_) | Command::Top(_)
    ) {
        return Ok(true);
    }
    let mut stdout = std::io::stdout().lock();
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "xbus", &mut stdout);
        }
        Command::Man { subcommand } => {
            let top = Cli::command();
            let page = match subcommand.as_deref() {
                None => top,
                Some(name) => top
                    .find_subcommand(name)
                    .cloned()
                    .ok_or_else(|| CliError::Input(format!("no subcommand {name:?}")))?
                    .name(page_name(name))
                    .version(env!("CARGO_PKG_VERSION")),
            };
            clap_mangen::Man::new(page).render(&mut stdout)?;
        }
        _ => return Ok(false),
    }
    stdout.flush()?;
    Ok(true)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match print_docs(&cli.command) {
        Ok(true) => return ExitCode::SUCCESS,
        Ok(false) => {}
        Err(err) => {
            eprintln!("xbus: {err}");
            return err.exit_code();
        }
    }
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
            Command::Latest(args) => query::latest(args).await,
            Command::History(args) => query::history(args).await,
            // Handled by `print_docs` above.
            Command::Completions { .. }
            | Command::Man { .. }
            | Command::Keygen(_)
            | Command::Stats(_)
            | Command::Topics(_)
            | Command::Top(_) => Ok(()),
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
