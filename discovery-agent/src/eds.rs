//! Envoy REST EDS: the node snapshot as a v3 JSON `DiscoveryResponse` holding one
//! `ClusterLoadAssignment`.
//!
//! Localities are region = datacenter, zone = rack, so Envoy's zone-aware features and its
//! admin `/clusters` output show where each node lives. Health maps as:
//!
//! | node health | Envoy `health_status` | why |
//! |---|---|---|
//! | active | `HEALTHY` | vetted, eligible for everything |
//! | quarantined | `DEGRADED` | Envoy's default `override_host_status` set is UNKNOWN, HEALTHY, DEGRADED, so the filter's header may still pick a quarantined node after every active one, as the "Node health" spec allows; the fallback load balancer treats degraded hosts as a last resort, the same ordering. |
//! | down | `UNHEALTHY` | must not receive new traffic; Envoy's own balancer skips it. The `override_host` policy of Envoy 1.40 was seen to accept a listed unhealthy host, so keeping DOWN nodes out of the header is the filter's job (it never lists them) |

use alternator_routing::snapshot::{HealthState, NodeSnapshot};
use serde::Deserialize;
use serde_json::{json, Value};

/// Type URL of the resources this API serves.
pub const CLUSTER_LOAD_ASSIGNMENT_TYPE: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// Envoy health status of a node health state (see the module table).
pub fn envoy_health(state: HealthState) -> &'static str {
    match state {
        HealthState::Active => "HEALTHY",
        HealthState::Quarantined => "DEGRADED",
        HealthState::Down => "UNHEALTHY",
    }
}

/// The parts of a `DiscoveryRequest` the agent reads.
#[derive(Debug, Default, Deserialize)]
pub struct DiscoveryRequest {
    /// Cluster names Envoy asks for (its EDS `service_name`, or the cluster name).
    #[serde(default)]
    pub resource_names: Vec<String>,
    /// The version Envoy already has.
    #[serde(default)]
    pub version_info: String,
}

/// Whether a request asks for `cluster_name` (an empty list asks for everything).
pub fn requests_cluster(request: &DiscoveryRequest, cluster_name: &str) -> bool {
    request.resource_names.is_empty() || request.resource_names.iter().any(|n| n == cluster_name)
}

/// The `DiscoveryResponse` for `cluster_name`: nodes grouped by (datacenter, rack), in the
/// snapshot's canonical order within each locality.
pub fn discovery_response(snapshot: &NodeSnapshot, cluster_name: &str) -> Value {
    let mut localities: Vec<((&str, &str), Vec<Value>)> = Vec::new();
    for node in snapshot.nodes() {
        let key = (node.datacenter.as_str(), node.rack.as_str());
        let endpoint = json!({
            "endpoint": {
                "address": {
                    "socket_address": {
                        "address": node.address.to_string(),
                        "port_value": snapshot.port(),
                    }
                }
            },
            "health_status": envoy_health(node.health),
        });
        match localities.iter_mut().find(|(k, _)| *k == key) {
            Some((_, endpoints)) => endpoints.push(endpoint),
            None => localities.push((key, vec![endpoint])),
        }
    }
    localities.sort_by(|a, b| a.0.cmp(&b.0));
    let endpoints: Vec<Value> = localities
        .into_iter()
        .map(|((region, zone), lb_endpoints)| {
            json!({
                "locality": { "region": region, "zone": zone },
                "lb_endpoints": lb_endpoints,
            })
        })
        .collect();
    json!({
        "version_info": snapshot.version().to_string(),
        "type_url": CLUSTER_LOAD_ASSIGNMENT_TYPE,
        "resources": [{
            "@type": CLUSTER_LOAD_ASSIGNMENT_TYPE,
            "cluster_name": cluster_name,
            "endpoints": endpoints,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alternator_routing::endpoint::Scheme;
    use alternator_routing::snapshot::Node;

    fn node(addr: &str, dc: &str, rack: &str, health: HealthState) -> Node {
        Node {
            address: addr.parse().unwrap(),
            datacenter: dc.into(),
            rack: rack.into(),
            health,
        }
    }

    #[test]
    fn groups_by_locality_and_maps_health() {
        let snapshot = NodeSnapshot::new(
            7,
            0,
            Scheme::Http,
            8000,
            vec![
                node("127.0.0.3", "dc1", "r2", HealthState::Quarantined),
                node("127.0.0.1", "dc1", "r1", HealthState::Active),
                node("127.0.0.2", "dc1", "r1", HealthState::Down),
            ],
        );
        let v = discovery_response(&snapshot, "alternator");
        assert_eq!(v["version_info"], "7");
        let cla = &v["resources"][0];
        assert_eq!(cla["@type"], CLUSTER_LOAD_ASSIGNMENT_TYPE);
        assert_eq!(cla["cluster_name"], "alternator");
        let eps = cla["endpoints"].as_array().unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0]["locality"], json!({"region": "dc1", "zone": "r1"}));
        let first = &eps[0]["lb_endpoints"];
        assert_eq!(
            first[0]["endpoint"]["address"]["socket_address"]["address"],
            "127.0.0.1"
        );
        assert_eq!(
            first[0]["endpoint"]["address"]["socket_address"]["port_value"],
            8000
        );
        assert_eq!(first[0]["health_status"], "HEALTHY");
        assert_eq!(first[1]["health_status"], "UNHEALTHY");
        assert_eq!(eps[1]["lb_endpoints"][0]["health_status"], "DEGRADED");
    }

    #[test]
    fn request_matching() {
        let any: DiscoveryRequest = serde_json::from_str("{}").unwrap();
        assert!(requests_cluster(&any, "alternator"));
        let named: DiscoveryRequest = serde_json::from_str(
            r#"{"node":{"id":"x"},"resource_names":["other"],"version_info":"3"}"#,
        )
        .unwrap();
        assert!(!requests_cluster(&named, "alternator"));
        assert_eq!(named.version_info, "3");
    }
}
