//! End-to-end tests of the real vinyl-streamd binary with real clients
//! (ffmpeg, raw sockets, Chromium) and a real Icecast server.

mod alsa;
mod browser;
mod common;
mod events;
mod icecast;
mod limits;
mod players;
mod stream;
