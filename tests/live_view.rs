//! The live view of a running pipeline: `pipeline tap`, the web page in headless Chromium,
//! and the metrics server's limits, against the shipped BTCUSDT pipeline running on the
//! Binance mock, the real broker and the real MongoDB server.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use binance_mock::{MockBinance, MockConfig, MockHandle};
use common::*;

/// The shipped pipeline (topics, groups and database unique to the test) running with
/// `--metrics-addr` against the mock.
struct Running {
    _runtime: tokio::runtime::Runtime,
    _mock: MockHandle,
    _dir: tempfile::TempDir,
    prefix: String,
    addr: String,
    child: KillOnDrop,
}

impl Running {
    fn start() -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let mock = runtime
            .block_on(MockBinance::start(MockConfig {
                symbols: vec!["BTCUSDT".into()],
                change_probability: 0.3,
                ..MockConfig::default()
            }))
            .expect("mock");
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = unique("live");
        let text = std::fs::read_to_string("pipelines/btcusdt.yaml")
            .expect("read pipelines/btcusdt.yaml")
            .replace("name: btcusdt", &format!("name: {prefix}"))
            .replace("btc-price", &format!("{prefix}-btc-price"));
        let file = write_file(dir.path(), "btcusdt.yaml", &text);
        let envs = vec![
            ("KAFKA_BROKERS", kafka_brokers()),
            ("MONGO_URI", mongo_uri()),
            ("MONGO_DATABASE", unique("live").replace('-', "_")),
            ("BINANCE_BASE_URLS", format!("[{}]", mock.base_url())),
        ];
        let addr = free_local_addr();
        let child = spawn_pipeline(
            &[
                "run",
                file.to_str().expect("utf-8"),
                "--metrics-addr",
                &addr,
            ],
            &envs,
        );
        let running = Running {
            _runtime: runtime,
            _mock: mock,
            _dir: dir,
            prefix,
            addr,
            child: KillOnDrop(Some(child)),
        };
        wait_for("every stage ready", Duration::from_secs(60), || {
            matches!(http_get(&running.addr, "/ready"), Some((200, _))).then_some(())
        });
        running
    }

    fn topic(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn pid(&self) -> u32 {
        self.child.0.as_ref().expect("child").id()
    }

    /// Taps `topic` over HTTP until the ring holds records (tapping starts on request).
    fn wait_for_records(&self, topic: &str) {
        let path = format!("/api/tap?topic={}&limit=1", self.topic(topic));
        wait_for(
            &format!("records of {topic} in the tap"),
            Duration::from_secs(60),
            || {
                let (status, body) = http_get(&self.addr, &path)?;
                assert_eq!(status, 200, "{body}");
                let batch: serde_json::Value = serde_json::from_str(&body).expect("tap JSON");
                (batch["records"].as_array().is_some_and(|r| !r.is_empty())).then_some(())
            },
        );
    }
}

fn tap(args: &[&str]) -> std::process::Child {
    Command::new(pipeline_bin())
        .arg("tap")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pipeline tap")
}

#[test]
fn tap_streams_the_records_of_a_topic_while_the_pipeline_runs_and_exits_on_ctrl_c() {
    let running = Running::start();
    let prices = running.topic("btc-price");
    let url = running.url();

    // JSON lines: the records the binance stage writes, in order.
    let output = wait_with_timeout(
        tap(&[&url, &prices, "--limit", "5"]),
        Duration::from_secs(30),
    );
    assert!(output.status.success(), "{}", stderr_of(&output));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 5);
    for line in &lines {
        assert_eq!(line["topic"], prices.as_str());
        assert_eq!(line["value"]["symbol"], "BTCUSDT");
        assert!(
            line["value"]["price"].as_f64().is_some_and(|p| p > 0.0),
            "{line}"
        );
        assert!(line["timestamp_ms"].as_i64().is_some(), "{line}");
    }
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // A table of chosen fields of the statistics, by window name.
    let output = wait_with_timeout(
        tap(&[
            &url,
            &running.topic("btc-price-moving"),
            "--format",
            "table",
            "--field",
            "stats[30s].avg_price",
            "--field",
            "stats[30s].std_price",
            "--limit",
            "2",
        ]),
        Duration::from_secs(60),
    );
    assert!(output.status.success(), "{}", stderr_of(&output));
    let table = String::from_utf8_lossy(&output.stdout).to_string();
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows[0].contains("stats[30s].avg_price  stats[30s].std_price"),
        "{table}"
    );
    assert_eq!(rows.len(), 3, "{table}");
    for row in &rows[1..] {
        let numbers: Vec<f64> = row
            .split_whitespace()
            .rev()
            .take(2)
            .map(|n| n.parse().expect("numeric fields"))
            .collect();
        assert!(numbers[1] > 0.0 && numbers[0] >= 0.0, "{row}");
    }

    // Without --limit it runs until Ctrl-C, then exits cleanly.
    let mut child = tap(&[&url, &prices]);
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).expect("a first record");
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let output = wait_with_timeout(child, Duration::from_secs(10));
    assert!(output.status.success(), "{:?}", output.status);

    // An unknown topic is refused with the ones there are.
    let output = wait_with_timeout(tap(&[&url, "no-such-topic"]), Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("unknown topic \"no-such-topic\"") && stderr.contains(&prices),
        "{stderr}"
    );
}

