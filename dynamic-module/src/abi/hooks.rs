//! The event hooks Envoy calls (`envoy_dynamic_module_on_*`, abi.h "Event Hooks"), as a thin
//! generic dispatch onto the traits the module implements: [`HttpFilterConfig`] for a filter
//! configuration and [`HttpFilter`] for one HTTP stream.
//!
//! Each hook turns Envoy's raw pointers into the safe handles of `handles` and calls the
//! trait, inside [`guard`] or [`stream_hook`], so that no panic ever unwinds into Envoy.
//! A panic in a stream hook drops that stream's state and fails the stream the way Envoy
//! fails a stream whose proxy-wasm filter trapped: a 503 local reply with an empty body
//! (response-code details [`PANIC_DETAILS`]); the module goes on serving other streams.
//!
//! Every `unsafe extern "C"` hook has the same contract: only Envoy calls it, with the
//! pointers the ABI describes (those this module returned earlier, and buffers valid for
//! the duration of the hook).

// The hooks' safety contract is the ABI's, stated once above rather than on each.
#![allow(clippy::missing_safety_doc)]

use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::handles::{CalloutAnswer, Config, ConfigHandle, Filter, FilterHandle};
use super::sys::{
    self, ConfigEnvoyPtr, ConfigModulePtr, EnvoyBuffer, FilterEnvoyPtr, FilterModulePtr,
    HttpHeader, ABI_VERSION, BODY_STOP_AND_BUFFER, CONTINUE, HEADERS_STOP_ITERATION,
};

/// The module whose hooks Envoy calls.
type Module = crate::module::ModuleConfig;
type Stream = <Module as HttpFilterConfig>::Filter;

/// The response-code details of a stream failed because a hook panicked.
pub const PANIC_DETAILS: &str = "alternator_mesh_module_panic";

/// What a stream hook tells Envoy to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookStatus {
    Continue,
    /// Hold the stream: headers stop iterating, a body is buffered until its end (or a local
    /// reply was sent).
    Stop,
}

/// One filter configuration, as the hooks see it.
pub trait HttpFilterConfig: Sized {
    type Filter: HttpFilter;

    /// Envoy creates a configuration (main thread); `None` rejects it.
    fn new(envoy: Arc<dyn ConfigHandle>, name: &[u8], config: &[u8]) -> Option<Self>;
    /// A scheduler event of this configuration (main thread).
    fn on_scheduled(&self, _event_id: u64) {}
    /// The answer to a callout this configuration started (main thread).
    fn on_callout_done(&self, _callout_id: u64, _answer: CalloutAnswer) {}
    /// A new HTTP stream (worker thread).
    fn new_filter(&self) -> Self::Filter;
    /// Envoy destroys the configuration, after every filter it created.
    fn destroy(self) {}
    /// A hook panicked; the panic was caught (any thread).
    fn note_panic();
}

/// One HTTP stream, as the hooks see it. Each method runs during one hook, with Envoy's side
/// of the stream behind `envoy`; the defaults do nothing.
pub trait HttpFilter {
    fn on_request_headers(
        &mut self,
        _envoy: &impl FilterHandle,
        _end_of_stream: bool,
    ) -> HookStatus {
        HookStatus::Continue
    }
    fn on_request_body(&mut self, _envoy: &impl FilterHandle, _end_of_stream: bool) -> HookStatus {
        HookStatus::Continue
    }
    fn on_response_headers(
        &mut self,
        _envoy: &impl FilterHandle,
        _end_of_stream: bool,
    ) -> HookStatus {
        HookStatus::Continue
    }
    fn on_response_body(&mut self, _envoy: &impl FilterHandle, _end_of_stream: bool) -> HookStatus {
        HookStatus::Continue
    }
    /// The stream is done (before the access log).
    fn on_stream_complete(&mut self, _envoy: &impl FilterHandle) {}
}

/// Runs a hook's body; a panic is caught, reported to `M` and turned into `fallback`.
pub fn guard<M: HttpFilterConfig, T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => {
            M::note_panic();
            fallback
        }
    }
}

