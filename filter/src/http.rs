//! The proxy-wasm HTTP context: each callback hands the stream to the engine's
//! [`RequestFlow`] and returns its verdict to Envoy.

use alternator_engine::{Action as EngineAction, RequestFlow};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::host::{WasmHost, WasmStream};

#[derive(Debug)]
pub struct RequestContext {
    flow: RequestFlow<WasmHost>,
}

impl RequestContext {
    pub fn new(flow: RequestFlow<WasmHost>) -> Self {
        RequestContext { flow }
    }
}

fn action(action: EngineAction) -> Action {
    match action {
        EngineAction::Continue => Action::Continue,
        EngineAction::Pause => Action::Pause,
    }
}

impl Context for RequestContext {}

impl HttpContext for RequestContext {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.flow.on_request_headers(&mut WasmStream, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.flow
                .on_request_body(&mut WasmStream, body_size, end_of_stream),
        )
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        action(self.flow.on_response_headers(&mut WasmStream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.flow
                .on_response_body(&mut WasmStream, body_size, end_of_stream),
        )
    }

    fn on_log(&mut self) {
        self.flow.on_stream_end(&WasmStream);
    }
}
