//! Optional source-client push to an Icecast server (HTTP PUT), so the
//! stream can reach more listeners than one Pi serves. Reconnects with
//! exponential backoff.

use crate::hub::Hub;
use crate::status::Status;
use anyhow::{Context, bail};
use base64::Engine;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;

/// Where to push: parsed from `http://host:port/mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port (default 8000).
    pub port: u16,
    /// Mount path, starting with '/'.
    pub mount: String,
}

impl Target {
    /// Parses a mount URL; `None` when it is not `http://host[:port]/mount`.
    pub fn parse(url: &str) -> Option<Target> {
        let rest = url.strip_prefix("http://")?;
        let (authority, path) = rest.split_at(rest.find('/')?);
        if path.len() < 2 || authority.contains('@') {
            return None;
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p.parse().ok()?,
            None => 8000,
        };
        (!host.is_empty()).then(|| Target {
            host: host.into(),
            port,
            mount: path.into(),
        })
    }

    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Settings of the push.
#[derive(Debug, Clone)]
pub struct Push {
    /// Server and mount.
    pub target: Target,
    /// Source user.
    pub user: String,
    /// Source password.
    pub password: String,
    /// Stream name and description sent as `ice-*` headers.
    pub name: String,
    /// See `name`.
    pub description: String,
    /// Longest pause between attempts.
    pub max_backoff: Duration,
    /// `Content-Type` of what is pushed (the hub's stream).
    pub content_type: &'static str,
}

/// Pushes for ever, reconnecting with exponential backoff.
pub async fn run(push: Push, hub: Arc<Hub>, status: Arc<Status>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let result = push_once(&push, &hub, &status).await;
        status.set_icecast(false);
        if let Err(e) = result {
            tracing::warn!(mount = %push.target.mount, "icecast push: {e:#}; retrying in {backoff:?}");
        }
        // A connection that lasted a while resets the backoff.
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_secs(1);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(push.max_backoff);
    }
}

async fn push_once(push: &Push, hub: &Hub, status: &Status) -> anyhow::Result<()> {
    let t = &push.target;
    let mut sock = tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect((t.host.as_str(), t.port)),
    )
    .await
    .context("connect timed out")?
    .context("connect")?;
    sock.set_nodelay(true)?;
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", push.user, push.password));
    let request = format!(
        "PUT {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\nContent-Type: {}\r\n\
         Ice-Name: {}\r\nIce-Description: {}\r\nIce-Public: 0\r\nUser-Agent: vinyl-streamd/{}\r\n\r\n",
        t.mount,
        t.host_header(),
        push.content_type,
        one_line(&push.name),
        one_line(&push.description),
        env!("CARGO_PKG_VERSION"),
    );
    sock.write_all(request.as_bytes()).await?;
    let status_line = read_response_head(&mut sock).await?;
    let code = status_line.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        bail!("server answered {status_line:?}");
    }
    tracing::info!(mount = %t.mount, host = %t.host, "icecast push connected");
    status.set_icecast(true);
    // Icecast keeps its own burst for its listeners: start with the next page.
    let mut sub = hub.subscribe();
    sock.write_all(&sub.headers).await?;
    loop {
        match sub.live.recv().await {
            Ok(page) => sock
                .write_all(&sub.rebase.apply(&page))
                .await
                .context("send")?,
            Err(RecvError::Lagged(n)) => bail!("server too slow, {n} pages behind"),
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

/// Header values must not smuggle in line breaks.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// Reads up to the blank line ending the response head; returns its first line.
async fn read_response_head(sock: &mut TcpStream) -> anyhow::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let read = async {
        while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
            if sock.read(&mut byte).await? == 0 {
                bail!("connection closed before a response");
            }
            head.push(byte[0]);
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .context("no response within 5 s")??;
    let text = String::from_utf8_lossy(&head);
    Ok(text.lines().next().unwrap_or("").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mount_urls() {
        let t = Target::parse("http://[::1]:8001/vinyl.opus").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.mount.as_str()),
            ("::1", 8001, "/vinyl.opus")
        );
        assert_eq!(t.host_header(), "[::1]:8001");
        let t = Target::parse("http://ice.example/live").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("ice.example", 8000));
        for bad in [
            "https://x/m",
            "http://x",
            "http://x/",
            "http://:80/m",
            "http://x:port/m",
            "http://u:p@x/m",
        ] {
            assert_eq!(Target::parse(bad), None, "{bad}");
        }
    }
}
