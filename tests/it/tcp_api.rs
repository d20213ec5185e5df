//! The API over TCP: off by default; with mutual TLS, a client with a certificate from the
//! configured CA gets in and one without is refused; plain TCP only with `insecure = true`,
//! warned about, and refused without it. Traffic to 127.0.0.1 only.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use crate::registry::Pki;

const SEC: Duration = Duration::from_secs(1);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

fn rctl_at(args: &[&str]) -> std::process::Output {
    Command::new(RCTL)
        .args(args)
        .env_remove("RCD_SOCKET")
        .output()
        .unwrap()
}

#[test]
fn a_tcp_listener_requires_a_client_certificate() {
    let pki = Pki::generate();
    let port = free_port();
    let mut d = Daemon::new();
    d.write_config(
        "",
        &format!(
            "[api]\nlisten = [\"127.0.0.1:{port}\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntls_client_ca = \"{}\"\n",
            pki.server_cert().display(),
            pki.server_key().display(),
            pki.ca().display()
        ),
    );
    d.spawn();
    d.write_unit("web", &unit("exec sleep 1000", "stop_signal = \"KILL\"\n"));
    d.wait_state("web", "running", 20 * SEC);
    let host = format!("tcp://127.0.0.1:{port}");
    let ca = pki.ca().display().to_string();
    let (cert, key) = (
        pki.client_cert().display().to_string(),
        pki.client_key().display().to_string(),
    );
    let certified = |args: &[&str]| {
        let mut all = vec![
            "--host",
            &host,
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ];
        all.extend_from_slice(args);
        rctl_at(&all)
    };
    // With the client certificate: the same API as on the socket.
    let out = certified(&["list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("web"));
    let out = certified(&["stop", "web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.wait_state("web", "stopped", 10 * SEC);
    // Logged with the client's address.
    wait_until(5 * SEC, "the request logged", || {
        d.log().lines().any(|l| {
            l.contains("api request")
                && l.contains("remote=Some(\"127.0.0.1:")
                && l.contains("/v1/units/web/stop")
        })
    });
    // Without a certificate, or in plain text: refused.
    let out = rctl_at(&["--host", &host, "--tls-ca", &ca, "list"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("CertificateRequired"),
        "{said}"
    );
    assert!(out.stdout.is_empty());
    let out = rctl_at(&["--host", &host, "list"]);
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn plain_tcp_needs_insecure_and_is_warned_about() {
    let port = free_port();
    let mut d = Daemon::new();
    d.write_config("", &format!("[api]\nlisten = [\"127.0.0.1:{port}\"]\n"));
    // Refused at start, with where and why.
    let out = Command::new(RCD)
        .arg("--check-config")
        .arg("--config")
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("{}:", d.config.display()))
            && said.contains("a TCP listener needs tls_cert, tls_key and tls_client_ca"),
        "{said}"
    );
    d.write_config(
        "",
        &format!("[api]\nlisten = [\"tcp://127.0.0.1:{port}\"]\ninsecure = true\n"),
    );
    d.spawn();
    assert!(
        d.log().contains("API on plain TCP (insecure = true)"),
        "{}",
        d.log()
    );
    let out = rctl_at(&["--host", &format!("tcp://127.0.0.1:{port}"), "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
