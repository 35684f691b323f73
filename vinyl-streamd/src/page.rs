//! The web page's own feeds: server-sent events with live levels and
//! status, and QR codes of the stream URLs for phones.

use crate::http::{App, Body, full, snapshot, streams};
use crate::level::Reading;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::MissedTickBehavior;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::IntervalStream;

/// How often a `levels` event is sent (25 a second).
pub const LEVELS_EVERY: Duration = Duration::from_millis(40);
/// A `status` event goes with every this many `levels` events (once a second).
const STATUS_EVERY: u32 = 25;

/// `GET /events`: `text/event-stream` with a `levels` event every
/// [`LEVELS_EVERY`] (per-channel peak and RMS over every frame since the
/// previous event, so no clip is missed) and a `status` event (as `/status`)
/// at once and then every second. It is no stream listener: it takes no
/// listener slot and ends with the daemon.
pub fn events(app: &Arc<App>, head: bool) -> Response<Body> {
    let body = if head {
        Empty::new().boxed_unsync()
    } else {
        let app = app.clone();
        let mut cursor = app.status.meter.cursor();
        let (mut first, mut until_status) = (true, 0);
        let mut interval = tokio::time::interval(LEVELS_EVERY);
        // A client that reads late gets the next event, not a burst.
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let events = IntervalStream::new(interval).map(move |_| {
            let mut out = String::new();
            if std::mem::take(&mut first) {
                // EventSource reconnects after 1 s when the daemon restarts.
                out.push_str("retry: 1000\n\n");
            }
            if until_status == 0 {
                let json = serde_json::to_string(&snapshot(&app)).expect("status serialises");
                out.push_str(&format!("event: status\ndata: {json}\n\n"));
                until_status = STATUS_EVERY;
            }
            until_status -= 1;
            let (reading, next) = app.status.meter.since(cursor);
            cursor = next;
            out.push_str(&format!(
                "event: levels\ndata: {}\n\n",
                levels_json(&reading)
            ));
            Ok::<_, Infallible>(Frame::data(Bytes::from(out)))
        });
        StreamBody::new(events).boxed_unsync()
    };
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r
}

/// `{"peak_dbfs":[l,r],"rms_dbfs":[l,r],"frames":n}`, levels to 0.01 dB;
/// `frames` 0 means no audio frame came since the previous event.
fn levels_json(r: &Reading) -> String {
    // (+ 0.0 turns -0.0 into 0.0)
    let round = |v: [f32; 2]| v.map(|x| (f64::from(x) * 100.0).round() / 100.0 + 0.0);
    serde_json::json!({
        "peak_dbfs": round(r.peak_db),
        "rms_dbfs": round(r.rms_db),
        "frames": r.frames,
    })
    .to_string()
}

/// `GET /qr.svg?path=/stream.opus`: a QR code (SVG) of the absolute URL of
/// a stream (or of the page, `path=/`) as the client reached this host.
/// 400 for any other path and for a missing or malformed `Host`.
pub fn qr_svg<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let path = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("path="))
        .unwrap_or("")
        .replace("%2F", "/")
        .replace("%2f", "/");
    if path != "/" && !streams(app).iter().any(|(p, _)| *p == path) {
        return full(StatusCode::BAD_REQUEST, "text/plain", "unknown path\n");
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let Some(host) = host.filter(|h| valid_host(h)) else {
        return full(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "missing or malformed Host header\n",
        );
    };
    let url = format!("http://{host}{path}");
    match qrcode::QrCode::with_error_correction_level(&url, qrcode::EcLevel::M) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(200, 200)
                .dark_color(qrcode::render::svg::Color("#000"))
                .light_color(qrcode::render::svg::Color("#fff"))
                .build();
            full(StatusCode::OK, "image/svg+xml", svg)
        }
        Err(_) => full(StatusCode::BAD_REQUEST, "text/plain", "URL too long\n"),
    }
}

/// A `Host` header fit to put in a URL: a name, IPv4 or bracketed IPv6
/// address, optionally with a port; nothing else (no user info, no path).
fn valid_host(h: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
    !h.is_empty()
        && h.len() <= 255
        && h.chars().all(allowed)
        && h.parse::<hyper::http::uri::Authority>()
            .is_ok_and(|a| !a.host().is_empty())
        // a port, if any, is a number up to 65535
        && h.rsplit(']')
            .next()
            .and_then(|tail| tail.split_once(':'))
            .is_none_or(|(_, port)| port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_headers() {
        for ok in [
            "vinyl.local",
            "vinyl.local:8000",
            "192.168.1.5:8000",
            "[::1]:8000",
            "[fe80::1]",
        ] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "x@evil",
            "evil/x",
            "host:",
            "[::1",
            "h:99999",
            "\u{e9}t\u{e9}",
        ] {
            assert!(!valid_host(bad), "{bad}");
        }
    }

    #[test]
    fn levels_json_rounds_and_counts() {
        let r = Reading {
            peak_db: [-6.0213, -0.004],
            rms_db: [-9.031, -120.0],
            frames: 2,
        };
        assert_eq!(
            levels_json(&r),
            r#"{"frames":2,"peak_dbfs":[-6.02,0.0],"rms_dbfs":[-9.03,-120.0]}"#
        );
    }
}
