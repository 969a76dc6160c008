//! Safe handles over the raw declarations (`sys`), and the traits they implement.
//!
//! The module's logic never sees a raw pointer: it talks to Envoy through [`ConfigHandle`]
//! (one filter configuration: log, metrics, callouts, scheduler), [`SchedulerHandle`] and
//! [`FilterHandle`] (one HTTP stream during a hook). [`Config`], [`Scheduler`] and [`Filter`]
//! implement them with Envoy's callbacks; the module's unit tests implement them with a mock.

use std::fmt;
use std::time::Duration;

use super::sys::{
    self, Attribute, BodyType, EnvoyBuffer, HeaderMap, HttpHeader, Level, ModuleBuffer,
};

/// Envoy's side of one filter configuration, as the module uses it (thread-safe: Envoy's
/// stats may be updated from any thread; callouts and schedulers are for the main thread).
pub trait ConfigHandle: Send + Sync + fmt::Debug {
    /// Writes a log line through Envoy's `dynamic_modules` logger.
    fn log(&self, level: Level, message: &str);
    /// Whether Envoy would write a line at `level`.
    fn log_enabled(&self, level: Level) -> bool;
    /// Defines a counter or gauge family with `labels`; only possible while Envoy creates
    /// the configuration. Returns Envoy's id for it.
    fn define_metric(&self, gauge: bool, name: &str, labels: &[&str]) -> Option<usize>;
    /// Adds `value` to a counter (`gauge` false) or sets a gauge, for the label values given.
    fn record_metric(&self, gauge: bool, id: usize, labels: &[&str], value: u64) -> bool;
    /// Starts an HTTP call to `cluster`; its answer arrives in the configuration's
    /// callout-done hook on the main thread, with the id returned here. Main thread only.
    fn http_callout(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u64, String>;
    /// A scheduler that runs the configuration's scheduled hook on the main thread.
    fn scheduler(&self) -> Option<Box<dyn SchedulerHandle>>;
}

/// Posts events to the main thread of the configuration it was made for, from any thread.
pub trait SchedulerHandle: Send + Sync + fmt::Debug {
    fn commit(&self, event_id: u64);
}

/// Envoy's side of one HTTP stream while one of its hooks runs.
pub trait FilterHandle {
    /// The first value of header `name`.
    fn header(&self, map: HeaderMap, name: &str) -> Option<Vec<u8>>;
    /// Sets header `name` to `value`, or removes it when `value` is `None`.
    fn set_header(&self, map: HeaderMap, name: &str, value: Option<&[u8]>) -> bool;
    /// Bytes of the request (or response) body seen so far: what earlier hooks asked Envoy
    /// to buffer plus the chunk this hook delivers.
    fn body_size(&self, request: bool) -> usize;
    /// The body seen so far (as [`FilterHandle::body_size`] counts it), up to `limit` bytes.
    fn body(&self, request: bool, limit: usize) -> Vec<u8>;
    fn attribute_string(&self, attribute: Attribute) -> Option<Vec<u8>>;
    fn attribute_int(&self, attribute: Attribute) -> Option<u64>;
    /// Answers the request locally; `details` names the reason in Envoy's access log
    /// (`%RESPONSE_CODE_DETAILS%`).
    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8], details: &str);
}

/// The answer to a configuration-level callout, copied out of Envoy's buffers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalloutAnswer {
    /// The response headers, `:status` included; empty when the call failed (reset, timeout,
    /// no cluster) without a response.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Writes a log line through Envoy's `dynamic_modules` logger.
pub fn log(level: Level, message: &str) {
    // SAFETY: the buffer points into `message`, which outlives the call; Envoy copies it.
    unsafe {
        sys::envoy_dynamic_module_callback_log(level as u32, ModuleBuffer::of(message.as_bytes()))
    }
}

/// Whether Envoy would write a line at `level`.
pub fn log_enabled(level: Level) -> bool {
    // SAFETY: plain value in, plain value out.
    unsafe { sys::envoy_dynamic_module_callback_log_enabled(level as u32) }
}

/// Module buffers over `values`, valid while `values` lives.
fn buffers(values: &[&str]) -> Vec<ModuleBuffer> {
    values
        .iter()
        .map(|v| ModuleBuffer::of(v.as_bytes()))
        .collect()
}

