//! proxy-wasm filter for Envoy and Istio: chooses the Alternator node for each DynamoDB request.
