//! `/api/injectpacket`: Skydive's generic resource routes ([`super::resources`]), with a create that resolves
//! the source interface and the addresses against the graph before storing (§7.1).

use futures_util::future::BoxFuture;

use super::resources::Checked;
use super::{ApiError, AppState};
use crate::error::Error;
use crate::injection::forge::Rng;
use crate::injection::Injection;

impl Checked for Injection {
    fn check(s: AppState, mut item: Self) -> BoxFuture<'static, Result<Self, ApiError>> {
        Box::pin(async move {
            item.validate()?;
            // Queries are evaluated within the server's budget, off the async workers.
            let (graph, ext, budget) = (s.graph.clone(), s.extensions.clone(), s.query_budget);
            let item = tokio::task::spawn_blocking(move || {
                let g = graph.read();
                item.resolve(&g, &ext, &budget, &mut Rng::from_entropy())
                    .map(|()| item)
            })
            .await
            .map_err(Error::from)??;
            allowed(&s.sinks, &item)?;
            Ok(item)
        })
    }
}

/// An injection may only send to `--allow-target` networks, from a namespace the probes
/// found. A pcap replay's destinations are its packets' own. Refusals are
/// [`Error::Forbidden`].
pub(crate) fn allowed(s: &crate::capture::SinkContext, item: &Injection) -> Result<(), Error> {
    let netns = item
        .progress
        .source
        .lock()
        .as_ref()
        .and_then(|src| src.netns.clone());
    if let Some(ns) = netns {
        s.namespaces.check(&ns).map_err(Error::forbidden)?;
    }
    let Some(frames) = &item.parsed.replay else {
        let ip = item
            .parsed
            .dst_ip
            .ok_or_else(|| Error::internal("DstIP: not resolved"))?;
        return s.targets.check_ip(ip).map_err(Error::forbidden);
    };
    if matches!(s.targets, crate::auth::AllowTargets::Everything) {
        return Ok(());
    }
    for (i, f) in frames.iter().enumerate() {
        match ip_destination(f) {
            Some(ip) => s.targets.check_ip(ip).map_err(Error::forbidden)?,
            None => {
                return Err(Error::forbidden(format!(
                    "Pcap: packet {} is not IPv4 or IPv6: its destination cannot be checked against --allow-target",
                    i + 1
                )))
            }
        }
    }
    Ok(())
}

/// The IP destination of an Ethernet frame (one or two VLAN tags skipped).
fn ip_destination(frame: &[u8]) -> Option<std::net::IpAddr> {
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    while matches!(ethertype, 0x8100 | 0x88a8) {
        off += 4;
        ethertype = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    }
    let ip = frame.get(off + 2..)?;
    match ethertype {
        0x0800 => {
            let b: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            Some(b.into())
        }
        0x86dd => {
            let b: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            Some(b.into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::routes;
    use super::super::test_support::state;
    use serde_json::{json, Value};
    use warp::http::StatusCode;

    #[tokio::test]
    async fn create_resolves_lists_refuses_patch_and_deletes() {
        let s = state();
        let api = routes(s.clone());
        let call = |method: &'static str, path: String, body: String| {
            let api = api.clone();
            async move {
                let resp = warp::test::request()
                    .method(method)
                    .path(&path)
                    .body(body)
                    .reply(&api)
                    .await;
                let text = String::from_utf8_lossy(resp.body()).into_owned();
                (resp.status(), text)
            }
        };
        let (st, _) = call(
            "POST",
            "/api/node".into(),
            json!({"ID": "n1", "Metadata": {"Name": "eth0", "Type": "veth", "IfIndex": 2,
                   "MAC": "02:00:00:00:00:01", "IPV4": ["10.9.0.1/24"]}})
            .to_string(),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED);

        let (st, body) = call(
            "POST",
            "/api/injectpacket".into(),
            json!({"Src": "G.V().Has('Name', 'nothing')", "Type": "icmp4", "DstIP": "10.9.0.2"})
                .to_string(),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(body.starts_with("Src: no interface matches"), "{body}");
        let (st, body) = call(
            "POST",
            "/api/injectpacket".into(),
            json!({"Src": "G.V().Has('Name', 'eth0')", "Type": "icmp4", "Count": 0}).to_string(),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(body.starts_with("Count: "), "{body}");

        // No runner here: the injection stays pending.
        let (st, body) = call(
            "POST",
            "/api/injectpacket".into(),
            json!({"Src": "G.V().Has('Name', 'eth0')", "Type": "icmp4",
                   "DstIP": "10.9.0.2", "DstMAC": "02:00:00:00:00:02"})
            .to_string(),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        let created: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(created["SrcIP"], "10.9.0.1");
        assert_eq!(created["SrcMAC"], "02:00:00:00:00:01");
        assert_eq!(created["TTL"], 64);
        assert_eq!(created["Mode"], "unique");
        let uuid = created["UUID"].as_str().unwrap().to_owned();

        let (st, body) = call("GET", "/api/injectpacket".into(), String::new()).await;
        assert_eq!(st, StatusCode::OK);
        let list: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(list[&uuid]["State"], "pending");
        assert_eq!(list[&uuid]["PacketCount"], 0);
        let (st, body) = call("PATCH", format!("/api/injectpacket/{uuid}"), "[]".into()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(body.contains("not updatable"), "{body}");
        let (st, _) = call("DELETE", format!("/api/injectpacket/{uuid}"), String::new()).await;
        assert_eq!(st, StatusCode::OK);
        let (st, body) = call("GET", format!("/api/injectpacket/{uuid}"), String::new()).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert_eq!(body, format!("Injectpacket '{uuid}' not found\n"));
    }
}
