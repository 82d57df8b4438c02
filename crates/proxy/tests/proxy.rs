//! Runs the proxy in front of real `stagecoach-example` processes (and small in-test backends) on
//! loopback ports and talks HTTP to it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use proxy::{Backend, Proxy, Split, METRICS_CONTENT_TYPE};
use tokio::sync::Notify;

/// The child processes of a test; killed when it ends, passed or failed.
#[derive(Default)]
struct Children(Vec<Child>);

impl Children {
    /// Starts `stagecoach-example` and returns its base URL.
    fn example(&mut self, version: &str, instance: u32, args: &[&str]) -> String {
        let mut child = Command::new(example_service::built_binary())
            .args(["--listen", "127.0.0.1:0", "--version", version, "--instance"])
            .arg(instance.to_string())
            .args(args)
            .env_remove("EXAMPLE_FAIL_RATIO")
            .env_remove("EXAMPLE_LATENCY_MS")
            .env_remove("EXAMPLE_INSTANCE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start stagecoach-example");
        let stdout = child.stdout.take().unwrap();
        self.0.push(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let base = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("stagecoach-example did not start: first line {line:?}"))
            .to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        base
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A loopback URL where nothing listens (the port was free a moment ago).
fn dead_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

fn split(weights: &[(&str, u32)], backends: &[(&str, &str)]) -> Split {
    Split {
        weights: weights.iter().map(|(v, w)| (v.to_string(), *w)).collect(),
        backends: backends.iter().map(|(v, url)| Backend::new(*v, *url)).collect(),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[derive(Debug)]
struct Answer {
    status: u16,
    /// The `x-stagecoach-version` header ("" without one).
    version: String,
    body: String,
}

async fn get(http: &reqwest::Client, url: &str) -> Answer {
    let response = http.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let version = response
        .headers()
        .get("x-stagecoach-version")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.text().await.unwrap();
    Answer { status, version, body }
}

/// The metrics page of the proxy at `base`.
async fn metrics(http: &reqwest::Client, base: &str) -> String {
    let response = http.get(format!("{base}/__stagecoach/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], METRICS_CONTENT_TYPE);
    assert!(response.headers().get("x-stagecoach-version").is_none());
    response.text().await.unwrap()
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

fn count<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(item.to_string()).or_default() += 1;
    }
    counts
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

#[actix_web::test]
async fn canary_weights_are_exact_over_a_hundred_requests() {
    let mut children = Children::default();
    let v1 = children.example("1.0.0", 1, &[]);
    let v2 = children.example("2.0.0", 1, &[]);
    let the_split = split(&[("1.0.0", 90), ("2.0.0", 10)], &[("1.0.0", &v1), ("2.0.0", &v2)]);
    let (proxy, addr) = Proxy::start(any_port(), the_split.clone()).await.unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let base = format!("http://{addr}");
    let http = client();

    let mut answers = Vec::new();
    for _ in 0..100 {
        let answer = get(&http, &format!("{base}/")).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.body,
            format!("hello from example {} (instance 1)", answer.version)
        );
        answers.push(answer);
    }
    let by_version = count(answers.iter().map(|a| a.version.as_str()));
    assert_eq!(by_version, counts(&[("1.0.0", 90), ("2.0.0", 10)]));

    let text = metrics(&http, &base).await;
    assert_eq!(
        sample(&text, r#"stagecoach_proxy_requests_total{version="1.0.0",code="200"}"#),
        90.0
    );
    assert_eq!(
        sample(&text, r#"stagecoach_proxy_requests_total{version="2.0.0",code="200"}"#),
        10.0
    );
    assert_eq!(
        sample(
            &text,
            r#"stagecoach_proxy_request_duration_seconds_count{version="1.0.0"}"#
        ),
        90.0
    );
    assert_eq!(
        sample(
            &text,
            r#"stagecoach_proxy_request_duration_seconds_bucket{version="2.0.0",le="+Inf"}"#
        ),
        10.0
    );
    assert!(
        sample(
            &text,
            r#"stagecoach_proxy_request_duration_seconds_sum{version="2.0.0"}"#
        ) > 0.0
    );
    assert_eq!(sample(&text, r#"stagecoach_proxy_weight{version="1.0.0"}"#), 90.0);
    assert_eq!(sample(&text, r#"stagecoach_proxy_weight{version="2.0.0"}"#), 10.0);
    assert!(!text.contains("code=\"5"), "{text}");

    let stats = proxy.stats();
    assert_eq!(stats.keys().collect::<Vec<_>>(), ["1.0.0", "2.0.0"]);
    assert_eq!((stats["1.0.0"].requests, stats["1.0.0"].errors), (90, 0));
    assert_eq!((stats["2.0.0"].requests, stats["2.0.0"].errors), (10, 0));
    assert_eq!(stats["2.0.0"].latency.count, 10);
    assert_eq!(stats["2.0.0"].codes, BTreeMap::from([(200, 10)]));
    assert_eq!(proxy.metrics_text(), text);

    let served: Split = serde_json::from_str(&get(&http, &format!("{base}/__stagecoach/split")).await.body).unwrap();
    assert_eq!(served, the_split);
    assert_eq!(proxy.split(), the_split);

    proxy.stop().await;
    assert!(
        http.get(format!("{base}/")).send().await.is_err(),
        "still answering after stop"
    );
}

#[actix_web::test]
async fn instances_of_a_version_take_turns() {
    let mut children = Children::default();
    let first = children.example("1.0.0", 1, &[]);
    let second = children.example("1.0.0", 2, &[]);
    let (proxy, addr) = Proxy::start(
        any_port(),
        Split::all_to(
            "1.0.0",
            vec![Backend::new("1.0.0", &first), Backend::new("1.0.0", &second)],
        ),
    )
    .await
    .unwrap();
    let http = client();
    let mut bodies = Vec::new();
    for _ in 0..6 {
        let answer = get(&http, &format!("http://{addr}/")).await;
        assert_eq!((answer.status, answer.version.as_str()), (200, "1.0.0"));
        bodies.push(answer.body);
    }
    let one = "hello from example 1.0.0 (instance 1)";
    let two = "hello from example 1.0.0 (instance 2)";
    assert_eq!(bodies, [one, two, one, two, one, two]);
    proxy.stop().await;
}

#[actix_web::test]
async fn failures_of_the_canary_are_counted_as_its_errors() {
    let mut children = Children::default();
    let v1 = children.example("1.0.0", 1, &[]);
    let v2 = children.example("2.0.0", 1, &["--fail-ratio", "0.5"]);
    let (proxy, addr) = Proxy::start(
        any_port(),
        split(&[("1.0.0", 50), ("2.0.0", 50)], &[("1.0.0", &v1), ("2.0.0", &v2)]),
    )
    .await
    .unwrap();
    let base = format!("http://{addr}");
    let http = client();
    let mut answers = Vec::new();
    for _ in 0..100 {
        answers.push(get(&http, &format!("{base}/")).await);
    }
    let failed: Vec<&Answer> = answers.iter().filter(|a| a.status == 500).collect();
    assert_eq!(failed.len(), 25);
    assert!(failed
        .iter()
        .all(|a| a.version == "2.0.0" && a.body.starts_with("simulated failure")));

    let stats = proxy.stats();
    assert_eq!((stats["2.0.0"].requests, stats["2.0.0"].errors), (50, 25));
    assert_eq!((stats["1.0.0"].requests, stats["1.0.0"].errors), (50, 0));
    assert_eq!(stats["2.0.0"].codes, BTreeMap::from([(200, 25), (500, 25)]));

    let text = metrics(&http, &base).await;
    assert_eq!(
        sample(&text, r#"stagecoach_proxy_requests_total{version="2.0.0",code="500"}"#),
        25.0
    );
    assert_eq!(
        sample(&text, r#"stagecoach_proxy_requests_total{version="2.0.0",code="200"}"#),
        25.0
    );
    assert_eq!(
        sample(&text, r#"stagecoach_proxy_requests_total{version="1.0.0",code="200"}"#),
        50.0
    );
    assert!(!text.contains(r#"version="1.0.0",code="500""#), "{text}");
    proxy.stop().await;
}

#[actix_web::test]
async fn switching_the_split_mid_traffic_sends_every_later_request_to_the_new_version() {
    let mut children = Children::default();
    let v1 = children.example("1.0.0", 1, &[]);
    let v2 = children.example("2.0.0", 1, &[]);
    let canary = split(&[("1.0.0", 50), ("2.0.0", 50)], &[("1.0.0", &v1), ("2.0.0", &v2)]);
    let (proxy, addr) = Proxy::start(any_port(), canary.clone()).await.unwrap();
    let base = format!("http://{addr}");
    let http = client();

    // Background traffic that runs across the switch; each request notes whether it was sent after it.
    let switched = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (http, url, switched, done) = (http.clone(), format!("{base}/"), switched.clone(), done.clone());
        loops.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let after = switched.load(Ordering::SeqCst);
                let answer = get(&http, &url).await;
                assert_eq!(answer.status, 200, "{answer:?}");
                seen.push((after, answer.version));
            }
            seen
        }));
    }

    let mut before = Vec::new();
    for _ in 0..20 {
        before.push(get(&http, &format!("{base}/")).await.version);
    }
    let blue_green = Split {
        weights: BTreeMap::from([("2.0.0".to_string(), 100)]),
        ..canary.clone()
    };
    proxy.set_split(blue_green.clone()).unwrap();
    switched.store(true, Ordering::SeqCst);
    let mut after = Vec::new();
    for _ in 0..30 {
        after.push(get(&http, &format!("{base}/")).await.version);
    }
    done.store(true, Ordering::SeqCst);
    let mut background = Vec::new();
    for handle in loops {
        background.extend(handle.await.unwrap());
    }

    assert!(before.iter().any(|v| v == "1.0.0"), "{before:?}");
    assert!(after.iter().all(|v| v == "2.0.0"), "{after:?}");
    assert!(
        background.iter().any(|(after, _)| !after),
        "no background request before the switch"
    );
    let late: Vec<&String> = background.iter().filter(|(after, _)| *after).map(|(_, v)| v).collect();
    assert!(!late.is_empty(), "no background request after the switch");
    assert!(late.iter().all(|v| *v == "2.0.0"), "{late:?}");
    assert_eq!(proxy.split(), blue_green);

    // Invalid splits are refused and change nothing.
    let e = proxy
        .set_split(split(
            &[("1.0.0", 40), ("2.0.0", 50)],
            &[("1.0.0", &v1), ("2.0.0", &v2)],
        ))
        .unwrap_err();
    assert!(e.contains("add up to 90"), "{e}");
    let e = proxy
        .set_split(split(
            &[("2.0.0", 50), ("3.0.0", 50)],
            &[("1.0.0", &v1), ("2.0.0", &v2)],
        ))
        .unwrap_err();
    assert!(e.contains("version 3.0.0 has weight 50 but no backend"), "{e}");
    assert_eq!(proxy.split(), blue_green);
    for _ in 0..10 {
        assert_eq!(get(&http, &format!("{base}/")).await.version, "2.0.0");
    }
    let text = metrics(&http, &base).await;
    assert_eq!(sample(&text, r#"stagecoach_proxy_weight{version="1.0.0"}"#), 0.0);
    assert_eq!(sample(&text, r#"stagecoach_proxy_weight{version="2.0.0"}"#), 100.0);
    let stats = proxy.stats();
    let total: u64 = stats.values().map(|s| s.requests).sum();
    assert_eq!(total as usize, 20 + 30 + 10 + background.len());

    // So is an invalid split at start, and an address already in use.
    let e = Proxy::start(any_port(), split(&[("1.0.0", 100)], &[]))
        .await
        .unwrap_err();
    assert!(e.contains("no backend"), "{e}");
    let e = Proxy::start(addr, canary).await.unwrap_err();
    assert!(e.contains(&format!("cannot listen on {addr}")), "{e}");
    proxy.stop().await;
}

/// A plain tokio runtime (no actix system) is enough to run the proxy.
#[tokio::test]
async fn an_unreachable_backend_gives_502_counted_against_its_version() {
    let mut children = Children::default();
    let v1 = children.example("1.0.0", 1, &[]);
    let dead = dead_url();
    let (proxy, addr) = Proxy::start(
        any_port(),
        split(&[("1.0.0", 50), ("2.0.0", 50)], &[("1.0.0", &v1), ("2.0.0", &dead)]),
    )
    .await
    .unwrap();
    let base = format!("http://{addr}");
    let http = client();
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push(get(&http, &format!("{base}/")).await);
    }
    let bad: Vec<&Answer> = answers.iter().filter(|a| a.status == 502).collect();
    assert_eq!(bad.len(), 5, "{answers:?}");
    assert!(
        bad.iter().all(|a| a.version == "2.0.0" && a.body.contains(&dead)),
        "{bad:?}"
    );
    assert!(answers.iter().filter(|a| a.status == 200).all(|a| a.version == "1.0.0"));

    let stats = proxy.stats();
    assert_eq!((stats["2.0.0"].requests, stats["2.0.0"].errors), (5, 5));
    assert_eq!(stats["2.0.0"].codes, BTreeMap::from([(502, 5)]));
    assert_eq!((stats["1.0.0"].requests, stats["1.0.0"].errors), (5, 0));
    let text = metrics(&http, &base).await;
    assert_eq!(
        sample(&text, r#"stagecoach_proxy_requests_total{version="2.0.0",code="502"}"#),
        5.0
    );
    proxy.stop().await;
}

/// An in-test backend: `/mirror` answers with the request body, `/fixed` with ten bytes, `/gate` once released, and
/// everything else describes the request it got as JSON.
struct TestBackend {
    url: String,
    server: ServerHandle,
    state: web::Data<BackendState>,
}

#[derive(Default)]
struct BackendState {
    requests: AtomicUsize,
    arrived: Notify,
    release: Notify,
}

async fn backend_handler(request: HttpRequest, body: web::Bytes, state: web::Data<BackendState>) -> HttpResponse {
    state.requests.fetch_add(1, Ordering::SeqCst);
    match request.path() {
        "/mirror" => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .insert_header(("x-backend", "mirror"))
            .body(body),
        "/fixed" => HttpResponse::Ok().body("0123456789"),
        "/gate" => {
            state.arrived.notify_one();
            state.release.notified().await;
            HttpResponse::Ok().body("released")
        }
        _ => {
            let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (name, value) in request.headers().iter() {
                headers
                    .entry(name.to_string())
                    .or_default()
                    .push(value.to_str().unwrap().to_string());
            }
            HttpResponse::Created()
                .insert_header(("x-backend", "echo"))
                .json(serde_json::json!({
                    "method": request.method().as_str(),
                    "uri": request.uri().to_string(),
                    "headers": headers,
                    "body": String::from_utf8_lossy(&body),
                }))
        }
    }
}

impl TestBackend {
    fn start() -> TestBackend {
        let state = web::Data::new(BackendState::default());
        let data = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .default_service(web::to(backend_handler))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let url = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        TestBackend {
            url,
            server: handle,
            state,
        }
    }

    fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    async fn stop(self) {
        self.server.stop(false).await;
    }
}

#[actix_web::test]
async fn method_path_query_headers_and_body_are_forwarded() {
    let echo = TestBackend::start();
    let (proxy, addr) = Proxy::start(
        any_port(),
        Split::all_to("1.0.0", vec![Backend::new("1.0.0", &echo.url)]),
    )
    .await
    .unwrap();
    let base = format!("http://{addr}");
    let http = client();

    let response = http
        .post(format!("{base}/some/path?x=1&y=two%20words&x=3"))
        .header("x-custom", "abc")
        .header("x-custom", "def")
        .header("connection", "x-secret")
        .header("x-secret", "not for the backend")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("x-forwarded-for", "10.1.2.3")
        .header("content-type", "text/plain")
        .body("the request body")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(response.headers()["x-backend"], "echo");
    assert_eq!(response.headers()["x-stagecoach-version"], "1.0.0");
    let seen: serde_json::Value = response.json().await.unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["uri"], "/some/path?x=1&y=two%20words&x=3");
    assert_eq!(seen["body"], "the request body");
    let headers = &seen["headers"];
    assert_eq!(headers["x-custom"], serde_json::json!(["abc", "def"]));
    assert_eq!(headers["content-type"], serde_json::json!(["text/plain"]));
    assert_eq!(headers["content-length"], serde_json::json!(["16"]));
    assert_eq!(headers["host"], serde_json::json!([addr.to_string()]));
    assert_eq!(headers["x-forwarded-for"], serde_json::json!(["10.1.2.3, 127.0.0.1"]));
    assert_eq!(headers["x-forwarded-proto"], serde_json::json!(["http"]));
    for name in ["x-secret", "proxy-authorization"] {
        assert!(headers.get(name).is_none(), "{name} was forwarded: {headers}");
    }
    if let Some(connection) = headers.get("connection") {
        assert!(!connection.to_string().contains("x-secret"), "{connection}");
    }

    for method in [reqwest::Method::PUT, reqwest::Method::DELETE, reqwest::Method::PATCH] {
        let response = http
            .request(method.clone(), format!("{base}/items/7"))
            .send()
            .await
            .unwrap();
        let seen: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            (seen["method"].as_str(), seen["uri"].as_str()),
            (Some(method.as_str()), Some("/items/7"))
        );
        assert_eq!(seen["body"], "");
    }

    // A large body goes there and back (the answer streamed through).
    let big: Vec<u8> = (0..5 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let response = http
        .post(format!("{base}/mirror"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-length"], big.len().to_string().as_str());
    assert_eq!(response.headers()["x-backend"], "mirror");
    assert_eq!(response.bytes().await.unwrap(), big);

    // HEAD keeps the length of what GET would send, without a body.
    let response = http.head(format!("{base}/fixed")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-length"], "10");
    assert_eq!(response.headers()["x-stagecoach-version"], "1.0.0");
    assert_eq!(response.bytes().await.unwrap().len(), 0);

    // The proxy's own paths are never forwarded.
    let forwarded = echo.requests();
    let answer = get(&http, &format!("{base}/__stagecoach/nothing?x")).await;
    assert_eq!(answer.status, 404);
    let answer = get(&http, &format!("{base}/__stagecoach")).await;
    assert_eq!(answer.status, 404);
    let response = http.post(format!("{base}/__stagecoach/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let response = http.get(format!("{base}/%5F_stagecoach/split")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.json::<Split>().await.unwrap(), proxy.split());
    assert_eq!(echo.requests(), forwarded);

    // More than 10 MiB is refused before anything is forwarded.
    let status_line = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let length = 10 * 1024 * 1024 + 1;
        write!(
            stream,
            "POST /mirror HTTP/1.1\r\nhost: proxy\r\ncontent-length: {length}\r\n\r\n"
        )
        .unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).unwrap();
        String::from_utf8_lossy(&head).into_owned()
    })
    .await
    .unwrap();
    assert_eq!(status_line, "HTTP/1.1 413");
    assert_eq!(echo.requests(), forwarded);
    assert_eq!(proxy.stats()["1.0.0"].requests as usize, forwarded);

    proxy.stop().await;
    echo.stop().await;
}

#[actix_web::test]
async fn a_request_in_flight_finishes_on_its_backend_after_a_switch() {
    let old = TestBackend::start();
    let new = TestBackend::start();
    let backends = vec![Backend::new("1.0.0", &old.url), Backend::new("2.0.0", &new.url)];
    let (proxy, addr) = Proxy::start(any_port(), Split::all_to("1.0.0", backends.clone()))
        .await
        .unwrap();
    let http = client();

    let in_flight = tokio::spawn({
        let (http, url) = (http.clone(), format!("http://{addr}/gate"));
        async move { get(&http, &url).await }
    });
    old.state.arrived.notified().await;
    proxy.set_split(Split::all_to("2.0.0", backends)).unwrap();
    let answer = get(&http, &format!("http://{addr}/after")).await;
    assert_eq!((answer.status, answer.version.as_str()), (201, "2.0.0"));
    assert_eq!(new.requests(), 1);
    assert!(!in_flight.is_finished());

    old.state.release.notify_one();
    let answer = in_flight.await.unwrap();
    assert_eq!(
        (answer.status, answer.version.as_str(), answer.body.as_str()),
        (200, "1.0.0", "released")
    );
    assert_eq!(old.requests(), 1);
    let stats = proxy.stats();
    assert_eq!((stats["1.0.0"].requests, stats["2.0.0"].requests), (1, 1));

    proxy.stop().await;
    old.stop().await;
    new.stop().await;
}
