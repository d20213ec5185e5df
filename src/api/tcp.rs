//! The API over TCP, off by default (`[api] listen`): with mutual TLS (rustls; clients must
//! present a certificate from `tls_client_ca`), or plain only when the config says
//! `insecure = true`, warned at every start. Requests are served as on the Unix socket, and
//! logged with the client's address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::file::Api;

/// A TLS handshake must be done within this, or the connection is dropped.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The client of a TCP connection, for the request log.
#[derive(Debug, Clone, Copy)]
pub struct TcpPeer(pub SocketAddr);

/// The TLS setup of `api`: the server's certificate, and client certificates required.
fn acceptor(api: &Api) -> Result<Option<TlsAcceptor>, String> {
    let (Some(cert), Some(key), Some(ca)) = (&api.tls_cert, &api.tls_key, &api.tls_client_ca)
    else {
        return Ok(None);
    };
    let e = |e: crate::image::tls::Error| e.to_string();
    let chain = crate::image::tls::certificates(cert).map_err(e)?;
    let key = crate::image::tls::private_key(key).map_err(e)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in crate::image::tls::certificates(ca).map_err(e)? {
        roots
            .add(c)
            .map_err(|err| format!("{}: {err}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|err| format!("{}: {err}", ca.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|err| format!("{}: {err}", cert.display()))?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// Binds every `[api] listen` address and serves `router` on them until `stop`.
pub async fn serve(
    api: &Api,
    router: Router,
    tasks: &tokio_util::task::TaskTracker,
    stop: CancellationToken,
) -> Result<(), String> {
    if api.listen.is_empty() {
        return Ok(());
    }
    let tls = acceptor(api)?;
    if tls.is_none() {
        // The config refuses this without `insecure = true`.
        tracing::warn!(
            addresses = ?api.listen,
            "API on plain TCP (insecure = true): whoever can reach it can run containers as root"
        );
    }
    for addr in &api.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|err| format!("[api] listen {addr}: {err}"))?;
        tracing::info!(%addr, tls = tls.is_some(), "API listening on TCP");
        tasks.spawn(accept_loop(
            listener,
            tls.clone(),
            router.clone(),
            tasks.clone(),
            stop.clone(),
        ));
    }
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    tasks: tokio_util::task::TaskTracker,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => Some(accepted),
            () = stop.cancelled() => None,
        };
        let (stream, peer) = match accepted {
            None => return,
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                tracing::warn!("API accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service =
            TowerToHyperService::new(router.clone().layer(axum::Extension(TcpPeer(peer))));
        let tls = tls.clone();
        tasks.spawn(async move {
            let http = hyper::server::conn::http1::Builder::new();
            let served = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            http.serve_connection(TokioIo::new(s), service)
                                .with_upgrades()
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(%peer, "API TLS handshake refused: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::warn!(%peer, "API TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => {
                    http.serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, "API connection: {e}");
            }
        });
    }
}