/// A pointer and length for an array argument: null for an empty one.
fn array(values: &mut [ModuleBuffer]) -> (*mut ModuleBuffer, usize) {
    if values.is_empty() {
        (std::ptr::null_mut(), 0)
    } else {
        (values.as_mut_ptr(), values.len())
    }
}

/// Module-owned header entries over `headers`, valid while `headers` lives.
fn header_entries(headers: &[(&str, &str)]) -> Vec<HttpHeader> {
    headers.iter().map(|(k, v)| HttpHeader::of(k, v)).collect()
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
    pub fn new(ptr: sys::ConfigEnvoyPtr) -> Self {
        Config(ptr as usize)
    }

    fn ptr(self) -> sys::ConfigEnvoyPtr {
        self.0 as sys::ConfigEnvoyPtr
    }
}

impl ConfigHandle for Config {
    fn log(&self, level: Level, message: &str) {
        log(level, message);
    }

    fn log_enabled(&self, level: Level) -> bool {
        log_enabled(level)
    }

    fn define_metric(&self, gauge: bool, name: &str, labels: &[&str]) -> Option<usize> {
        let mut names = buffers(labels);
        let (names_ptr, names_len) = array(&mut names);
        let mut id = 0usize;
        let define = if gauge {
            sys::envoy_dynamic_module_callback_http_filter_config_define_gauge
        } else {
            sys::envoy_dynamic_module_callback_http_filter_config_define_counter
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
        (result == sys::METRICS_SUCCESS).then_some(id)
    }

    fn record_metric(&self, gauge: bool, id: usize, labels: &[&str], value: u64) -> bool {
        let mut values = buffers(labels);
        let (values_ptr, values_len) = array(&mut values);
        let record = if gauge {
            sys::envoy_dynamic_module_callback_http_filter_config_set_gauge
        } else {
            sys::envoy_dynamic_module_callback_http_filter_config_increment_counter
        };
        // SAFETY: as in `define_metric`; Envoy's stats are safe to update from any thread.
        unsafe { record(self.ptr(), id, values_ptr, values_len, value) == sys::METRICS_SUCCESS }
    }

    fn http_callout(
        &self,
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
            sys::envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.ptr(),
                &mut id,
                ModuleBuffer::of(cluster.as_bytes()),
                entries.as_mut_ptr(),
                entries.len(),
                ModuleBuffer::null(),
                timeout_ms,
            )
        };
        if result == sys::CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(format!("callout refused (init result {result})"))
        }
    }

    fn scheduler(&self) -> Option<Box<dyn SchedulerHandle>> {
        // SAFETY: the configuration pointer is live.
        let ptr = unsafe {
            sys::envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.ptr())
        };
        (!ptr.is_null()).then(|| Box::new(Scheduler(ptr)) as Box<dyn SchedulerHandle>)
    }
}

/// Envoy's configuration scheduler; deleted on drop.
#[derive(Debug)]
pub struct Scheduler(sys::SchedulerPtr);

// SAFETY: Envoy's configuration scheduler is made to be committed from any thread (it posts
// to the main dispatcher and checks that the configuration still exists).
unsafe impl Send for Scheduler {}
// SAFETY: as above; `commit` takes `&self` and Envoy's post is thread-safe.
unsafe impl Sync for Scheduler {}

impl SchedulerHandle for Scheduler {
    fn commit(&self, event_id: u64) {
        // SAFETY: the pointer came from `scheduler_new` and is deleted only on drop.
        unsafe {
            sys::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.0, event_id)
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // SAFETY: created by `scheduler_new`, deleted exactly once here.
        unsafe { sys::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0) }
    }
}

/// Envoy's side of one HTTP stream, valid for the duration of the hook that received it.
#[derive(Debug)]
pub struct Filter(sys::FilterEnvoyPtr);

impl Filter {
    /// # Safety
    ///
    /// `ptr` must be the filter pointer Envoy passed to the running hook; the handle must not
    /// outlive that hook.
    pub unsafe fn new(ptr: sys::FilterEnvoyPtr) -> Self {
        Filter(ptr)
    }

