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

/// Ends mailnet as a reader that went away (`mailnet … | head -1`) ends any
/// Unix tool: killed by SIGPIPE (status 141 in a shell), with no panic and
/// no message.
fn die_of_sigpipe() -> ! {
    // SAFETY: restoring a signal's default action and raising it; nothing
    // runs after this.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(128 + libc::SIGPIPE)
}

/// Whether standard output is a pipe nobody reads any more.
fn stdout_reader_gone() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready == 1 && fd.revents & libc::POLLERR != 0
}

/// Broken pipes on standard output, for every subcommand, in one place.
///
/// Rust ignores SIGPIPE, and mailnet keeps it ignored: a peer that hangs up
/// must never kill a server (nor `test`'s in-process networks, nor an agent
/// mid-dialogue). So a closed standard output shows instead as `print!`'s
/// panic (`failed printing to stdout: Broken pipe`), or as an EPIPE error
/// that reaches `main`; both end the process as SIGPIPE would have.
fn quiet_on_broken_stdout() {
    let report = std::panic::take_hook();
    let broken = format!("(os error {})", libc::EPIPE);
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to std") && message.ends_with(&broken) {
            die_of_sigpipe();
        }
        report(info);
    }));
}

/// The async runtime. For `up`: `--threads` (or `MAILNET_THREADS`)
/// worker threads, else one fewer than the CPUs, since a running network
/// shares its machine with the clients it serves (graders, students'
/// servers, load generators): on 2 cores, one worker took 8,857 new
/// connections/s from smtp-source where two took 4,381, the threads and
/// the client fighting over the cores (benches/compare.sh smtp, README
/// "Performance"). Other commands: one worker per CPU.
fn runtime(cli: &Cli) -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = match &cli.command {
        Command::Up(args) => args
            .threads
            .map_or(cpus.saturating_sub(1), usize::from)
            .max(1),
        _ => cpus,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
}

/// mimalloc instead of glibc's malloc: the SMTP hot path allocates and
/// frees small buffers per command, and glibc's malloc/free were ~13% of
/// the server's time under `smtp-source -d` (issue 19).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    quiet_on_broken_stdout();
    let cli = Cli::parse();
    init_logging(&cli);
    // Servers derive their session caps from the limit: raise it first.
    if let Err(error) = mailnet::fdlimit::raise() {
        tracing::warn!(%error, "cannot raise the file descriptor limit");
    }
    let runtime = match runtime(&cli) {
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
            let broken_pipe = error.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe && stdout_reader_gone() {
                die_of_sigpipe();
            }
            // One line for the user; the chain of causes joined, not a backtrace.
            eprintln!("mailnet: {}", cli::one_line(&error));
            std::process::ExitCode::FAILURE
        }
    }
}
