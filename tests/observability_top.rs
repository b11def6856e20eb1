//! `pipeline top` in a pseudo-terminal (util-linux `script`, 80x24) against a running
//! pipeline: the stages and their rates appear, and `q` exits 0.

mod common;

use std::{
    io::{Read, Write},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::*;

const LINES: usize = 400_000;

/// Whether a table cell holds a non-zero rate (`1234`, `12.5k`, ...).
fn positive(cell: &str) -> bool {
    cell.chars().next().is_some_and(|c| c.is_ascii_digit())
        && !cell.trim_start_matches(['0', '.']).is_empty()
}

/// The IN/s and OUT/s cells of `stage`'s row on the screen.
fn rates<'a>(screen: &'a str, stage: &str) -> Option<(&'a str, &'a str)> {
    screen.lines().find_map(|line| {
        let cells: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == '│')
            .filter(|c| !c.is_empty())
            .collect();
        (cells.first() == Some(&stage) && cells.len() >= 8).then(|| (cells[1], cells[2]))
    })
}

#[test]
fn top_shows_each_stage_with_live_rates_at_80_columns_and_q_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::with_capacity(LINES * 80);
    for i in 0..LINES {
        text.push_str(&format!(
            "{{\"symbol\":\"BTCUSDT\",\"price\":{}.25,\"timestamp\":\"2025-05-07T15:{:02}:{:02}.{:03}Z\"}}\n",
            97000 + i % 50,
            (i / 60_000) % 60,
            (i / 1000) % 60,
            i % 1000
        ));
    }
    write_file(dir.path(), "in.jsonl", &text);
    let name = unique("obs-top");
    let pipeline = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "name: {name}\nkafka:\n  brokers: ${{KAFKA_BROKERS}}\n  partitions: 2\nstages:\n  \
             - name: read\n    type: file_source\n    output: {name}-records\n    config:\n      \
             path: {}\n      key_field: symbol\n  \
             - name: write\n    type: file_sink\n    input: {name}-records\n    config:\n      path: {}\n",
            dir.path().join("in.jsonl").display(),
            dir.path().join("out.jsonl").display()
        ),
    );
    let addr = free_local_addr();
    let pipeline_child = KillOnDrop(Some(spawn_pipeline(
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--metrics-addr",
            &addr,
            "--metrics-linger",
            "60s",
        ],
        &[("KAFKA_BROKERS", kafka_brokers())],
    )));
    wait_for("/metrics", Duration::from_secs(30), || {
        http_get(&addr, "/metrics")
    });

    let command = format!(
        "stty cols 80 rows 24; exec {} top http://{addr}",
        pipeline_bin().display()
    );
    let mut top = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("TERM", "xterm-256color")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run `script` (util-linux) for a pseudo-terminal");
    let mut stdout = top.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        while let Ok(n) = stdout.read(&mut buffer) {
            if n == 0 || tx.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });

    let mut terminal = vt100::Parser::new(24, 80, 0);
    let start = Instant::now();
    let mut seen_read = false;
    let mut seen_write = false;
    let mut screen = String::new();
    while !(seen_read && seen_write) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no positive rates for both stages within 60 s; last screen:\n{screen}"
        );
        if let Ok(bytes) = rx.recv_timeout(Duration::from_millis(200)) {
            terminal.process(&bytes);
            screen = terminal.screen().contents();
            if let Some((_, out_rate)) = rates(&screen, "read") {
                seen_read |= positive(out_rate);
            }
            if let Some((in_rate, _)) = rates(&screen, "write") {
                seen_write |= positive(in_rate);
            }
        }
    }
    assert!(
        screen.contains("STAGE") && screen.contains("IN/s"),
        "{screen}"
    );
    assert!(screen.lines().all(|l| l.trim_end().chars().count() <= 80));

    top.stdin.as_mut().unwrap().write_all(b"q").unwrap();
    let output = wait_with_timeout(top, Duration::from_secs(15));
    assert!(
        output.status.success(),
        "top exited with {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    // The plain one-shot screen of the same (now lingering) pipeline.
    let once = run_pipeline(&["top", "--once", &addr], &[], Duration::from_secs(20));
    assert!(once.status.success(), "{}", stderr_of(&once));
    let plain = String::from_utf8_lossy(&once.stdout).into_owned();
    assert!(
        rates(&plain, "read").is_some() && rates(&plain, "write").is_some(),
        "{plain}"
    );
    assert!(plain.lines().all(|l| l.chars().count() <= 80), "{plain}");

    let pipeline_child = pipeline_child.take();
    sigterm(&pipeline_child);
    let output = wait_with_timeout(pipeline_child, Duration::from_secs(20));
    assert!(output.status.success(), "{}", stderr_of(&output));
}

#[test]
fn top_once_against_an_unreachable_url_fails_naming_the_url() {
    let addr = free_local_addr();
    let output = run_pipeline(&["top", "--once", &addr], &[], Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains(&format!("error: scraping http://{addr}/metrics")),
        "{stderr}"
    );
}