/// Chromium from Debian (scripts/servers.sh test-deps installs it); missing, the test fails.
fn chromium(profile: &Path, args: &[&str], url: &str) -> std::process::Output {
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium is required (scripts/servers.sh test-deps installs it)");
    wait_with_timeout(child, Duration::from_secs(90))
}

/// The value of every `name="..."` attribute in `dom`.
fn attribute_values<'a>(dom: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!("{name}=\"");
    dom.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &dom[at + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

#[test]
fn web_view_in_headless_chromium_shows_all_stages_ready_and_charts_with_points() {
    let running = Running::start();
    // The rings fill from the first request on; wait until the z-scores (the last topic to
    // get records, after the windows close) are there.
    for topic in ["btc-price", "btc-price-moving", "btc-price-zscore"] {
        running.wait_for_records(topic);
    }
    let profile = tempfile::tempdir().expect("profile dir");
    let page = format!("{}/", running.url());
    let output = chromium(
        profile.path(),
        &["--virtual-time-budget=6000", "--dump-dom"],
        &page,
    );
    let dom = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        dom.contains("id=\"graph-svg\""),
        "no graph in the page: {:?}\n{dom}",
        stderr_of(&output)
    );
    // The graph shows the four stages, each ready.
    let graph = &dom[dom.find("id=\"graph-svg\"").unwrap()..dom.find("id=\"stages\"").unwrap()];
    let mut drawn = attribute_values(graph, "data-stage");
    drawn.sort();
    assert_eq!(drawn, ["extract", "load", "moving", "zscore"], "{graph}");
    assert_eq!(graph.matches("class=\"stage ready\"").count(), 4, "{graph}");
    for topic in ["btc-price", "btc-price-moving", "btc-price-zscore"] {
        assert!(
            graph.contains(&format!(">{}<", running.topic(topic))),
            "{topic} missing"
        );
    }
    // The stage table says `ready` for each.
    for (stage, connector) in [
        ("extract", "binance"),
        ("moving", "moving_stats"),
        ("zscore", "zscore"),
        ("load", "mongo"),
    ] {
        let row = format!(
            "<tr data-stage=\"{stage}\"><td>{stage}</td><td>{connector}</td><td class=\"state-ready\">ready</td>"
        );
        assert!(dom.contains(&row), "no ready row for {stage}:\n{dom}");
    }
    // Both charts have points: prices with moving averages (and their ±1 std bands), and
    // z-scores per window.
    let points: Vec<u64> = attribute_values(&dom, "data-points")
        .iter()
        .map(|n| n.parse().expect("a count"))
        .collect();
    assert_eq!(points.len(), 2, "{dom}");
    assert!(points.iter().all(|&n| n > 0), "chart points: {points:?}");
    let charts = &dom[dom.find("id=\"chart-0\"").unwrap()..];
    let zscores = &dom[dom.find("id=\"chart-1\"").unwrap()..];
    let prices = &charts[..charts.find("id=\"chart-1\"").unwrap()];
    assert!(prices.contains("-btc-price · price = "), "{prices}");
    assert!(
        prices.contains("-btc-price-moving · stats[30s].avg_price = "),
        "{prices}"
    );
    assert!(prices.contains("<polygon"), "no std band: {prices}");
    assert!(
        zscores.contains("-btc-price-zscore · zscores[1m].zscore_price = "),
        "{zscores}"
    );

    // A screenshot that is not blank.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("live-view.png");
    let _ = std::fs::remove_file(&shot);
    let output = chromium(
        profile.path(),
        &[
            "--virtual-time-budget=6000",
            "--window-size=1400,1300",
            &format!("--screenshot={}", shot.display()),
        ],
        &page,
    );
    assert!(shot.exists(), "no screenshot: {}", stderr_of(&output));
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot).expect("open screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut pixels).expect("decode");
    let bytes_per_pixel = info.line_size / info.width as usize;
    let mut colours = std::collections::HashSet::new();
    let mut background = 0usize;
    let chunks = pixels[..info.buffer_size()].chunks(bytes_per_pixel);
    let total = chunks.len();
    for pixel in chunks {
        colours.insert(pixel.to_vec());
        if pixel[..3] == [0xf6, 0xf7, 0xf9] || pixel[..3] == [0xff, 0xff, 0xff] {
            background += 1;
        }
    }
    eprintln!("screenshot {} ({} colours)", shot.display(), colours.len());
    assert!((info.width, info.height) == (1400, 1300), "{info:?}");
    assert!(
        colours.len() > 50,
        "blank screenshot: {} colours",
        colours.len()
    );
    assert!(
        background * 100 / total < 95,
        "mostly background: {background} of {total}"
    );
}

