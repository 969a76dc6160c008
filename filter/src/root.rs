//! The proxy-wasm root context: hands configuration, ticks, agent answers and new streams to
//! the engine's [`Root`].

use std::hash::{BuildHasher, Hasher};

use alternator_engine::host::Host;
use alternator_engine::Root;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use crate::host::{buffer, http_call_answer, WasmHost};
use crate::http::RequestContext;

#[derive(Debug)]
pub struct RootAdapter {
    root: Root<WasmHost>,
}

impl RootAdapter {
    pub fn new() -> Self {
        RootAdapter {
            root: Root::new(WasmHost),
        }
    }
}

/// A seed from the host's randomness (std's hasher keys come from WASI `random_get`) mixed
/// with the clock, so a host without randomness still gives distinct workers distinct seeds.
fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(WasmHost.now_ms());
    h.finish()
}

impl Context for RootAdapter {
    fn on_done(&mut self) -> bool {
        self.root.on_done();
        true
    }

    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let (headers, body) = http_call_answer(body_size);
        self.root.on_agent_answer(token, &headers, &body);
    }
}

impl RootContext for RootAdapter {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = buffer(BufferType::PluginConfiguration, 0, usize::MAX).unwrap_or_default();
        let Ok(tick) = self.root.configure(&bytes, random_seed()) else {
            return false; // The engine logged which field is wrong.
        };
        if !WasmHost.set_tick_period(tick) {
            WasmHost.log(
                alternator_engine::LogLevel::Error,
                "alternator-filter: cannot set the tick period",
            );
            return false;
        }
        true
    }

    fn on_tick(&mut self) {
        self.root.on_tick();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let flow = self.root.new_request()?;
        Some(Box::new(RequestContext::new(flow)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
