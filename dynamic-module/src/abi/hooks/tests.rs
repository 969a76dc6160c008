//! The hooks' dispatch through a mock Envoy: status mapping and what a panic does to a stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::*;
use crate::abi::mock::MockFilter;

/// Panics `Probe` reported (its own counter: tests run in parallel).
static PROBE_PANICS: AtomicU64 = AtomicU64::new(0);

/// A module whose stream panics in the hook named by `panic_in`.
#[derive(Debug)]
struct Probe;

#[derive(Debug, Default)]
struct ProbeStream {
    panic_in: &'static str,
    hooks_run: Vec<&'static str>,
}

impl HttpFilterConfig for Probe {
    type Filter = ProbeStream;

    fn new(_envoy: Arc<dyn ConfigHandle>, _name: &[u8], _config: &[u8]) -> Option<Self> {
        Some(Probe)
    }

    fn new_filter(&self) -> ProbeStream {
        ProbeStream::default()
    }

    fn note_panic() {
        PROBE_PANICS.fetch_add(1, Ordering::Relaxed);
    }
}

impl ProbeStream {
    fn run(&mut self, hook: &'static str) -> HookStatus {
        self.hooks_run.push(hook);
        if self.panic_in == hook {
            panic!("a bug in {hook}");
        }
        HookStatus::Stop
    }
}

impl HttpFilter for ProbeStream {
    fn on_request_headers(&mut self, _envoy: &impl FilterHandle, _eos: bool) -> HookStatus {
        self.run("request_headers")
    }
    fn on_response_headers(&mut self, _envoy: &impl FilterHandle, _eos: bool) -> HookStatus {
        self.run("response_headers")
    }
    fn on_stream_complete(&mut self, _envoy: &impl FilterHandle) {
        self.run("stream_complete");
    }
}

fn request_headers(slot: &mut Option<ProbeStream>, envoy: &MockFilter) -> HookStatus {
    stream_hook::<Probe, _>(slot, envoy, OnPanic::Reply, |s, e| {
        s.on_request_headers(e, false)
    })
}

#[test]
fn a_hook_that_returns_passes_its_status_through() {
    let envoy = MockFilter::default();
    let mut slot = Some(ProbeStream::default());
    assert_eq!(request_headers(&mut slot, &envoy), HookStatus::Stop);
    assert_eq!(headers_status(HookStatus::Stop), HEADERS_STOP_ITERATION);
    assert_eq!(body_status(HookStatus::Stop), BODY_STOP_AND_BUFFER);
    assert_eq!(headers_status(HookStatus::Continue), CONTINUE);
    assert!(envoy.replies().is_empty());
    assert_eq!(slot.unwrap().hooks_run, ["request_headers"]);
}

#[test]
fn a_panic_on_the_request_path_fails_the_stream_and_drops_its_state() {
    let before = PROBE_PANICS.load(Ordering::Relaxed);
    let envoy = MockFilter::default();
    let mut slot = Some(ProbeStream {
        panic_in: "request_headers",
        ..ProbeStream::default()
    });
    assert_eq!(request_headers(&mut slot, &envoy), HookStatus::Stop);
    // As Envoy fails a stream whose proxy-wasm filter trapped: 503, empty body.
    let replies = envoy.replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].status, 503);
    assert!(replies[0].body.is_empty());
    assert_eq!(replies[0].details, PANIC_DETAILS);
    assert!(slot.is_none(), "the stream's state is dropped");
    assert!(PROBE_PANICS.load(Ordering::Relaxed) > before);
    // Later hooks of the stream find no state and do nothing.
    let status = stream_hook::<Probe, _>(&mut slot, &envoy, OnPanic::Reply, |s, e| {
        s.on_response_headers(e, false)
    });
    assert_eq!(status, HookStatus::Continue);
    assert_eq!(envoy.replies().len(), 1);
}

#[test]
fn a_panic_at_stream_end_drops_the_state_without_a_reply() {
    let envoy = MockFilter::default();
    let mut slot = Some(ProbeStream {
        panic_in: "stream_complete",
        ..ProbeStream::default()
    });
    let status = stream_hook::<Probe, _>(&mut slot, &envoy, OnPanic::Nothing, |s, e| {
        s.on_stream_complete(e);
        HookStatus::Continue
    });
    assert_eq!(status, HookStatus::Continue);
    assert!(slot.is_none());
    assert!(envoy.replies().is_empty());
}

#[test]
fn guard_turns_a_panic_into_the_fallback_and_reports_it() {
    let before = PROBE_PANICS.load(Ordering::Relaxed);
    assert_eq!(guard::<Probe, u32>(7, || panic!("a hook body failed")), 7);
    assert_eq!(guard::<Probe, u32>(7, || 1), 1);
    assert!(PROBE_PANICS.load(Ordering::Relaxed) > before);
}

#[test]
fn the_announced_abi_version_is_a_c_string() {
    assert_eq!(ABI_VERSION.last(), Some(&0));
    assert_eq!(&ABI_VERSION[..ABI_VERSION.len() - 1], b"v0.2.0");
}
