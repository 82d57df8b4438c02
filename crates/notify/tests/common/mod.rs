//! A tiny HTTP/1.1 receiver on 127.0.0.1 that records every request in order, and notification builders.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use notify::DeliveryContext;
use workflow::record::NotificationEntry;
use workflow::types::NotificationKind;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status the receiver answered.
    pub status: u16,
    /// When the request had been read.
    pub received: std::time::Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Answers 500 to the first `fail_first` requests, then 200.
pub struct Receiver {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    pub fn start(fail_first: usize) -> Receiver {
        Receiver::start_failing_with(fail_first, 500)
    }

    /// Answers `status` to the first `fail_first` requests, then 200.
    pub fn start_failing_with(fail_first: usize, fail_status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = AtomicUsize::new(0);
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let status = if n < fail_first { fail_status } else { 200 };
                if let Some(request) = handle(stream, status) {
                    log.lock().unwrap().push(request);
                }
            }
        });
        Receiver { url, requests }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn handle(stream: TcpStream, status: u16) -> Option<Request> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    stream.flush().ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
        status,
        received: std::time::Instant::now(),
    })
}

/// A server that accepts connections and never answers. Keeps the listener alive as long as the returned value.
pub fn silent_url() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    (url, handle)
}

/// An address on which nothing listens.
pub fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hook")
}

pub fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 4, 10, minute, 5).unwrap()
}

pub fn entry(id: &str, kind: NotificationKind, minute: u32) -> NotificationEntry {
    NotificationEntry {
        id: id.to_string(),
        kind,
        at: at(minute),
        subject: format!("Subject of {id}"),
        body: format!("Body of {id}.\n\n- line one\n- line two\n"),
        delivered: false,
        error: None,
        simulated: false,
    }
}

pub fn ctx() -> DeliveryContext {
    DeliveryContext {
        deployment_id: "d-000042".to_string(),
        service: "web".to_string(),
        version: Some("2.4.1".to_string()),
    }
}

/// Files in `dir`, sorted by name.
pub fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}
