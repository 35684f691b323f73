//! Headless Chromium opens the page, presses play, and the `<audio>`
//! element's time advances. A screenshot is kept under target/.

use crate::common::*;
use base64::Engine;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

struct Chromium {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DevTools Protocol session on one page target.
struct Page {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Page {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws.send(Message::text(msg.to_string())).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let Message::Text(text) = self.ws.read().expect("devtools read") else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
        panic!("no answer to {method}");
    }

    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "userGesture": true, "awaitPromise": false }),
        );
        r["result"]["value"].clone()
    }
}

fn start_chromium() -> (Chromium, Page) {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--autoplay-policy=no-user-gesture-required",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=420,720",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    // Chromium prints "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID".
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port: u16 = lines
        .by_ref()
        .take(200)
        .map_while(Result::ok)
        .find_map(|l| {
            let rest = l.split("ws://127.0.0.1:").nth(1)?;
            rest.split('/').next()?.parse().ok()
        })
        .expect("chromium did not announce DevTools");
    std::thread::spawn(move || lines.for_each(drop));
    let chromium = Chromium {
        child,
        _profile: profile,
    };
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut ws_url = None;
    wait_until(Duration::from_secs(10), || {
        let (_, _, body) = http_get(addr, "/json/list");
        let targets: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        ws_url = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(String::from));
        ws_url.is_some()
    });
    let (ws, _) = tungstenite::connect(ws_url.expect("no page target")).unwrap();
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    }
    (chromium, Page { ws, next_id: 0 })
}

#[test]
fn chromium_plays_the_stream_from_the_page() {
    if !have("chromium") {
        return;
    }
    let d = Daemon::start(&["--source", "tone", "--name", "Test Turntable"]);
    let (_chromium, mut page) = start_chromium();
    page.call("Page.enable", json!({}));
    page.call("Page.navigate", json!({ "url": d.url("/") }));
    assert!(
        wait_until(Duration::from_secs(10), || page
            .eval("document.getElementById('state').textContent")
            == "playing"),
        "page never showed the status"
    );
    page.eval("document.getElementById('play').click()");
    let mut time = 0.0;
    let advanced = wait_until(Duration::from_secs(20), || {
        time = page
            .eval("document.getElementById('audio').currentTime")
            .as_f64()
            .unwrap_or(0.0);
        time > 2.0
    });
    assert_eq!(page.eval("document.title"), "Test Turntable");
    let error = page.eval("String(document.getElementById('audio').error && document.getElementById('audio').error.message)");
    assert!(advanced, "audio time stuck at {time} (error: {error})");
    assert!(page.eval("document.getElementById('audio').paused") == false);
    assert!(d.status()["listeners"].as_u64().unwrap() >= 1);
    // The meter follows the -6 dBFS tone.
    let width = page
        .eval("parseFloat(document.getElementById('peak').style.width)")
        .as_f64()
        .unwrap();
    assert!((85.0..95.0).contains(&width), "peak meter at {width}%");

    let shot = page.call("Page.captureScreenshot", json!({ "format": "png" }));
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("vinyl-streamd-page.png");
    std::fs::write(&out, png).unwrap();
    eprintln!("screenshot: {}", out.display());
}
