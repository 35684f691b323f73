//! vinyl-streamd: captures a turntable from ALSA and streams it as Ogg Opus over HTTP.

use clap::Parser;
use vinyl_streamd::cli::Cli;
use vinyl_streamd::config::Config;

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        if !e.use_stderr() {
            e.exit(); // --help, --version
        }
        // One line, like configuration errors: clap's first line, no usage.
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("bad arguments");
        eprintln!("vinyl-streamd: {}", first.trim_start_matches("error: "));
        std::process::exit(2);
    });
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match Config::load(cli.config.as_deref(), cli.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vinyl-streamd: {e}");
            std::process::exit(2);
        }
    };
    if cli.print_config {
        print!("{}", toml::to_string(&config).expect("config serialises"));
        return;
    }
    if let Err(e) = vinyl_streamd::run(config) {
        eprintln!("vinyl-streamd: {e:#}");
        std::process::exit(1);
    }
}
