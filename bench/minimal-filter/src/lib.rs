//! The smallest proxy-wasm (ABI 0.2.1) HTTP filter: raw exports, no SDK.
//!
//! Envoy calls only the callbacks a module exports. This module exports what Envoy requires to
//! load and configure a plugin plus `proxy_on_context_create` and `proxy_on_request_headers`,
//! so each request costs Envoy two V8 entries (context creation, request headers) and nothing
//! else: no request body, response, log, done or delete callbacks. `make bench` runs it as
//! configuration 2m, the floor of any V8 filter.

/// `proxy_on_request_headers`' `Continue` action.
const ACTION_CONTINUE: u32 = 0;

/// Marks the module as speaking proxy-wasm ABI 0.2.1.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Guest memory for data the host copies in. Envoy requires this export; this module never asks
/// the host for data, so it is only called if Envoy passes a configuration (leaked: at most once
/// per VM and plugin).
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    Box::leak(vec![0u8; size].into_boxed_slice()).as_mut_ptr()
}

/// Root and HTTP contexts keep no state.
#[no_mangle]
pub extern "C" fn proxy_on_context_create(_context_id: u32, _parent_context_id: u32) {}

/// Accepts the VM (`1` = success).
#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _vm_configuration_size: u32) -> u32 {
    1
}

/// Accepts the plugin configuration (`1` = success) without reading it.
#[no_mangle]
pub extern "C" fn proxy_on_configure(_root_context_id: u32, _plugin_configuration_size: u32) -> u32 {
    1
}

/// Lets every request through untouched.
#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _headers: u32, _end_of_stream: u32) -> u32 {
    ACTION_CONTINUE
}
