//! The API client rctl uses: HTTP/1.1 over the daemon's Unix socket.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::types::ErrorBody;

/// A request that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The daemon is not listening (or a TLS handshake with it failed).
    #[error("cannot reach rcd at {at}: {source} (is the daemon running? set --socket or RCD_SOCKET, or --host)")]
    Connect {
        /// The socket path or `tcp://host:port`.
        at: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("request to rcd failed: {0}")]
    Http(String),
    /// The daemon answered with an error.
    #[error("{message}")]
    Status {
        /// The HTTP status.
        code: StatusCode,
        /// The daemon's message.
        message: String,
    },
    /// The answer could not be decoded.
    #[error("unexpected answer from rcd: {0}")]
    Decode(String),
}

/// A client bound to the daemon's socket, or to a TCP listener of it.
#[derive(Debug, Clone)]
pub struct Client {
    transport: Transport,
}

#[derive(Debug, Clone)]
enum Transport {
    Unix(PathBuf),
    Tcp {
        /// `host:port`.
        addr: String,
        /// None: plain TCP (a daemon with `insecure = true`).
        tls: Option<Arc<rustls::ClientConfig>>,
    },
}

/// What the connection to the daemon runs over.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

impl Client {
    /// A client for the daemon at `socket`.
    pub fn new(socket: &Path) -> Self {
        Client {
            transport: Transport::Unix(socket.to_path_buf()),
        }
    }

    /// A client for a daemon's TCP listener at `addr` (`host:port`), over TLS with `tls` (a
    /// config with the CA and this client's certificate), or plain without.
    pub fn tcp(addr: &str, tls: Option<rustls::ClientConfig>) -> Self {
        Client {
            transport: Transport::Tcp {
                addr: addr.to_string(),
                tls: tls.map(Arc::new),
            },
        }
    }