/// What a stream hook does to its stream after a panic, besides dropping its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPanic {
    /// Fail the stream with a 503 local reply (request and response hooks).
    Reply,
    /// Nothing more: the stream is over (stream complete).
    Nothing,
}

/// Runs a stream hook over the stream's state. No state (never made, or dropped after an
/// earlier panic): the hook does nothing. A panic drops the state and, with
/// [`OnPanic::Reply`], fails the stream with a 503.
pub fn stream_hook<M: HttpFilterConfig, E: FilterHandle>(
    slot: &mut Option<M::Filter>,
    envoy: &E,
    on_panic: OnPanic,
    hook: impl FnOnce(&mut M::Filter, &E) -> HookStatus,
) -> HookStatus {
    let Some(filter) = slot.as_mut() else {
        return HookStatus::Continue;
    };
    if let Ok(status) = catch_unwind(AssertUnwindSafe(|| hook(filter, envoy))) {
        return status;
    }
    M::note_panic();
    // The state may be half-updated: dropped (a panicking drop is caught too), so no later
    // hook of this stream runs on it.
    let state = slot.take();
    guard::<M, _>((), || drop(state));
    match on_panic {
        OnPanic::Reply => {
            guard::<M, _>((), || envoy.send_response(503, &[], b"", PANIC_DETAILS));
            HookStatus::Stop
        }
        OnPanic::Nothing => HookStatus::Continue,
    }
}

/// The module's configuration behind Envoy's opaque pointer.
///
/// # Safety
///
/// `ptr` must be a pointer returned by `on_http_filter_config_new` and not yet passed to
/// `on_http_filter_config_destroy`, which Envoy guarantees for every hook.
unsafe fn config_ref<'a>(ptr: ConfigModulePtr) -> Option<&'a Module> {
    // SAFETY: see the function's contract; the pointer came from `Box::into_raw`.
    unsafe { ptr.cast::<Module>().as_ref() }
}

/// The stream state behind Envoy's opaque pointer.
///
/// # Safety
///
/// `ptr` must come from `on_http_filter_new` and not be destroyed yet; Envoy calls a
/// filter's hooks one at a time on its worker thread, so no other reference exists while a
/// hook runs.
unsafe fn stream_mut<'a>(ptr: FilterModulePtr) -> Option<&'a mut Option<Stream>> {
    // SAFETY: see the function's contract; the pointer came from `Box::into_raw`.
    unsafe { ptr.cast_mut().cast::<Option<Stream>>().as_mut() }
}

/// A stream hook from Envoy: the state and Envoy's handle, then [`stream_hook`].
///
/// # Safety
///
/// `filter_envoy` and `filter` must be the pointers Envoy passed to the running hook.
unsafe fn dispatch(
    filter_envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
    on_panic: OnPanic,
    hook: impl FnOnce(&mut Stream, &Filter) -> HookStatus,
) -> HookStatus {
    guard::<Module, _>(HookStatus::Continue, || {
        // SAFETY: Envoy passes the pointer `on_http_filter_new` returned, during one hook at
        // a time on the filter's worker thread.
        let Some(slot) = (unsafe { stream_mut(filter) }) else {
            return HookStatus::Continue;
        };
        // SAFETY: the filter pointer is the running hook's; the handle is dropped with it.
        let envoy = unsafe { Filter::new(filter_envoy) };
        stream_hook::<Module, _>(slot, &envoy, on_panic, hook)
    })
}

/// The ABI status of a headers hook.
fn headers_status(status: HookStatus) -> u32 {
    match status {
        HookStatus::Continue => CONTINUE,
        HookStatus::Stop => HEADERS_STOP_ITERATION,
    }
}

/// The ABI status of a body hook.
fn body_status(status: HookStatus) -> u32 {
    match status {
        HookStatus::Continue => CONTINUE,
        HookStatus::Stop => BODY_STOP_AND_BUFFER,
    }
}

