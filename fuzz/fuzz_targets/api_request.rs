//! API requests: arbitrary bytes decoded as each request the daemon takes (JSON bodies through
//! the server's own extractor, query strings through axum's), then through the checks the
//! handlers apply before acting. The first byte picks the request; ASCII digits keep the seeds
//! readable (`0{"reference":"busybox"}`).

#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{FromRequest, Query, Request};
use axum::http::{header, Uri};
use libfuzzer_sys::fuzz_target;
use rcd::api::access::JsonBody;
use rcd::api::events::EventQuery;
use rcd::api::exec::ExecRequest;
use rcd::api::images::{normalize, ImportQuery};
use rcd::api::logs::LogQuery;
use rcd::api::stats::StatsQuery;
use rcd::api::types::ImageRequest;
use serde::de::DeserializeOwned;

/// One runtime for every input: the extractor is async, though a full body never waits.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

/// The body as the pull and rm routes read it.
fn json_body<T: DeserializeOwned>(path: &str, body: &[u8]) -> Option<T> {
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
        .expect("a request from constant parts");
    let decoded = runtime().block_on(JsonBody::<T>::from_request(req, &()));
    decoded.ok().map(|JsonBody(v)| v)
}

/// The query string as a GET route reads it; None when the bytes are no URI at all (hyper
/// refuses those before any route sees them).
fn query<T: DeserializeOwned>(path: &str, q: &[u8]) -> Option<T> {
    let mut uri = format!("{path}?").into_bytes();
    uri.extend_from_slice(q);
    let uri = Uri::try_from(uri).ok()?;
    Query::<T>::try_from_uri(&uri).ok().map(|Query(v)| v)
}

fn image_request(body: &[u8]) {
    for route in ["/v1/images/pull", "/v1/images/rm"] {
        let Some(req) = json_body::<ImageRequest>(route, body) else {
            continue;
        };
        let normalized = normalize(&req.reference).ok();
        // What the client sends for a decoded request decodes to the same request.
        let sent = serde_json::to_vec(&req).expect("an ImageRequest serializes");
        let back = json_body::<ImageRequest>(route, &sent).expect("a sent request decodes");
        assert_eq!(back.reference, req.reference);
        if let Some(n) = normalized {
            // A normalized name is a fixed point: the store keys images by it.
            assert_eq!(normalize(&n).ok().as_ref(), Some(&n));
        }
    }
}

fn exec_request(body: &[u8]) {
    let Ok(req) = ExecRequest::decode(body) else {
        return;
    };
    assert!(
        req.cmd.first().is_some_and(|c| !c.is_empty()),
        "an exec without a program got through"
    );
    let sent = serde_json::to_vec(&req).expect("an ExecRequest serializes");
    let Ok(back) = ExecRequest::decode(&sent) else {
        panic!("{req:?} was sent as {sent:?}, which does not decode");
    };
    assert_eq!(
        (back.cmd, back.stdin, back.tty),
        (req.cmd, req.stdin, req.tty)
    );
}

fn log_query(q: &[u8]) {
    let Some(lq) = query::<LogQuery>("/v1/units/web/logs", q) else {
        return;
    };
    let Ok(filter) = lq.filter() else {
        return;
    };
    // The filter then judges the shim's records, and lines that are not records.
    for line in [
        &b"2026-01-01T00:00:00.000000000Z stdout F hello"[..],
        b"2026-01-01T00:00:00Z stderr P part",
        b"1970-01-01T00:00:00.5+02:00 stdout F odd time",
        b"not a record",
    ] {
        let _ = filter.keep(line);
    }
}

fn import_query(q: &[u8]) {
    if let Some(iq) = query::<ImportQuery>("/v1/images/import", q) {
        let _ = iq.name.as_deref().map(normalize);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => image_request(rest),
        1 => exec_request(rest),
        2 => log_query(rest),
        3 => {
            let _ = query::<EventQuery>("/v1/events", rest);
        }
        4 => {
            let _ = query::<StatsQuery>("/v1/stats", rest);
        }
        _ => import_query(rest),
    }
});