    async fn connect(&self) -> Result<Box<dyn Io>, Error> {
        match &self.transport {
            Transport::Unix(socket) => tokio::net::UnixStream::connect(socket)
                .await
                .map(|s| Box::new(s) as Box<dyn Io>)
                .map_err(|source| Error::Connect {
                    at: socket.display().to_string(),
                    source,
                }),
            Transport::Tcp { addr, tls } => {
                let at = format!("tcp://{addr}");
                let fail = |source| Error::Connect {
                    at: at.clone(),
                    source,
                };
                let stream = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(fail)?;
                let Some(config) = tls else {
                    return Ok(Box::new(stream));
                };
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| fail(std::io::Error::other(e)))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, stream)
                    .await
                    .map_err(fail)?;
                Ok(Box::new(tls))
            }
        }
    }

    async fn send(&self, method: Method, path: &str) -> Result<Response<Incoming>, Error> {
        let empty = Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed();
        self.send_body(method, path, None, empty).await
    }

    /// A connection to the daemon; the caller drives it (with upgrades or not).
    async fn handshake(
        &self,
    ) -> Result<
        (
            http1::SendRequest<BoxBody<Bytes, std::io::Error>>,
            http1::Connection<TokioIo<Box<dyn Io>>, BoxBody<Bytes, std::io::Error>>,
        ),
        Error,
    > {
        let stream = self.connect().await?;
        http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::Http(chain(&e)))
    }

    async fn send_body(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: BoxBody<Bytes, std::io::Error>,
    ) -> Result<Response<Incoming>, Error> {
        let (mut sender, conn) = self.handshake().await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "rcd");
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        let req = req.body(body).map_err(|e| Error::Http(chain(&e)))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Error::Http(chain(&e)))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let code = resp.status();
        let body = collect(resp).await?;
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        Err(Error::Status { code, message })
    }

    /// Opens an exec stream (`rctl exec`, `path` its route): the request, then the connection
    /// upgraded to the raw protocol of `api::exec`.
    pub async fn exec(
        &self,
        path: &str,
        request: &super::exec::ExecRequest,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>, Error> {
        let (mut sender, conn) = self.handshake().await?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let json = serde_json::to_vec(request).map_err(|e| Error::Http(chain(&e)))?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("host", "rcd")
            .header("content-type", "application/json")
            .header(hyper::header::CONNECTION, "upgrade")
            .header(hyper::header::UPGRADE, super::exec::PROTOCOL)
            .body(
                Full::new(Bytes::from(json))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .map_err(|e| Error::Http(chain(&e)))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Error::Http(chain(&e)))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let code = resp.status();
            let body = collect(resp).await?;
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            return Err(Error::Status { code, message });
        }
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| Error::Http(chain(&e)))?;
        Ok(TokioIo::new(upgraded))
    }

    /// GET, decoding a JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let resp = self.send(Method::GET, path).await?;
        decode(resp).await
    }

    /// POST with no body, decoding a JSON answer.
    pub async fn post<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let resp = self.send(Method::POST, path).await?;
        decode(resp).await
    }

    /// POST a JSON body, decoding a JSON answer.
    pub async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Error> {
        let resp = self.send_json(path, body).await?;
        decode(resp).await
    }

    async fn send_json(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Response<Incoming>, Error> {
        let json = serde_json::to_vec(body).map_err(|e| Error::Http(chain(&e)))?;
        let body = Full::new(Bytes::from(json))
            .map_err(|never| match never {})
            .boxed();
        self.send_body(Method::POST, path, Some("application/json"), body)
            .await
    }

    /// POST a JSON body; the answer is newline-delimited JSON, each value handed to `sink` as
    /// it arrives.
    pub async fn post_lines<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        sink: impl FnMut(T),
    ) -> Result<(), Error> {
        let resp = self.send_json(path, body).await?;
        json_lines(resp, sink).await
    }

    /// GET a stream of JSON lines, each passed to `sink` as it arrives.
    pub async fn get_lines<T: DeserializeOwned>(
        &self,
        path: &str,
        sink: impl FnMut(T),
    ) -> Result<(), Error> {
        let resp = self.send(Method::GET, path).await?;
        json_lines(resp, sink).await
    }
    /// POST a file as the body (streamed, not read into memory), decoding a JSON answer.
    pub async fn post_file<T: DeserializeOwned>(
        &self,
        path: &str,
        file: tokio::fs::File,
    ) -> Result<T, Error> {
        let frames = futures_util::StreamExt::map(tokio_util::io::ReaderStream::new(file), |r| {
            r.map(hyper::body::Frame::data)
        });
        let body = BodyExt::boxed(StreamBody::new(frames));
        let resp = self
            .send_body(Method::POST, path, Some("application/x-tar"), body)
            .await?;
        decode(resp).await
    }

    /// PUT a body streamed from `chunks` (a tar stream), decoding a JSON answer.
    pub async fn put_stream<T: DeserializeOwned>(
        &self,
        path: &str,
        chunks: impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
    ) -> Result<T, Error> {
        let frames = futures_util::StreamExt::map(chunks, |r| r.map(hyper::body::Frame::data));
        let body = BodyExt::boxed(StreamBody::new(frames));
        let resp = self
            .send_body(Method::PUT, path, Some("application/x-tar"), body)
            .await?;
        decode(resp).await
    }

    /// GET, returning the body to read as it arrives (a tar stream).
    pub async fn get_body(&self, path: &str) -> Result<Incoming, Error> {
        Ok(self.send(Method::GET, path).await?.into_body())
    }

    /// GET, returning the body as text.
    pub async fn get_text(&self, path: &str) -> Result<String, Error> {
        let resp = self.send(Method::GET, path).await?;
        let body = collect(resp).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// GET, handing each chunk of the body to `sink` as it arrives.
    pub async fn stream(&self, path: &str, mut sink: impl FnMut(&[u8])) -> Result<(), Error> {
        let mut resp = self.send(Method::GET, path).await?;
        while let Some(frame) = resp.body_mut().frame().await {
            let frame = frame.map_err(|e| Error::Http(chain(&e)))?;
            if let Some(data) = frame.data_ref() {
                sink(data);
            }
        }
        Ok(())
    }
}

async fn collect(resp: Response<Incoming>) -> Result<Bytes, Error> {
    resp.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| Error::Http(chain(&e)))
}

async fn decode<T: DeserializeOwned>(resp: Response<Incoming>) -> Result<T, Error> {
    let body = collect(resp).await?;
    serde_json::from_slice(&body).map_err(|e| Error::Decode(e.to_string()))
}

/// Decodes a body of JSON lines as it arrives.
async fn json_lines<T: DeserializeOwned>(
    mut resp: Response<Incoming>,
    mut sink: impl FnMut(T),
) -> Result<(), Error> {
    let mut rest = Vec::new();
    while let Some(frame) = resp.body_mut().frame().await {
        let frame = frame.map_err(|e| Error::Http(chain(&e)))?;
        if let Some(data) = frame.data_ref() {
            rest.extend_from_slice(data);
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = rest.drain(..=end).collect();
            sink(serde_json::from_slice(&line).map_err(|e| Error::Decode(e.to_string()))?);
        }
    }
    Ok(())
}

/// An error with its causes (`connection error: received fatal alert: CertificateRequired`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