/// Envoy's header entries of a callout answer, copied.
///
/// # Safety
///
/// Null, or `size` entries whose buffers are valid during the running hook.
unsafe fn header_pairs(headers: *const HttpHeader, size: usize) -> Vec<(String, String)> {
    if headers.is_null() {
        return Vec::new();
    }
    // SAFETY: the caller guarantees `size` entries.
    let headers = unsafe { std::slice::from_raw_parts(headers, size) };
    let text = |ptr, length| {
        // SAFETY: each entry's key and value are buffers valid during the running hook.
        let bytes = unsafe { sys::envoy_bytes(EnvoyBuffer { ptr, length }) };
        String::from_utf8_lossy(bytes).into_owned()
    };
    headers
        .iter()
        .map(|h| {
            (
                text(h.key_ptr, h.key_length),
                text(h.value_ptr, h.value_length),
            )
        })
        .collect()
}

/// Envoy's body chunks of a callout answer, concatenated.
///
/// # Safety
///
/// Null, or `size` buffers valid during the running hook.
unsafe fn body_bytes(chunks: *const EnvoyBuffer, size: usize) -> Vec<u8> {
    if chunks.is_null() {
        return Vec::new();
    }
    // SAFETY: the caller guarantees `size` chunks.
    let chunks = unsafe { std::slice::from_raw_parts(chunks, size) };
    let mut body = Vec::new();
    for chunk in chunks {
        // SAFETY: each chunk is a buffer valid during the running hook.
        body.extend_from_slice(unsafe { sys::envoy_bytes(*chunk) });
    }
    body
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr().cast()
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: ConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConfigModulePtr {
    guard::<Module, _>(std::ptr::null(), || {
        // SAFETY: both buffers are valid for the duration of this hook.
        let (name, bytes) = unsafe { (sys::envoy_bytes(name), sys::envoy_bytes(config)) };
        match Module::new(Arc::new(Config::new(config_envoy)), name, bytes) {
            Some(config) => Box::into_raw(Box::new(config)).cast_const().cast(),
            None => std::ptr::null(),
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config: ConfigModulePtr,
) {
    guard::<Module, _>((), || {
        if config.is_null() {
            return;
        }
        // SAFETY: Envoy passes back a pointer from `on_http_filter_config_new` exactly once.
        let config = unsafe { Box::from_raw(config.cast_mut().cast::<Module>()) };
        config.destroy();
    });
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config_envoy: ConfigEnvoyPtr,
    config: ConfigModulePtr,
    event_id: u64,
) {
    guard::<Module, _>((), || {
        // SAFETY: Envoy passes a live configuration pointer.
        if let Some(config) = unsafe { config_ref(config) } {
            config.on_scheduled(event_id);
        }
    });
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy: ConfigEnvoyPtr,
    config: ConfigModulePtr,
    callout_id: u64,
    result: u32,
    headers: *const HttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    guard::<Module, _>((), || {
        // SAFETY: Envoy passes a live configuration pointer.
        let Some(config) = (unsafe { config_ref(config) }) else {
            return;
        };
        let answer = if result == sys::CALLOUT_SUCCESS {
            // SAFETY: Envoy passes that many entries and chunks, valid during this hook.
            unsafe {
                CalloutAnswer {
                    headers: header_pairs(headers, headers_size),
                    body: body_bytes(body_chunks, body_chunks_size),
                }
            }
        } else {
            CalloutAnswer::default()
        };
        config.on_callout_done(callout_id, answer);
    });
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ConfigModulePtr,
    _filter_envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    guard::<Module, _>(std::ptr::null(), || {
        // SAFETY: Envoy passes a live configuration pointer.
        let Some(config) = (unsafe { config_ref(config) }) else {
            return std::ptr::null();
        };
        Box::into_raw(Box::new(Some(config.new_filter())))
            .cast_const()
            .cast()
    })
}

/// The request and response hooks: each hands the stream to one [`HttpFilter`] method and
/// turns its answer into that hook's ABI status; a panic fails the stream.
macro_rules! stream_hooks {
    ($($name:ident => $method:ident, $status:ident;)*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            filter_envoy: FilterEnvoyPtr,
            filter: FilterModulePtr,
            end_of_stream: bool,
        ) -> u32 {
            // SAFETY: Envoy passes this hook its own pointers.
            $status(unsafe {
                dispatch(filter_envoy, filter, OnPanic::Reply, |s, e| {
                    s.$method(e, end_of_stream)
                })
            })
        }
    )*};
}

stream_hooks! {
    envoy_dynamic_module_on_http_filter_request_headers => on_request_headers, headers_status;
    envoy_dynamic_module_on_http_filter_request_body => on_request_body, body_status;
    envoy_dynamic_module_on_http_filter_response_headers => on_response_headers, headers_status;
    envoy_dynamic_module_on_http_filter_response_body => on_response_body, body_status;
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    filter_envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
) {
    // SAFETY: the pointers of this hook.
    unsafe {
        dispatch(filter_envoy, filter, OnPanic::Nothing, |s, e| {
            s.on_stream_complete(e);
            HookStatus::Continue
        });
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: FilterModulePtr) {
    guard::<Module, _>((), || {
        if !filter.is_null() {
            // SAFETY: Envoy passes back the pointer from `on_http_filter_new` exactly once.
            drop(unsafe { Box::from_raw(filter.cast_mut().cast::<Option<Stream>>()) });
        }
    });
}

/// Hooks for features this module does not use; Envoy resolves every hook of the ABI when it
/// loads a module, so each is exported and does nothing (returning `$value` where the ABI
/// wants a status).
macro_rules! unused_hooks {
    ($($name:ident($($arg:ty),* $(,)?) $(-> $ret:ty = $value:expr)?;)*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name($(_: $arg),*) $(-> $ret)? {
            $($value)?
        }
    )*};
}

// Callouts and streams started by a filter, scheduled filter events, watermarks, local
// replies, streams started by a configuration.
unused_hooks! {
    envoy_dynamic_module_on_http_filter_request_trailers(FilterEnvoyPtr, FilterModulePtr) -> u32 = CONTINUE;
    envoy_dynamic_module_on_http_filter_response_trailers(FilterEnvoyPtr, FilterModulePtr) -> u32 = CONTINUE;
    envoy_dynamic_module_on_http_filter_http_callout_done(
        FilterEnvoyPtr, FilterModulePtr, u64, u32, *const HttpHeader, usize, *const EnvoyBuffer, usize,
    );
    envoy_dynamic_module_on_http_filter_scheduled(FilterEnvoyPtr, FilterModulePtr, u64);
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(FilterEnvoyPtr, FilterModulePtr);
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(FilterEnvoyPtr, FilterModulePtr);
    envoy_dynamic_module_on_http_filter_local_reply(FilterEnvoyPtr, FilterModulePtr, u32, EnvoyBuffer, bool) -> u32 = CONTINUE;
    envoy_dynamic_module_on_http_filter_http_stream_headers(
        FilterEnvoyPtr, FilterModulePtr, u64, *const HttpHeader, usize, bool,
    );
    envoy_dynamic_module_on_http_filter_http_stream_data(
        FilterEnvoyPtr, FilterModulePtr, u64, *const EnvoyBuffer, usize, bool,
    );
    envoy_dynamic_module_on_http_filter_http_stream_trailers(FilterEnvoyPtr, FilterModulePtr, u64, *const HttpHeader, usize);
    envoy_dynamic_module_on_http_filter_http_stream_complete(FilterEnvoyPtr, FilterModulePtr, u64);
    envoy_dynamic_module_on_http_filter_http_stream_reset(FilterEnvoyPtr, FilterModulePtr, u64, u32);
    envoy_dynamic_module_on_http_filter_config_http_stream_headers(
        ConfigEnvoyPtr, ConfigModulePtr, u64, *const HttpHeader, usize, bool,
    );
    envoy_dynamic_module_on_http_filter_config_http_stream_data(
        ConfigEnvoyPtr, ConfigModulePtr, u64, *const EnvoyBuffer, usize, bool,
    );
    envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
        ConfigEnvoyPtr, ConfigModulePtr, u64, *const HttpHeader, usize,
    );
    envoy_dynamic_module_on_http_filter_config_http_stream_complete(ConfigEnvoyPtr, ConfigModulePtr, u64);
    envoy_dynamic_module_on_http_filter_config_http_stream_reset(ConfigEnvoyPtr, ConfigModulePtr, u64, u32);
}

#[cfg(test)]
mod tests;