    fn body_size_of(&self, body: BodyType) -> usize {
        // SAFETY: the filter pointer is live during the hook.
        unsafe { sys::envoy_dynamic_module_callback_http_get_body_size(self.0, body as u32) }
    }

    /// Appends up to `limit - out.len()` bytes of `body` to `out`; returns the first chunk's
    /// address (to recognise the same buffer under two names).
    fn append_body(&self, body: BodyType, out: &mut Vec<u8>, limit: usize) -> Option<usize> {
        // SAFETY: the filter pointer is live during the hook.
        let count = unsafe {
            sys::envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, body as u32)
        };
        if count == 0 {
            return None;
        }
        let mut chunks = vec![EnvoyBuffer::empty(); count];
        // SAFETY: `chunks` has room for the `count` entries Envoy reported for this buffer.
        let ok = unsafe {
            sys::envoy_dynamic_module_callback_http_get_body_chunks(
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
            let bytes = unsafe { sys::envoy_bytes(chunk) };
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

    fn same_buffer(&self, a: BodyType, b: BodyType) -> bool {
        let mut scratch = Vec::new();
        let first_a = self.append_body(a, &mut scratch, 0);
        let first_b = self.append_body(b, &mut scratch, 0);
        first_a.is_some() && first_a == first_b
    }
}

impl FilterHandle for Filter {
    fn header(&self, map: HeaderMap, name: &str) -> Option<Vec<u8>> {
        let mut result = EnvoyBuffer::empty();
        // SAFETY: the filter pointer is live during the hook; `result` is a valid place to
        // write; the key points into `name`. A null `optional_size` is allowed.
        let found = unsafe {
            sys::envoy_dynamic_module_callback_http_get_header(
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
        found.then(|| unsafe { sys::envoy_bytes(result) }.to_vec())
    }

    fn set_header(&self, map: HeaderMap, name: &str, value: Option<&[u8]>) -> bool {
        let value = value.map_or_else(ModuleBuffer::null, ModuleBuffer::of);
        // SAFETY: the filter pointer is live; both buffers point into borrowed data that
        // outlives the call (or are null, which asks for removal); Envoy copies them.
        unsafe {
            sys::envoy_dynamic_module_callback_http_set_header(
                self.0,
                map as u32,
                ModuleBuffer::of(name.as_bytes()),
                value,
            )
        }
    }

    fn body_size(&self, request: bool) -> usize {
        let (buffered, received) = Self::body_types(request);
        let (b, r) = (self.body_size_of(buffered), self.body_size_of(received));
        if b > 0 && r > 0 && self.same_buffer(buffered, received) {
            b
        } else {
            b + r
        }
    }

    fn body(&self, request: bool, limit: usize) -> Vec<u8> {
        let (buffered, received) = Self::body_types(request);
        let mut out = Vec::new();
        let first = self.append_body(buffered, &mut out, limit);
        let mut scratch = Vec::new();
        if first.is_none() || self.append_body(received, &mut scratch, 0) != first {
            self.append_body(received, &mut out, limit);
        }
        out
    }

    fn attribute_string(&self, attribute: Attribute) -> Option<Vec<u8>> {
        let mut result = EnvoyBuffer::empty();
        // SAFETY: the filter pointer is live; `result` is a valid place to write.
        let found = unsafe {
            sys::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.0,
                attribute as u32,
                &mut result,
            )
        };
        // SAFETY: Envoy filled `result` with bytes valid during this hook; copied at once.
        found.then(|| unsafe { sys::envoy_bytes(result) }.to_vec())
    }

    fn attribute_int(&self, attribute: Attribute) -> Option<u64> {
        let mut result = 0u64;
        // SAFETY: the filter pointer is live; `result` is a valid place to write.
        let found = unsafe {
            sys::envoy_dynamic_module_callback_http_filter_get_attribute_int(
                self.0,
                attribute as u32,
                &mut result,
            )
        };
        found.then_some(result)
    }

    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8], details: &str) {
        let mut entries = header_entries(headers);
        // SAFETY: the filter pointer is live; headers, body and details point into borrowed
        // data that outlives the call, which copies them.
        unsafe {
            sys::envoy_dynamic_module_callback_http_send_response(
                self.0,
                status,
                entries.as_mut_ptr(),
                entries.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(details.as_bytes()),
            )
        }
    }
}
