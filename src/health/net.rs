//! Health probes without exec: an HTTP GET or a TCP connect made by the daemon from inside the
//! container's network namespace, so that images without a shell or a client (distroless) can
//! be probed. Each probe runs on a thread of its own that enters the namespace and ends with
//! the probe: network namespaces are per thread, and a pooled thread must never keep one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::unit::NetProbe;

use super::Check;

/// Runs `probe` in the network namespace of process `pid` (the container's init), within
/// `timeout`: exit code 0 and what was seen, or 1 and why not.
pub async fn check(pid: Option<i32>, probe: &NetProbe, timeout: Duration) -> Check {
    let start_ms = crate::clock::now_ms();
    let began = Instant::now();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let probe = probe.clone();
    let spawned = std::thread::Builder::new()
        .name("rcd-probe".into())
        .spawn(move || {
            let _ = tx.send(run(pid, &probe, timeout));
        });
    let result = match spawned {
        Err(e) => Err(format!("cannot start the probe: {e}")),
        // The thread's own timeouts bound it; this one bounds a connect the kernel holds longer.
        Ok(_) => match tokio::time::timeout(timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the probe ended without an answer".into()),
            Err(_) => Err(format!(
                "health check exceeded timeout ({})",
                humantime::format_duration(timeout)
            )),
        },
    };
    let (exit_code, output) = match result {
        Ok(seen) => (0, seen),
        Err(why) => (1, why),
    };
    Check {
        start_ms,
        took_ms: began.elapsed().as_millis() as u64,
        exit_code,
        output,
    }
}

/// The probe itself, on its own thread.
fn run(pid: Option<i32>, probe: &NetProbe, timeout: Duration) -> Result<String, String> {
    let pid = pid.ok_or("the container's first process is not known")?;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| format!("the container's network namespace: {e}"))?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("entering the container's network namespace: {e}"))?;
    match probe {
        NetProbe::Tcp(addr) => connect(*addr, timeout).map(|_| format!("connected to {addr}")),
        NetProbe::Http { addr, host, path } => http(*addr, host, path, timeout),
    }
}

fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect to {addr}: {e}"))
}

/// A GET of `path`: healthy for a status from 200 to 399, as Kubernetes' httpGet.
fn http(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut s = connect(addr, timeout)?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let _ = s.set_write_timeout(Some(left()));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rcd-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes())
        .map_err(|e| format!("GET {path}: {e}"))?;
    // Only the status line is wanted; at most 4 KiB is read for it.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let _ = s.set_read_timeout(Some(left()));
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("GET {path}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or_default().trim().to_owned();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|_| line.starts_with("HTTP/"))
        .ok_or_else(|| format!("GET {path}: not an HTTP answer: {line:?}"))?;
    if (200..400).contains(&status) {
        Ok(line)
    } else {
        Err(format!("GET {path}: {line}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::{parse_http_probe, parse_tcp_probe};

    /// A server on 127.0.0.1 answering each connection with `status`; its port.
    fn server(status: &'static str) -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten().take(4) {
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                let _ = c.write_all(format!("HTTP/1.0 {status}\r\n\r\n").as_bytes());
            }
        });
        port
    }

    #[tokio::test]
    async fn http_and_tcp_from_a_processs_namespace() {
        // This test's own process stands in for a container's init (setns needs root).
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root (setns)");
        }
        let pid = Some(std::process::id() as i32);
        let t = Duration::from_secs(2);
        let ok = server("200 OK");
        let probe = parse_http_probe(&format!("http://127.0.0.1:{ok}/healthz")).unwrap();
        let c = check(pid, &probe, t).await;
        assert_eq!((c.exit_code, c.output.as_str()), (0, "HTTP/1.0 200 OK"));
        let missing = server("404 Not Found");
        let probe = parse_http_probe(&format!("http://localhost:{missing}/nope")).unwrap();
        let c = check(pid, &probe, t).await;
        assert_eq!(
            (c.exit_code, c.output.as_str()),
            (1, "GET /nope: HTTP/1.0 404 Not Found")
        );
        let c = check(
            pid,
            &parse_tcp_probe(&format!("127.0.0.1:{ok}")).unwrap(),
            t,
        )
        .await;
        assert_eq!(c.exit_code, 0, "{}", c.output);
        // A port nobody listens on (the listener dropped at once).
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let c = check(pid, &NetProbe::Tcp(closed), t).await;
        assert_eq!(c.exit_code, 1);
        assert!(c.output.contains("refused"), "{}", c.output);
        let c = check(None, &NetProbe::Tcp(closed), t).await;
        assert!(c.output.contains("not known"), "{}", c.output);
    }

    #[test]
    fn probe_addresses() {
        let http = |u: &str| parse_http_probe(u);
        assert_eq!(
            http("http://127.0.0.1:8080/healthz?x=1"),
            Ok(NetProbe::Http {
                addr: "127.0.0.1:8080".parse().unwrap(),
                host: "127.0.0.1:8080".into(),
                path: "/healthz?x=1".into()
            })
        );
        assert!(
            matches!(http("http://localhost"), Ok(NetProbe::Http { addr, ref path, .. })
            if addr.port() == 80 && path == "/")
        );
        assert!(
            matches!(http("http://[::1]:81/x"), Ok(NetProbe::Http { addr, .. }) if addr.is_ipv6())
        );
        assert!(http("https://127.0.0.1/").is_err_and(|e| e.contains("http://")));
        assert!(http("http://db:80/").is_err_and(|e| e.contains("not an IP address")));
        assert!(http("http://127.0.0.1:0/").is_err_and(|e| e.contains("invalid port")));
        assert_eq!(
            parse_tcp_probe("localhost:5432"),
            Ok(NetProbe::Tcp("127.0.0.1:5432".parse().unwrap()))
        );
        assert!(parse_tcp_probe("127.0.0.1").is_err());
    }
}
