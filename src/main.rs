//! The `mailnet` binary: parse the command line, set up logging, dispatch.

mod cli;

use clap::Parser;
use cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn init_logging(cli: &Cli) {
    // `test` and `bench` print reports; their networks' own logging (a line
    // per message) would bury them.
    let quiet = cli.quiet || matches!(cli.command, Command::Test(_) | Command::Bench(_));
    let default = if quiet {
        "warn"
    } else if cli.verbose {
        "debug"
    } else {
        // hickory logs every query at info: at thousands a second that drowns the rest.
        "info,hickory_server=warn,hickory_proto=warn,hickory_resolver=warn,hickory_net=warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour only for a person at a terminal, and never with NO_COLOR set
    // (https://no-color.org): a log redirected to a file stays plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Check(_) | Command::Inspect(_)) {
        // Rust ignores SIGPIPE, so `mailnet check … | head -1` would panic on
        // the closed pipe; these file tools end quietly instead, as Unix
        // tools do. Commands with sockets keep ignoring it: a peer that
        // hangs up must never kill a server.
        // SAFETY: restoring a signal's default action, before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    init_logging(&cli);
    // Servers derive their session caps from the limit: raise it first.
    if let Err(error) = mailnet::fdlimit::raise() {
        tracing::warn!(%error, "cannot raise the file descriptor limit");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailnet: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<std::process::ExitCode> = runtime.block_on(async {
        match &cli.command {
            Command::Up(args) => cli::up::up(args)
                .await
                .map(|_| std::process::ExitCode::SUCCESS),
            Command::Dns(args) => cli::up::dns(args)
                .await
                .map(|_| std::process::ExitCode::SUCCESS),
            Command::Check(args) => Ok(match cli::check::run(args) {
                0 => std::process::ExitCode::SUCCESS,
                _ => std::process::ExitCode::FAILURE,
            }),
            Command::Inspect(args) => {
                cli::inspect::run(args).map(|_| std::process::ExitCode::SUCCESS)
            }
            Command::Test(args) => cli::test::run(args).await.map(|passed| {
                if passed {
                    std::process::ExitCode::SUCCESS
                } else {
                    std::process::ExitCode::FAILURE
                }
            }),
            Command::Send(args) => cli::send::run(args)
                .await
                .map(|_| std::process::ExitCode::SUCCESS),
            Command::Fetch(args) => cli::fetch::run(args)
                .await
                .map(|_| std::process::ExitCode::SUCCESS),
            Command::Bench(args) => cli::bench::run(args)
                .await
                .map(|_| std::process::ExitCode::SUCCESS),
            Command::Ca(args) => cli::ca::run(args).map(|_| std::process::ExitCode::SUCCESS),
            Command::Hub(args) => cli::hub::run(args)
                .await
                .map(|_| std::process::ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            // One line for the user; the chain of causes joined, not a backtrace.
            eprintln!("mailnet: {}", cli::one_line(&error));
            std::process::ExitCode::FAILURE
        }
    }
}
