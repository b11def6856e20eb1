//! Adaptive sink batching (issue 14): a record on an idle input is written at once, not
//! after the batch's `max_wait`, which stays an upper bound.

mod common;

use std::{
    io::Write,
    process::Command,
    time::{Duration, Instant},
};

use common::*;

#[test]
fn a_record_on_an_idle_input_is_written_at_once_not_after_max_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("in.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    let out = dir.path().join("out.jsonl");
    let topic = unique("idle");
    let pipeline = write_file(
        dir.path(),
        "idle.yaml",
        &format!(
            r#"name: {name}
kafka:
  brokers: ${{KAFKA_BROKERS}}
topics:
  {topic}: {{ partitions: 1 }}
stages:
  - name: read
    type: file_source
    output: {topic}
    config: {{ path: "{fifo}" }}
  - name: write
    type: file_sink
    input: {topic}
    batch: {{ max_records: 1000, max_wait: 60s }}
    config: {{ path: "{out}" }}
"#,
            name = unique("idle"),
            fifo = fifo.display(),
            out = out.display()
        ),
    );
    let child = KillOnDrop(Some(spawn_pipeline(
        &["run", pipeline.to_str().expect("utf-8")],
        &[("KAFKA_BROKERS", kafka_brokers())],
    )));
    let mut pipe = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open fifo");
    let line = |n: usize| format!(r#"{{"n":{n}}}"#);
    // The first record also waits for the consumer group join (a few seconds).
    writeln!(pipe, "{}", line(1)).expect("write");
    wait_for("the first record", Duration::from_secs(30), || {
        (read_lines(&out).len() == 1).then_some(())
    });
    for n in 2..=4 {
        let sent = Instant::now();
        writeln!(pipe, "{}", line(n)).expect("write");
        pipe.flush().expect("flush");
        wait_for("the next record", Duration::from_secs(30), || {
            (read_lines(&out).len() == n).then_some(())
        });
        let took = sent.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "record {n} was written {took:?} after it was read; max_wait is 60 s"
        );
    }
    drop(pipe);
    let output = wait_with_timeout(child.take(), Duration::from_secs(60));
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(read_lines(&out), (1..=4).map(line).collect::<Vec<_>>());
}
