//! `pipeline`: validate, inspect and run YAML pipelines of connectors.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use framework::{
    connector::ConnectorRegistration,
    redact::RedactingWriter,
    runtime::{self, RunOptions},
    validate::{self, Diagnostic},
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

// Links every built-in connector (see build.rs) so that it registers itself.
include!(concat!(env!("OUT_DIR"), "/connectors.rs"));

mod describe;

#[derive(Parser)]
#[command(
    name = "pipeline",
    version,
    about = "Kafka Connect-style streaming pipelines: validate, inspect and run YAML pipelines of sources, transforms and sinks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checks pipeline files without any network access; prints every problem as
    /// `file:line:col: path: message`. Exit 0 when valid, 1 when not, 2 on usage errors.
    Validate {
        /// Pipeline files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Lists the registered connectors, or describes one.
    Connectors {
        #[command(subcommand)]
        command: Option<ConnectorsCommand>,
    },
    /// Runs a pipeline (all stages, or those named with --stage) until its bounded inputs
    /// end or SIGINT/SIGTERM.
    Run {
        /// Pipeline file.
        file: PathBuf,
        /// Runs only this stage (repeatable); other processes run the others.
        #[arg(long = "stage", value_name = "NAME")]
        stages: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ConnectorsCommand {
    /// Prints every config field (type, default, doc) and the record types of a connector.
    Describe {
        /// Connector type name.
        name: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Validate { files, format } => validate_files(&files, format),
        Command::Connectors { command: None } => {
            print!("{}", describe::list(&ConnectorRegistration::all()));
            ExitCode::SUCCESS
        }
        Command::Connectors {
            command: Some(ConnectorsCommand::Describe { name }),
        } => match ConnectorRegistration::find(&name) {
            Some(registration) => {
                print!("{}", describe::describe(registration));
                ExitCode::SUCCESS
            }
            None => {
                let names = ConnectorRegistration::all();
                let hint = framework::suggest::did_you_mean(&name, names.iter().map(|r| r.name));
                eprintln!("error: unknown connector type {name:?}{hint}; `pipeline connectors` lists them");
                ExitCode::from(2)
            }
        },
        Command::Run { file, stages } => run(file, stages),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(|| RedactingWriter(std::io::stderr()))
        .init();
}

fn validate_files(files: &[PathBuf], format: Format) -> ExitCode {
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    for file in files {
        match validate::validate_file(file) {
            Ok(Ok(_)) => {}
            Ok(Err(found)) => diagnostics.extend(found),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    match format {
        Format::Text => {
            for d in &diagnostics {
                println!("{d}");
            }
        }
        Format::Json => match serde_json::to_string_pretty(&diagnostics) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    }
    if diagnostics.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run(file: PathBuf, stages: Vec<String>) -> ExitCode {
    let pipeline = match validate::validate_file(&file) {
        Ok(Ok(p)) => p,
        Ok(Err(diagnostics)) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            eprintln!(
                "error: {} is invalid ({} problem(s))",
                file.display(),
                diagnostics.len()
            );
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        info!(pipeline = %pipeline.spec.name, "starting");
        let options = RunOptions {
            stages,
            shutdown,
            status: Default::default(),
        };
        match runtime::run(&pipeline, options).await {
            Ok(()) => {
                info!(pipeline = %pipeline.spec.name, "stopped cleanly");
                ExitCode::SUCCESS
            }
            Err(e) => {
                error!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// First SIGINT/SIGTERM: graceful stop. Second: exit at once.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    info!("stop requested: stopping sources, draining, committing");
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    warn!("second stop signal: exiting without draining");
    std::process::exit(130);
}
