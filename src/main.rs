//! `dolg` command-line interface: a thin layer over the library.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Like other Unix tools, end quietly when the reader of our output goes away (`dolg … | head`)
    // instead of panicking on a broken pipe.
    #[cfg(unix)]
    // SAFETY: `signal` with SIG_DFL installs no handler of ours, so nothing can run in signal
    // context; it is called first thing in `main`, before any thread is started that could be
    // changing signal dispositions at the same time.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::Cli::parse();
    // A server logs every request (one structured line each) unless RUST_LOG says otherwise.
    #[cfg(feature = "serve")]
    let default_filter = if matches!(args.command, cli::Command::Serve(_)) { "warn,dolg::serve::request=info" } else { "warn" };
    #[cfg(not(feature = "serve"))]
    let default_filter = "warn";
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()))
        .with_writer(std::io::stderr)
        .init();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
