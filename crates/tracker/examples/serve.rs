//! `cargo run --release -p tracker --example serve -- [--http H:P] [--udp H:P] [--config F]`:
//! the same entry point `spate tracker` calls, for benchmarks and manual tests.

use std::net::SocketAddr;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut opts = tracker::ServeOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--http" => opts.http = Some(v.parse::<SocketAddr>().unwrap_or_else(|_| usage())),
            "--udp" => opts.udp = Some(v.parse::<SocketAddr>().unwrap_or_else(|_| usage())),
            "--config" => opts.config = Some(v.into()),
            _ => usage(),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(tracker::serve(opts)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn usage() -> ! {
    eprintln!("usage: serve [--http HOST:PORT] [--udp HOST:PORT] [--config FILE]");
    std::process::exit(2);
}
