//! End-to-end tests of the real vinyl-streamd binary with real clients
//! (ffmpeg, raw sockets, Chromium) and a real Icecast server.

mod browser;
mod common;
mod icecast;
mod stream;
