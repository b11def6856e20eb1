//! `zscores latest`: prints the newest document of each per-window z-score collection, to
//! look at what the BTCUSDT pipeline wrote.

use clap::{Parser, Subcommand};
use futures::TryStreamExt;
use mongodb::{
    bson::{doc, Document},
    options::FindOptions,
};

#[derive(Parser)]
#[command(about = "Looks at the z-scores the mongo sink wrote")]
struct Cli {
    /// MongoDB connection string.
    #[arg(
        long,
        env = "MONGO_URI",
        default_value = "mongodb://127.0.0.1:27017/?directConnection=true"
    )]
    uri: String,
    /// Database of the collections.
    #[arg(long, env = "MONGO_DATABASE", default_value = "btc")]
    database: String,
    /// Collection name prefix (collections are `<prefix><window>`).
    #[arg(long, default_value = "btc-price-zscore-")]
    prefix: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The newest document of each window collection.
    Latest {
        /// Documents per window.
        #[arg(long, default_value_t = 1)]
        limit: i64,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", framework::redact::redact(&e.to_string()));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<(), mongodb::error::Error> {
    let Command::Latest { limit } = cli.command;
    let client = mongodb::Client::with_uri_str(&cli.uri).await?;
    let db = client.database(&cli.database);
    let mut names: Vec<String> = db
        .list_collection_names()
        .await?
        .into_iter()
        .filter(|n| n.starts_with(&cli.prefix))
        .collect();
    // Order windows by length (30s, 1m, 5m, ...), not alphabetically.
    names.sort_by_key(|n| {
        n[cli.prefix.len()..]
            .parse::<framework::DurationSpec>()
            .map(|d| d.as_millis())
            .unwrap_or(i64::MAX)
    });
    if names.is_empty() {
        println!(
            "no collections named {}* in database {} yet",
            cli.prefix, cli.database
        );
        return Ok(());
    }
    println!(
        "{:<7} {:<25} {:<9} {:>12} {:>14}",
        "window", "timestamp", "symbol", "price", "zscore_price"
    );
    for name in names {
        let options = FindOptions::builder()
            .sort(doc! {"timestamp": -1})
            .limit(limit)
            .build();
        let docs: Vec<Document> = db
            .collection::<Document>(&name)
            .find(doc! {})
            .with_options(options)
            .await?
            .try_collect()
            .await?;
        for d in docs {
            let timestamp = d
                .get_datetime("timestamp")
                .map(|t| framework::event_time::format_millis(t.timestamp_millis()))
                .unwrap_or_default();
            println!(
                "{:<7} {:<25} {:<9} {:>12.2} {:>14.6}",
                d.get_str("window").unwrap_or_default(),
                timestamp,
                d.get_str("symbol").unwrap_or_default(),
                d.get_f64("price").unwrap_or(f64::NAN),
                d.get_f64("zscore_price").unwrap_or(f64::NAN),
            );
        }
    }
    Ok(())
}
