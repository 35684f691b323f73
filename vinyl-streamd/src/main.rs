//! vinyl-streamd: captures a turntable from ALSA and streams it as Ogg Opus over HTTP.
//! (Placeholder until the streaming work lands.)

fn main() {
    println!("vinyl-streamd {}", env!("CARGO_PKG_VERSION"));
}
