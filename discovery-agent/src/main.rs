//! `alternator-discovery-agent` binary: flags, logging, signals; everything else is the library.

use std::process::ExitCode;

use alternator_discovery_agent::cli::{Cli, LogFormat, EXIT_USAGE};
use alternator_discovery_agent::transport::HttpTransport;
use alternator_discovery_agent::{run, Sockets};
use clap::error::ErrorKind;
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => match error.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                let _ = error.print();
                return ExitCode::SUCCESS;
            }
            _ => return usage_error(&error.render().to_string()),
        },
    };
    let log_format = cli.log_format;
    let log_level = cli.log_level.clone();
    let listen = cli.listen;
    let filter = match EnvFilter::try_new(&log_level) {
        Ok(filter) => filter,
        Err(error) => {
            return usage_error(&format!("error: invalid value for --log-level: {error}"))
        }
    };
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(error) => return usage_error(&format!("error: {error}")),
    };
    // Colours only for a person at a terminal, never in files or log shippers.
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match log_format {
        LogFormat::Human => subscriber.init(),
        LogFormat::Json => subscriber.json().flatten_event(true).init(),
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // Discovery is a few requests a second; two workers keep the footprint small.
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%listen, %error, "cannot listen (--listen)");
                return ExitCode::FAILURE;
            }
        };
        // A flag value found bad only when used (an unreadable CA file, say): a usage error.
        let transport = match HttpTransport::for_config(&config) {
            Ok(transport) => transport,
            Err(error) => return usage_error(&format!("error: {error}")),
        };
        let sockets = match Sockets::bind_dns(listener, &config).await {
            Ok(sockets) => sockets,
            Err(error) => {
                tracing::error!(%error, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        run(config, sockets, transport, shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// One line naming the flag, exit status 64. clap's messages can span lines ("the following
/// required arguments were not provided:" then the flag) and end with usage hints; keep the
/// message, drop the hints, join the rest.
fn usage_error(rendered: &str) -> ExitCode {
    let message: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let line = if message.is_empty() {
        "error: invalid arguments".to_owned()
    } else {
        message.join(" ")
    };
    eprintln!("{line}");
    ExitCode::from(u8::try_from(EXIT_USAGE).unwrap_or(64))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only SIGINT stops the agent");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
