//! End-to-end tests of the real vinyl-streamd binary with real clients
//! (ffmpeg, mpg123, raw sockets, Chromium) and a real Icecast server.

mod alsa;
mod browser;
mod common;
mod events;
mod icecast;
mod limits;
mod mp3;
mod players;
mod stream;
