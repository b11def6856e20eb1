//! Results of `pipeline test`, as text for people and JSON for tools.

use std::fmt::Write;

use serde::Serialize;

use crate::validate::Diagnostic;

/// One unmet expectation, located in the test file.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Path in the test file, e.g. `tests[2].expect[0].records[1]`.
    pub path: String,
    pub message: String,
    /// The record diff (`- ` expected, `+ ` actual, `  ` same), when one applies.
    pub diff: Vec<String>,
}

/// One test's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    pub name: String,
    pub failures: Vec<Failure>,
    pub duration_us: u64,
}

impl TestReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The outcome of one test file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub test_file: String,
    pub pipeline: String,
    /// Problems of the test file or of the pipeline: no test ran.
    pub problems: Vec<Diagnostic>,
    pub tests: Vec<TestReport>,
}

impl FileReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.tests.iter().all(TestReport::passed)
    }
}

/// Counts over several files.
pub fn totals(reports: &[FileReport]) -> (usize, usize) {
    let passed = reports
        .iter()
        .flat_map(|r| &r.tests)
        .filter(|t| t.passed())
        .count();
    let failed = reports
        .iter()
        .flat_map(|r| &r.tests)
        .filter(|t| !t.passed())
        .count();
    (passed, failed)
}

/// The human-readable report.
pub fn text(reports: &[FileReport]) -> String {
    let mut out = String::new();
    for report in reports {
        let _ = writeln!(out, "{} (tests of {})", report.test_file, report.pipeline);
        for problem in &report.problems {
            let _ = writeln!(out, "  {problem}");
        }
        for test in &report.tests {
            let time = format!("{:.1} ms", test.duration_us as f64 / 1000.0);
            if test.passed() {
                let _ = writeln!(out, "  ok    {} ({time})", test.name);
                continue;
            }
            let _ = writeln!(out, "  FAIL  {} ({time})", test.name);
            for f in &test.failures {
                let _ = writeln!(
                    out,
                    "        {}:{}:{}: {}: {}",
                    f.file, f.line, f.column, f.path, f.message
                );
                for line in &f.diff {
                    let _ = writeln!(out, "          {line}");
                }
            }
        }
    }
    let (passed, failed) = totals(reports);
    let broken = reports.iter().filter(|r| !r.problems.is_empty()).count();
    let _ = write!(out, "{passed} passed, {failed} failed");
    if broken > 0 {
        let _ = write!(out, ", {broken} file(s) with problems");
    }
    out.push('\n');
    out
}

/// The machine-readable report.
pub fn json(reports: &[FileReport]) -> serde_json::Value {
    let (passed, failed) = totals(reports);
    let files: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            let tests: Vec<serde_json::Value> = r
                .tests
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "name": t.name,
                        "passed": t.passed(),
                        "duration_us": t.duration_us,
                        "failures": t.failures,
                    })
                })
                .collect();
            serde_json::json!({
                "test_file": r.test_file,
                "pipeline": r.pipeline,
                "ok": r.ok(),
                "problems": r.problems,
                "tests": tests,
            })
        })
        .collect();
    serde_json::json!({ "passed": passed, "failed": failed, "files": files })
}
