//! A static HTTP/1.1 server on a loopback port for tests: `GET` and `HEAD`
//! of the files in a shared map (changeable while it serves), `Range:
//! bytes=N-` answered with 206, 404 for the rest, one request per
//! connection. Enough to stand in for a mirror or a
//! release directory; tests that need a real server use nginx.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// Path (`/dir/file`) → body.
pub type Files = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// Serves `files` from a thread that lives as long as the test process;
/// returns `http://127.0.0.1:PORT`.
pub fn serve(files: Files) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Ok(read_side) = stream.try_clone() else {
                continue;
            };
            let mut reader = BufReader::new(read_side);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // The headers: only an open-ended range is understood.
            let mut from = None;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("range")
                {
                    from = value
                        .trim()
                        .strip_prefix("bytes=")
                        .and_then(|v| v.strip_suffix('-'))
                        .and_then(|n| n.parse::<usize>().ok());
                }
                line.clear();
            }
            let mut words = request.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
            let body = files.lock().map(|f| f.get(path).cloned()).unwrap_or(None);
            let response = match body {
                Some(mut body) => {
                    let status = match from {
                        Some(n) if n < body.len() => {
                            body.drain(..n);
                            "206 Partial Content"
                        }
                        _ => "200 OK",
                    };
                    let mut response = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    if method != "HEAD" {
                        response.extend_from_slice(&body);
                    }
                    response
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&response);
        }
    });
    format!("http://127.0.0.1:{port}")
}
