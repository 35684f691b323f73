//! The web page's own feeds: server-sent events with live levels and
//! status, and QR codes of the stream URLs for phones. `http` serves them.

use crate::level::Reading;
use crate::status::Status;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
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

/// The body of `GET /events` (`text/event-stream`): a `levels` event every
/// [`LEVELS_EVERY`] with per-channel peak and RMS over every frame since
/// the previous event (so no clip is missed), and a `status` event
/// (`status_json()`) at once and then every second. Never ends by itself.
pub fn events(
    status: &Arc<Status>,
    mut status_json: impl FnMut() -> String + Send + 'static,
) -> UnsyncBoxBody<Bytes, Infallible> {
    let status = status.clone();
    let mut cursor = status.meter.cursor();
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
            out.push_str(&format!("event: status\ndata: {}\n\n", status_json()));
            until_status = STATUS_EVERY;
        }
        until_status -= 1;
        let (reading, next) = status.meter.since(cursor);
        cursor = next;
        out.push_str(&format!(
            "event: levels\ndata: {}\n\n",
            levels_json(&reading)
        ));
        Ok::<_, Infallible>(Frame::data(Bytes::from(out)))
    });
    StreamBody::new(events).boxed_unsync()
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

/// The QR code (SVG) for `GET /qr.svg?path=/stream.opus`: the absolute
/// URL of a stream (one of `streams`) or of the page (`path=/`), as the
/// client reached this host (its `Host` header). Err: why that is a 400.
pub fn qr_svg(
    query: Option<&str>,
    host: Option<&str>,
    streams: &[&str],
) -> Result<String, &'static str> {
    let path = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("path="))
        .unwrap_or("")
        .replace("%2F", "/")
        .replace("%2f", "/");
    if path != "/" && !streams.contains(&path.as_str()) {
        return Err("unknown path");
    }
    let host = host
        .filter(|h| valid_host(h))
        .ok_or("missing or malformed Host header")?;
    let url = format!("http://{host}{path}");
    let code = qrcode::QrCode::with_error_correction_level(&url, qrcode::EcLevel::M)
        .map_err(|_| "URL too long")?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .dark_color(qrcode::render::svg::Color("#000"))
        .light_color(qrcode::render::svg::Color("#fff"))
        .build())
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
    fn qr_only_for_the_page_and_known_streams() {
        let streams = ["/stream.opus", "/stream.flac"];
        let qr = |q: &str, host| qr_svg(Some(q), host, &streams);
        assert!(qr("path=/stream.flac", Some("vinyl:8000")).is_ok_and(|s| s.contains("<svg")));
        assert!(qr("x=1&path=%2F", Some("vinyl")).is_ok());
        assert_ne!(qr("path=/", Some("a")), qr("path=/", Some("b")));
        assert_eq!(qr("path=/stream.mp3", Some("vinyl")), Err("unknown path"));
        assert_eq!(qr("path=/status", Some("vinyl")), Err("unknown path"));
        assert_eq!(qr_svg(None, Some("vinyl"), &streams), Err("unknown path"));
        let bad_host = Err("missing or malformed Host header");
        assert_eq!(qr("path=/stream.opus", None), bad_host);
        assert_eq!(qr("path=/stream.opus", Some("a@b")), bad_host);
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
