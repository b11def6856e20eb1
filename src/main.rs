//! `pipeline`: validate, inspect and run YAML pipelines of connectors.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use clap::{Parser, Subcommand, ValueEnum};
use framework::{
    connector::ConnectorRegistration,
    observe,
    runtime::{self, PipelineStatus, RunOptions},
    validate::{self, ValidatedPipeline},
    DurationSpec,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

// Links every built-in connector so that it registers itself.
mod connectors;

mod describe;
mod graph;
mod logging;
mod tap;
mod tooling;
mod top;

#[derive(Parser)]
#[command(
    name = "pipeline",
    version,
    about = "Kafka Connect-style streaming pipelines: validate, inspect and run YAML pipelines of sources, transforms and sinks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: `text` for people, `json` for log collectors (one object per
    /// line with the stage and connector). Levels and targets: RUST_LOG (default
    /// `info,rdkafka=warn`).
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,
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
        /// Reads `${VAR}` values from this file (`NAME=value` lines, `#` comments) before
        /// the process environment; repeatable, later files win.
        #[arg(long = "env-file", value_name = "FILE")]
        env_files: Vec<PathBuf>,
        /// Unset variables are warnings instead of errors; everything else is still
        /// checked (for linting shipped pipelines in CI).
        #[arg(long)]
        allow_unset_env: bool,
        /// Warnings (unread outputs and dead letters, suspicious settings) fail the
        /// check: exit 1.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Runs the tests of pipelines (`x_test.yaml` beside `x.yaml`) in process: no broker,
    /// no network, deterministic. Exit 0 when all pass, 1 when one fails, 2 on usage
    /// errors.
    Test {
        /// Pipeline files or their `*_test.yaml` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Prints the JSON Schema of pipeline files, including every registered connector's
    /// `config` (for editors: yaml-language-server).
    Schema,
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
        /// Serves Prometheus metrics on /metrics, liveness on /health, readiness on /ready
        /// and the web view on / at this address (e.g. 127.0.0.1:9898; port 0 picks a free
        /// one). Read-only, but unauthenticated: keep it on loopback or a trusted network.
        #[arg(long, value_name = "HOST:PORT")]
        metrics_addr: Option<String>,
        /// After the pipeline stopped, keep serving the endpoints this long (e.g. 30s), so
        /// that a scraper sees the final counters of a bounded run, or a failed stage in
        /// /health. SIGINT/SIGTERM ends the wait.
        #[arg(
            long,
            value_name = "DURATION",
            default_value = "0s",
            requires = "metrics_addr"
        )]
        metrics_linger: DurationSpec,
    },
    /// Live per-stage view of a running pipeline (`pipeline run --metrics-addr`): records
    /// in/out per second, rejections, dead letters, consumer lag, event-time lag, state.
    /// q, Esc or Ctrl-C quits.
    Top {
        /// The pipeline's metrics address, e.g. http://127.0.0.1:9898.
        url: String,
        /// Prints one screen as plain text (rates over one second) and exits.
        #[arg(long)]
        once: bool,
    },
    /// Streams the records a running pipeline (`pipeline run --metrics-addr`) reads or
    /// writes on TOPICs: JSON lines or a table, sampled when the rate is high (the sampling
    /// is shown). Ctrl-C quits. The web view at the same address charts them.
    Tap {
        /// The pipeline's metrics address, e.g. http://127.0.0.1:9898.
        url: String,
        /// Topics to tap.
        #[arg(required = true)]
        topics: Vec<String>,
        /// Shows only this field of each record (repeatable), e.g. `price` or
        /// `stats[30s].avg_price` (an array element by its first string field, or by index).
        #[arg(long = "field", value_name = "PATH")]
        fields: Vec<String>,
        /// Stops after this many records.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
        limit: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = tap::TapFormat::Json)]
        format: tap::TapFormat,
    },
    /// Prints the stage/topic graph of a pipeline (validated first).
    Graph {
        /// Pipeline file.
        file: PathBuf,
        /// Output format: Mermaid (renders on GitHub) or Graphviz DOT.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(Subcommand)]
enum ConnectorsCommand {
    /// Prints every config field (type, default, doc) and the record types of a connector.
    Describe {
        /// Connector type name.
        name: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `pipeline test` feeds bad records on purpose: the connectors' warnings about them
    // would bury the report (RUST_LOG still shows them).
    let default_filter = match cli.command {
        Command::Test { .. } => "error",
        _ => logging::DEFAULT_FILTER,
    };
    logging::init(cli.log_format, default_filter);
    framework::redact::install_panic_hook();
    match cli.command {
        Command::Validate {
            files,
            format,
            env_files,
            allow_unset_env,
            deny_warnings,
        } => tooling::validate_files(
            &files,
            format == Format::Json,
            &env_files,
            framework::validate::Options { allow_unset_env },
            deny_warnings,
        ),
        Command::Test { files, format } => tooling::test_files(&files, format == Format::Json),
        Command::Schema => tooling::schema(),
        Command::Connectors { command: None } => {
            print!("{}", describe::list(&ConnectorRegistration::all()));
            ExitCode::SUCCESS
        }
        Command::Connectors {
            command: Some(ConnectorsCommand::Describe { name, format }),
        } => match ConnectorRegistration::find(&name) {
            Some(registration) => {
                match format {
                    Format::Text => print!("{}", describe::describe(registration)),
                    Format::Json => println!("{}", describe::describe_json(registration)),
                }
                ExitCode::SUCCESS
            }
            None => {
                let names = ConnectorRegistration::all();
                let hint = framework::suggest::did_you_mean(&name, names.iter().map(|r| r.name));
                eprintln!("error: unknown connector type {name:?}{hint}; `pipeline connectors` lists them");
                ExitCode::from(2)
            }
        },
        Command::Run {
            file,
            stages,
            metrics_addr,
            metrics_linger,
        } => run(file, stages, metrics_addr, metrics_linger.as_std()),
        Command::Top { url, once } => {
            let result = if once {
                top::once(&url).map(|screen| print!("{screen}"))
            } else {
                top::run(&url)
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Tap {
            url,
            topics,
            fields,
            limit,
            format,
        } => {
            let args = tap::TapArgs {
                url,
                topics,
                fields,
                limit,
                format,
            };
            match tap::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Graph { file, format } => match load(&file) {
            Ok(pipeline) => {
                match format {
                    GraphFormat::Mermaid => print!("{}", graph::mermaid(&pipeline)),
                    GraphFormat::Dot => print!("{}", graph::dot(&pipeline)),
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
    }
}

/// Validates a pipeline file, printing its problems; the exit code when it is unusable.
fn load(file: &Path) -> Result<ValidatedPipeline, ExitCode> {
    match validate::validate_file(file) {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(diagnostics)) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            eprintln!(
                "error: {} is invalid ({} problem(s))",
                file.display(),
                diagnostics.len()
            );
            Err(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("error: {}", framework::redact::redact(&e.to_string()));
            Err(ExitCode::from(2))
        }
    }
}

fn run(
    file: PathBuf,
    stages: Vec<String>,
    metrics_addr: Option<String>,
    linger: Duration,
) -> ExitCode {
    let pipeline = match load(&file) {
        Ok(p) => p,
        Err(code) => return code,
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
        // A stage failure cancels `shutdown` too; this one tells a stop request apart.
        let signalled = CancellationToken::new();
        tokio::spawn(first_signal(signalled.clone()));
        let status = PipelineStatus::default();
        // The endpoints outlive the pipeline's own shutdown token by the linger time.
        let server_stop = CancellationToken::new();
        let server = match metrics_addr {
            Some(addr) => match start_observability(
                &addr,
                &status,
                &server_stop,
                observe::LiveView::for_pipeline(&pipeline, &stages),
            )
            .await
            {
                Ok(server) => Some(server),
                Err(message) => {
                    eprintln!("error: {message}");
                    return ExitCode::from(2);
                }
            },
            None => None,
        };
        info!(pipeline = %pipeline.spec.name, "starting");
        let options = RunOptions {
            stages,
            shutdown: shutdown.clone(),
            status,
        };
        let code = match runtime::run(&pipeline, options).await {
            Ok(()) => {
                info!(pipeline = %pipeline.spec.name, "stopped cleanly");
                ExitCode::SUCCESS
            }
            Err(e) => {
                error!("{e}");
                ExitCode::FAILURE
            }
        };
        if let Some(server) = server {
            if !linger.is_zero() && !signalled.is_cancelled() {
                info!(linger = ?linger, "pipeline stopped; still serving the metrics endpoints");
                tokio::select! {
                    _ = tokio::time::sleep(linger) => {}
                    _ = signalled.cancelled() => {}
                }
            }
            server_stop.cancel();
            server.stopped().await;
        }
        code
    })
}

/// Installs the Prometheus recorder and serves /metrics, /health, /ready and the web view.
async fn start_observability(
    addr: &str,
    status: &PipelineStatus,
    stop: &CancellationToken,
    view: observe::LiveView,
) -> Result<observe::ObserveServer, String> {
    let handle = observe::install_prometheus().map_err(|e| e.to_string())?;
    let server = observe::serve_live(addr, handle, status.clone(), view, stop.clone())
        .await
        .map_err(|e| format!("--metrics-addr {e}"))?;
    info!(addr = %server.local_addr, "metrics on http://{}/metrics, web view on http://{0}/", server.local_addr);
    Ok(server)
}

/// Cancels `token` on the first SIGINT/SIGTERM.
async fn first_signal(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    if let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        token.cancel();
    }
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
