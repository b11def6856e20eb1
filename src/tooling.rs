//! Pipeline authors' commands: `validate` (with env files, unset-variable leniency and
//! warnings), `test` and `schema`.

use std::{collections::HashMap, path::PathBuf, process::ExitCode};

use framework::{
    connector::ConnectorRegistration,
    pipeline_test::{self, report},
    redact::redact,
    validate::{self, Diagnostic, Options},
};
use serde_json::json;

/// `pipeline validate`: exit 0 when valid (warnings allowed unless `deny_warnings`), 1
/// when not, 2 on usage errors.
pub fn validate_files(
    files: &[PathBuf],
    json_format: bool,
    env_files: &[PathBuf],
    options: Options,
    deny_warnings: bool,
) -> ExitCode {
    let mut from_files: HashMap<String, String> = HashMap::new();
    for path in env_files {
        match read_env_file(path) {
            Ok(vars) => from_files.extend(vars),
            Err(message) => {
                eprintln!("error: {}", redact(&message));
                return ExitCode::from(2);
            }
        }
    }
    // The process environment wins over env files, like docker compose's `--env-file`.
    let lookup = |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| from_files.get(name).cloned())
    };
    let mut errors: Vec<Diagnostic> = Vec::new();
    let mut warnings: Vec<Diagnostic> = Vec::new();
    for file in files {
        // Bounded: a huge file is refused before it is read whole.
        let text = match framework::yaml::limits::read_bounded(file) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("error: cannot read pipeline file {}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        let label = file.display().to_string();
        let validation = validate::validate_source_with(&label, &text, &lookup, &options);
        if let Err(found) = validation.result {
            errors.extend(found);
        }
        warnings.extend(validation.warnings);
    }
    if json_format {
        let mut items: Vec<serde_json::Value> = Vec::new();
        for (d, severity) in errors
            .iter()
            .map(|d| (d, "error"))
            .chain(warnings.iter().map(|d| (d, "warning")))
        {
            let mut item = json!(d);
            item["severity"] = json!(severity);
            items.push(item);
        }
        match serde_json::to_string_pretty(&items) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        for d in &errors {
            println!("{d}");
        }
        for w in &warnings {
            println!("{}", as_warning(w));
        }
    }
    if !errors.is_empty() || (deny_warnings && !warnings.is_empty()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `file:line:col: warning: path: message`.
fn as_warning(d: &Diagnostic) -> String {
    let path = if d.path.is_empty() {
        String::new()
    } else {
        format!("{}: ", d.path)
    };
    format!(
        "{}:{}:{}: warning: {path}{}",
        d.file, d.line, d.column, d.message
    )
}

/// `NAME=value` lines (dotenv syntax) of an env file.
fn read_env_file(path: &PathBuf) -> Result<Vec<(String, String)>, String> {
    let iter =
        dotenvy::from_path_iter(path).map_err(|e| format!("--env-file {}: {e}", path.display()))?;
    iter.map(|item| item.map_err(|e| format!("--env-file {}: {e}", path.display())))
        .collect()
}

/// `pipeline test`: exit 0 when every test passes, 1 when one fails or a file has
/// problems, 2 on usage errors.
pub fn test_files(files: &[PathBuf], json_format: bool) -> ExitCode {
    let mut reports = Vec::new();
    for file in files {
        match pipeline_test::run_path(file) {
            Ok(report) => reports.push(report),
            Err(e) => {
                eprintln!("error: {}", redact(&e.to_string()));
                return ExitCode::from(2);
            }
        }
    }
    if json_format {
        match serde_json::to_string_pretty(&report::json(&reports)) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report::text(&reports));
    }
    if reports.iter().all(|r| r.ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `pipeline schema`.
pub fn schema() -> ExitCode {
    let schema = framework::schema::pipeline_schema(&ConnectorRegistration::all());
    match serde_json::to_string_pretty(&schema) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