#[test]
fn a_thousand_half_open_connections_neither_starve_the_metrics_server_nor_its_fds() {
    let running = Running::start();
    raise_fd_limit(2048);
    let port: u16 = running
        .addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port in the metrics address");
    // Half send nothing, half stop in the middle of their headers.
    let mut idle = Vec::new();
    for i in 0..1000 {
        let mut stream = TcpStream::connect(&running.addr).expect("connect");
        if i % 2 == 1 {
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .expect("partial headers");
        }
        idle.push(stream);
    }
    let asked = Instant::now();
    assert_eq!(
        http_get(&running.addr, "/health"),
        Some((200, "ok\n".to_string()))
    );
    let answered_in = asked.elapsed();
    assert!(
        answered_in < Duration::from_secs(3),
        "/health took {answered_in:?}"
    );
    // Counted by socket, not by total fds: the pipeline's Kafka and MongoDB clients open
    // connections of their own meanwhile.
    let during = metrics_connections(running.pid(), port);
    assert!(
        during <= 64 + 1,
        "the metrics server holds {during} connections with 1000 idle clients (limit 64)"
    );
    // The header-read timeout closes the connections that never finished a request.
    std::thread::sleep(Duration::from_secs(6));
    let after = metrics_connections(running.pid(), port);
    assert!(
        after <= 1,
        "{after} metrics connections left after the timeout"
    );
    let mut closed = 0;
    for stream in idle.iter_mut().rev().take(50) {
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let mut buf = [0u8; 256];
        // EOF, a reset, or hyper's 408 (then EOF) all mean the server let go.
        let gone = match stream.read(&mut buf) {
            Ok(0) => true,
            Ok(n) => buf[..n].starts_with(b"HTTP/1.1 408"),
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        closed += usize::from(gone);
    }
    assert_eq!(closed, 50, "idle connections still open after the timeout");
}

/// Established TCP connections of process `pid` whose local port is `port`: its socket
/// fds matched by inode against the kernel's socket table of its network namespace.
fn metrics_connections(pid: u32, port: u16) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds of the pipeline")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(
                link.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    const LISTEN: &str = "0A";
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|row| {
            let columns: Vec<&str> = row.split_whitespace().collect();
            let local_port = columns
                .get(1)
                .and_then(|local| local.rsplit(':').next())
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            local_port == Some(port)
                && columns.get(3) != Some(&LISTEN)
                && columns.get(9).is_some_and(|inode| inodes.contains(*inode))
        })
        .count()
}

fn raise_fd_limit(wanted: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < wanted {
        assert!(
            hard >= wanted,
            "this test needs {wanted} open files; the hard limit is {hard}"
        );
        setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).expect("setrlimit");
    }
}
