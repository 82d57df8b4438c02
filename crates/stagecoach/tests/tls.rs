//! Where the API listens: loopback by default; a non-loopback address only
//! with TLS (`[server.tls]`, served with rustls) or an explicit
//! `allow_insecure_remote = true`. Traffic in these tests goes to 127.0.0.1
//! only; binding 0.0.0.0 sends nothing anywhere else.

mod common;

use std::process::Command;

use client::wire::ListQuery;
use common::{ok, run_with_timeout, token, Config, Harness};

/// `stagecoach daemon [--listen LISTEN]` with the harness's configuration and state dir.
fn stagecoach_daemon(h: &Harness, listen: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagecoach"));
    cmd.arg("daemon");
    if let Some(l) = listen {
        cmd.args(["--listen", l]);
    }
    cmd.arg("--config")
        .arg(h.config.clone().expect("a configuration"))
        .arg("--state-dir")
        .arg(h.state())
        .env_remove("RUST_LOG");
    cmd
}

#[test]
fn a_non_loopback_address_without_tls_is_refused_with_what_to_do() {
    let h = Harness::new(&Config::default());
    let out = run_with_timeout(
        stagecoach_daemon(&h, Some("0.0.0.0:0")),
        "stagecoach daemon --listen 0.0.0.0:0",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.listen: 0.0.0.0:0"), "{stderr}");
    assert!(stderr.contains("[server.tls]"), "{stderr}");
    assert!(stderr.contains("allow_insecure_remote = true"), "{stderr}");
}

#[test]
fn allow_insecure_remote_lets_it_listen_everywhere() {
    let mut config = Config::default().principal("alice", &["deployer"]);
    config.extra = "[server]\nlisten = \"0.0.0.0:0\"\nallow_insecure_remote = true\n".into();
    let mut h = Harness::new(&config);
    // The configured address counts: no --listen.
    let d = h.start_command(stagecoach_daemon(&h, None));
    let url = d.url.clone();
    assert!(url.starts_with("http://0.0.0.0:"), "{url}");
    let port = url.rsplit(':').next().expect("a port");
    let api = client::Client::new(&format!("http://127.0.0.1:{port}"), &token("alice")).expect("a client");
    ok(api.list_page(&ListQuery::default()), "the daemon answers on loopback");
}

#[test]
fn tls_serves_https_with_the_configured_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("a self-signed certificate");
    let mut h = Harness::bare();
    let cert_path = h.path("cert.pem");
    let key_path = h.path("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write the certificate");
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("write the key");
    let mut config = Config::default().principal("alice", &["deployer"]);
    config.extra = format!(
        "[server.tls]\ncert = {:?}\nkey = {:?}\n",
        cert_path.display().to_string(),
        key_path.display().to_string()
    );
    h.configure(&config);
    let d = h.start();
    assert!(d.url.starts_with("https://127.0.0.1:"), "{}", d.url);

    let trusted = client::Client::builder(&d.url)
        .expect("the daemon's URL")
        .token(token("alice"))
        .root_certificate_pem(cert.cert.pem())
        .build()
        .expect("a client");
    ok(trusted.list_page(&ListQuery::default()), "an HTTPS answer");

    // Without trusting the certificate, or in clear text, nothing gets through.
    let untrusting = client::Client::new(&d.url, &token("alice")).expect("a client");
    assert!(untrusting.healthz().is_err());
    let plain = d.url.replacen("https://", "http://", 1);
    let clear = client::Client::new(&plain, &token("alice")).expect("a client");
    assert!(clear.healthz().is_err(), "clear text must not be served");
}

#[test]
fn a_missing_key_file_is_named() {
    let mut h = Harness::bare();
    let mut config = Config::default();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("certificate");
    let cert_path = h.path("cert.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write");
    config.extra = format!(
        "[server.tls]\ncert = {:?}\nkey = {:?}\n",
        cert_path.display().to_string(),
        h.path("missing.pem").display().to_string()
    );
    h.configure(&config);
    let out = run_with_timeout(h.command(), "stagecoach daemon with a missing key");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server.tls.key: cannot read a private key from"),
        "{stderr}"
    );
    assert!(stderr.contains("missing.pem"), "{stderr}");
}
