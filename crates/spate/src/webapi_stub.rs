//! TEMPORARY stand-in for crate `webapi` (branch h-webapi) with exactly its public API, so
//! the daemon compiles before that crate is merged. Removed when main has `webapi`.
//! `serve` here answers nothing: it only waits for its shutdown future.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;

#[derive(Debug, Clone)]
pub struct RpcConfig {
    pub username: Option<String>,
    pub password_hash: Option<String>,
    pub host_whitelist: Vec<String>,
    pub host_whitelist_enabled: bool,
    pub max_body: usize,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            username: None,
            password_hash: None,
            host_whitelist: Vec::new(),
            host_whitelist_enabled: true,
            max_body: 10 << 20,
        }
    }
}

pub fn hash_password(plain: &str) -> String {
    // Not a real password hash: the stand-in only has to round-trip.
    format!("stub:{}", hex::encode(plain.as_bytes()))
}

pub fn verify_password(plain: &str, hash: &str) -> bool {
    hash_password(plain) == hash
}

pub fn check_bind(addr: SocketAddr, cfg: &RpcConfig) -> Result<(), String> {
    if !addr.ip().is_loopback() && cfg.password_hash.is_none() {
        return Err(format!(
            "refusing to serve the RPC on {addr}, which is not a loopback address, without a password"
        ));
    }
    Ok(())
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    session: session::Session,
    cfg: RpcConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _ = (listener, session, cfg);
    shutdown.await;
    Ok(())
}
