//! Headless Chromium opens the page at desktop and phone sizes: the meters
//! follow the audio, levels arrive 25 times a second, the QR code decodes
//! (zbarimg), the copy button copies, and the chosen stream plays.
//! Screenshots are kept under `$CARGO_TARGET_DIR/test-artifacts/`.

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
        self.evaluate(expr, false)
    }

    /// Evaluates `expr` and waits for the promise it gives.
    fn eval_await(&mut self, expr: &str) -> Value {
        self.evaluate(expr, true)
    }

    fn evaluate(&mut self, expr: &str, wait: bool) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "userGesture": true, "awaitPromise": wait }),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// A PNG of `clip` (CSS pixels of the page), or of the viewport.
    fn screenshot(&mut self, clip: Option<Value>) -> Vec<u8> {
        let mut params = json!({ "format": "png", "captureBeyondViewport": clip.is_some() });
        if let Some(clip) = clip {
            params["clip"] = clip;
        }
        let shot = self.call("Page.captureScreenshot", params);
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        png
    }

    /// A PNG of the element `selector`, at scale 1 (CSS pixels).
    fn element_png(&mut self, selector: &str) -> Vec<u8> {
        let r = self.eval(&format!(
            "(() => {{ const r = document.querySelector('{selector}').getBoundingClientRect(); \
             return {{ x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height, scale: 1 }}; }})()"
        ));
        self.screenshot(Some(r))
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

/// Where screenshots are kept: `$CARGO_TARGET_DIR/test-artifacts/`.
fn artifact(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A looped-file source that moves the meters: 1 kHz stereo, 1 s at
/// -6 dBFS then 1 s at -30 dBFS with one full-scale sample (a clip).
fn moving_tone(path: &std::path::Path) {
    write_wav(path, 96_000, |i| {
        let db = if i < 48_000 { -6.0 } else { -30.0 };
        let s =
            (i as f64 * std::f64::consts::TAU * 1000.0 / 48_000.0).sin() * 10f64.powf(db / 20.0);
        let s = if i == 72_003 { 1.0 } else { s };
        [s, s]
    });
}

/// What zbarimg reads in a PNG.
fn zbar(png: &[u8], name: &str) -> String {
    let file = artifact(name);
    std::fs::write(&file, png).unwrap();
    let out = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(&file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn chromium_page_at_desktop_and_phone_sizes() {
    if !have("chromium") || !have("zbarimg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("moving.wav");
    moving_tone(&wav);
    #[rustfmt::skip]
    let d = Daemon::start(&[
        "--source", "file", "--path", wav.to_str().unwrap(),
        "--name", "Test Turntable", "--description", "Side A, track 1", "--flac", "true",
    ]);
    let (_chromium, mut page) = start_chromium();
    page.call("Page.enable", json!({}));
    // The window of a person at the screen has the focus (the Clipboard API needs it).
    page.call(
        "Emulation.setFocusEmulationEnabled",
        json!({ "enabled": true }),
    );
    // As a person who allowed this page the clipboard (to read it back).
    page.call(
        "Browser.grantPermissions",
        json!({ "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"], "origin": d.url("") }),
    );
    for (size, width, height, scale, mobile) in [
        ("desktop", 1280, 800, 1.0, false),
        ("phone", 390, 844, 3.0, true),
    ] {
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile }),
        );
        page.call("Page.navigate", json!({ "url": d.url("/") }));
        assert!(
            wait_until(Duration::from_secs(10), || page
                .eval("document.getElementById('state')?.className")
                == "playing"),
            "{size}: page never showed the status"
        );
        assert_eq!(page.eval("document.title"), "Test Turntable");
        assert_eq!(
            page.eval("document.getElementById('description').textContent"),
            "Side A, track 1"
        );
        // The page lays out within the screen's width.
        let scroll_width = page.eval("document.documentElement.scrollWidth");
        assert!(
            scroll_width.as_f64().unwrap() <= f64::from(width),
            "{size}: {scroll_width} px wide"
        );

        // Levels events, counted by the page itself over 2 s.
        let rate = page.eval_await(
            "new Promise((done) => { const n = levelEvents, t = performance.now(); \
             setTimeout(() => done((levelEvents - n) * 1000 / (performance.now() - t)), 2000); })",
        );
        let rate = rate.as_f64().unwrap();
        assert!(rate >= 20.0, "{size}: {rate} levels events a second");

        // The meters follow the file: -6 dBFS peaks, -9 dBFS RMS, then
        // -30 dBFS, and the one full-scale sample lights CLIP.
        let (mut peaks, mut rms, mut clip) = (Vec::new(), Vec::new(), false);
        for _ in 0..30 {
            let v = page.eval(
                "(() => { const m = document.querySelector('.meter'); \
                 return [parseFloat(m.getAttribute('aria-valuenow')), parseFloat(m.dataset.rms), \
                 document.getElementById('clip').classList.contains('lit')]; })()",
            );
            peaks.push(v[0].as_f64().unwrap());
            rms.push(v[1].as_f64().unwrap());
            clip |= v[2] == true;
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            peaks.iter().any(|p| (p + 6.0).abs() < 1.0),
            "{size}: peaks {peaks:?}"
        );
        assert!(
            rms.iter().any(|r| (r + 9.0).abs() < 1.0),
            "{size}: RMS {rms:?}"
        );
        assert!(rms.iter().any(|&r| r < -25.0), "{size}: RMS {rms:?}");
        assert!(clip, "{size}: CLIP never lit");

        // Stream links: this page, Opus, FLAC and MP3, as the browser reached us.
        let links =
            page.eval("[...document.querySelectorAll('#streams code')].map((c) => c.textContent)");
        let origin = d.url("");
        assert_eq!(
            links,
            json!([
                format!("{origin}/"),
                format!("{origin}/stream.opus"),
                format!("{origin}/stream.flac"),
                format!("{origin}/stream.mp3")
            ])
        );
        // The QR code is an SVG that zbarimg reads back: first the page's,
        // then, on its QR button, the Opus stream's.
        let qr_ready = |page: &mut Page, path: &str| {
            wait_until(Duration::from_secs(5), || {
                page.eval(&format!(
                    "(() => {{ const q = document.getElementById('qr'); \
                     return q.complete && q.naturalWidth > 0 && q.src.endsWith('path={path}'); }})()"
                )) == true
            })
        };
        assert!(qr_ready(&mut page, "/"), "{size}: no QR image");
        let png = page.element_png("#qr");
        assert_eq!(zbar(&png, &format!("qr-{size}.png")), format!("{origin}/"));
        page.eval("document.querySelectorAll('#streams button.qr')[1].click()");
        assert!(qr_ready(&mut page, "/stream.opus"));
        let png = page.element_png("#qr");
        assert_eq!(
            zbar(&png, &format!("qr-{size}.png")),
            format!("{origin}/stream.opus")
        );

        // The copy button copies the Opus link.
        page.eval("document.querySelectorAll('#streams button.copy')[1].click()");
        assert!(
            wait_until(Duration::from_secs(3), || page.eval(
                "document.querySelectorAll('#streams button.copy')[1].textContent"
            ) == "Copied"),
            "{size}: copy failed: {}",
            page.eval("document.querySelectorAll('#streams button.copy')[1].textContent")
        );
        let copied =
            page.eval_await("navigator.clipboard.readText().catch((e) => 'unreadable: ' + e)");
        assert_eq!(copied, format!("{origin}/stream.opus"));

        // Chromium plays Ogg Opus: the player picks it, and it plays.
        page.eval("document.getElementById('play').click()");
        let mut time = 0.0;
        let advanced = wait_until(Duration::from_secs(20), || {
            time = page
                .eval("document.getElementById('audio').currentTime")
                .as_f64()
                .unwrap_or(0.0);
            time > 2.0
        });
        let error = page.eval("String(document.getElementById('audio').error && document.getElementById('audio').error.message)");
        assert!(
            advanced,
            "{size}: audio time stuck at {time} (error: {error})"
        );
        let src = page.eval("document.getElementById('audio').src");
        assert!(src.as_str().unwrap().contains("/stream.opus?"), "{src}");
        let status = d.status();
        assert!(status["listeners"].as_u64().unwrap() >= 1);
        assert_eq!(status["streams"][1]["path"], "/stream.flac");
        assert_eq!(status["streams"][1]["urls"][0], d.url("/stream.flac"));

        let metrics = page.call("Page.getLayoutMetrics", json!({}));
        let content = &metrics["cssContentSize"];
        let png = page.screenshot(Some(json!({
            "x": 0, "y": 0, "width": content["width"], "height": content["height"], "scale": 1
        })));
        let out = artifact(&format!("page-{size}.png"));
        std::fs::write(&out, png).unwrap();
        eprintln!("screenshot: {}", out.display());
        page.eval("document.getElementById('play').click()");
    }
}
