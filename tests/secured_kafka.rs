//! Secured Kafka for real: `pipeline run` over TLS (`security.protocol: SSL` with
//! `ssl.ca.location`) and against a broker that requires SASL, each on a broker of its
//! own started here.
//!
//! Tansu 0.6.0 cannot serve TLS itself (its `--cert` and `--key` options exclude each
//! other), so TLS is terminated by a proxy in this test that holds a certificate from a
//! throwaway CA generated at test time, in front of a plain Tansu that advertises the
//! proxy's address. The client side (librdkafka's OpenSSL handshake, certificate and host
//! name verification) is exactly the one used against a managed cluster.

mod common;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use tokio_rustls::rustls::{
    self,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
};

/// A CA certificate (PEM) and a server certificate for 127.0.0.1/localhost signed by it.
struct Pki {
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
}

fn throwaway_pki(name: &str) -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    let server_cert = params.signed_by(&server_key, &issuer).expect("server cert");
    Pki {
        ca_pem: ca_cert.pem(),
        server_chain: vec![server_cert.der().clone()],
        server_key: PrivateKeyDer::from_pem_slice(server_key.serialize_pem().as_bytes())
            .expect("server key PEM"),
    }
}

/// Terminates TLS on a fresh loopback port and forwards the plain bytes to `backend`.
/// Returns the port; the proxy runs as long as `runtime`.
fn start_tls_proxy(runtime: &tokio::runtime::Runtime, pki: &Pki, backend: u16) -> u16 {
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
        .expect("TLS server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind proxy");
    let port = listener.local_addr().expect("proxy address").port();
    runtime.spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A failed handshake (the wrong-CA client) just drops the connection.
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

/// file → topic → file with `properties` (YAML lines under `kafka.properties`).
fn secured_pipeline(dir: &Path, port: u16, properties: &str) -> PathBuf {
    let topic = unique("secured");
    write_file(
        dir,
        &format!("{topic}.yaml"),
        &format!(
            r#"name: {topic}
kafka:
  brokers: 127.0.0.1:{port}
  commit_interval: 200ms
  properties:
{properties}
stages:
  - name: read
    type: file_source
    output: {topic}
    config: {{ path: "${{IN_FILE}}", key_field: symbol }}
  - name: write
    type: file_sink
    input: {topic}
    config: {{ path: "${{OUT_FILE}}" }}
"#
        ),
    )
}

fn io_env(dir: &Path) -> (Vec<(&'static str, String)>, Vec<String>, PathBuf) {
    let input = dir.join("in.jsonl");
    let output = dir.join("out.jsonl");
    let lines: Vec<String> = (0..500)
        .map(|i| format!(r#"{{"symbol":"S{}","seq":{i}}}"#, i % 3))
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").expect("write input");
    let env = vec![
        ("IN_FILE", input.display().to_string()),
        ("OUT_FILE", output.display().to_string()),
    ];
    (env, lines, output)
}

/// Runs file -> topic -> file through a TLS listener with a throwaway CA (asserting every
/// record arrives once), then the same pipeline trusting another CA. Returns that second
/// run, how long it took, and the TLS port.
fn tls_round_trip_then_wrong_ca() -> (std::process::Output, Duration, u16) {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let pki = throwaway_pki("right");
    let ca = write_file(dir.path(), "ca.pem", &pki.ca_pem);
    let wrong_ca = write_file(dir.path(), "wrong-ca.pem", &throwaway_pki("wrong").ca_pem);

    let backend = framework::testing::free_port();
    let tls_port = start_tls_proxy(&runtime, &pki, backend);
    let _broker = Broker::start(backend, tls_port, &[]);
    let (env, lines, output) = io_env(dir.path());

    let tls = |ca: &Path| {
        format!(
            "    security.protocol: SSL\n    ssl.ca.location: {}\n",
            ca.display()
        )
    };
    let good = secured_pipeline(dir.path(), tls_port, &tls(&ca));
    let run = run_pipeline(
        &["run", good.to_str().expect("path")],
        &env,
        Duration::from_secs(120),
    );
    assert!(run.status.success(), "{}", stderr_of(&run));
    let mut got = read_lines(&output);
    let mut want = lines.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "every record went through the TLS listener once");

    let bad = secured_pipeline(dir.path(), tls_port, &tls(&wrong_ca));
    let started = Instant::now();
    let failed = run_pipeline(
        &["run", bad.to_str().expect("path")],
        &env,
        Duration::from_secs(60),
    );
    (failed, started.elapsed(), tls_port)
}

#[test]
fn file_to_topic_to_file_runs_over_tls_and_a_wrong_ca_fails_the_run() {
    let (failed, _, _) = tls_round_trip_then_wrong_ca();
    assert!(
        !failed.status.success(),
        "a wrong CA must fail the run: {}",
        stderr_of(&failed)
    );
}

#[test]
fn a_wrong_ca_fails_within_seconds_naming_broker_and_tls_cause() {
    let (failed, elapsed, tls_port) = tls_round_trip_then_wrong_ca();
    let stderr = stderr_of(&failed);
    assert!(!failed.status.success(), "a wrong CA must fail the run");
    assert!(
        elapsed < Duration::from_secs(15),
        "failed after {elapsed:?}, not within seconds: {stderr}"
    );
    let error = stderr
        .lines()
        .find(|l| l.contains("cannot connect to Kafka at"))
        .unwrap_or_default();
    assert!(
        error.contains(&format!("127.0.0.1:{tls_port}")),
        "the error names the broker: {stderr}"
    );
    assert!(
        error.contains("SSL handshake failed") && error.contains("certificate verify failed"),
        "the error gives the TLS cause: {stderr}"
    );
}

#[test]
fn a_broker_requiring_sasl_rejects_unknown_scram_credentials_fast_without_leaking_the_password() {
    // Tansu 0.6.0 keeps users in its storage, and with `--authentication` even creating
    // one needs an authenticated client, so no login can succeed against its in-memory
    // store: this proves SCRAM is compiled in and spoken, and that a refused login ends
    // the run with a clear, redacted error instead of retrying forever.
    let dir = tempfile::tempdir().expect("tempdir");
    let port = framework::testing::free_port();
    let _broker = Broker::start(port, port, &["--authentication"]);
    let (env, _, _) = io_env(dir.path());
    let password = "Sup3r-secret-pw";
    let pipeline = secured_pipeline(
        dir.path(),
        port,
        &format!(
            "    security.protocol: SASL_PLAINTEXT\n    sasl.mechanism: SCRAM-SHA-512\n    sasl.username: alice\n    sasl.password: {password}\n"
        ),
    );
    let started = Instant::now();
    let failed = run_pipeline(
        &["run", pipeline.to_str().expect("path")],
        &env,
        Duration::from_secs(60),
    );
    let elapsed = started.elapsed();
    let stderr = stderr_of(&failed);
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(!failed.status.success(), "{stderr}");
    assert!(
        elapsed < Duration::from_secs(15),
        "failed after {elapsed:?}"
    );
    assert!(
        stderr.contains(&format!("cannot connect to Kafka at 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(
        !stderr.contains(password) && !stdout.contains(password),
        "the password leaked: {stderr}"
    );
}
