//! A scripted Envoy for unit tests: [`MockConfig`] (one filter configuration) and
//! [`MockFilter`] (one HTTP stream during its hooks). They record what the module asked
//! of Envoy and answer from what the test put in.
#![deny(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::handles::{ConfigHandle, FilterHandle, SchedulerHandle};
use super::sys::{Attribute, HeaderMap, Level};

/// A callout the module started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    pub id: u64,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

impl Callout {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct ConfigState {
    /// Families in definition order: (gauge, name, label names); Envoy's id is the index.
    families: Vec<(bool, String, Vec<String>)>,
    /// (family name, label values) → the counter's total or the gauge's value.
    values: BTreeMap<(String, Vec<String>), u64>,
    logs: Vec<(Level, String)>,
    callouts: Vec<Callout>,
}

/// One filter configuration as Envoy holds it.
#[derive(Debug)]
pub struct MockConfig {
    state: Mutex<ConfigState>,
    /// The id the next callout gets.
    next_callout: AtomicU64,
    /// Events committed through its schedulers.
    pub commits: Arc<AtomicU64>,
}

impl MockConfig {
    /// A configuration whose callout ids start at `first_callout`.
    pub fn new(first_callout: u64) -> Arc<Self> {
        Arc::new(MockConfig {
            state: Mutex::default(),
            next_callout: AtomicU64::new(first_callout),
            commits: Arc::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ConfigState> {
        self.state.lock().unwrap()
    }

    /// The value of a series, by family name and label values (`None`: never recorded).
    pub fn metric(&self, family: &str, labels: &[&str]) -> Option<u64> {
        let key = (
            family.to_string(),
            labels.iter().map(|l| l.to_string()).collect(),
        );
        self.state().values.get(&key).copied()
    }

    /// Every family defined: (gauge, name, label names).
    pub fn families(&self) -> Vec<(bool, String, Vec<String>)> {
        self.state().families.clone()
    }

    pub fn logged(&self, level: Level, needle: &str) -> bool {
        self.state()
            .logs
            .iter()
            .any(|(l, m)| *l == level && m.contains(needle))
    }

    /// Callouts started since the last take.
    pub fn take_callouts(&self) -> Vec<Callout> {
        std::mem::take(&mut self.state().callouts)
    }
}

#[derive(Debug)]
struct MockScheduler(Arc<AtomicU64>);

impl SchedulerHandle for MockScheduler {
    fn commit(&self, _event_id: u64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl ConfigHandle for MockConfig {
    fn log(&self, level: Level, message: &str) {
        self.state().logs.push((level, message.to_string()));
    }

    fn log_enabled(&self, _level: Level) -> bool {
        true
    }

    fn define_metric(&self, gauge: bool, name: &str, labels: &[&str]) -> Option<usize> {
        let mut state = self.state();
        state.families.push((
            gauge,
            name.to_string(),
            labels.iter().map(|l| l.to_string()).collect(),
        ));
        Some(state.families.len() - 1)
    }

    fn record_metric(&self, gauge: bool, id: usize, labels: &[&str], value: u64) -> bool {
        let mut state = self.state();
        let Some((defined_gauge, name, names)) = state.families.get(id).cloned() else {
            return false;
        };
        assert_eq!(gauge, defined_gauge, "{name} recorded as the wrong kind");
        assert_eq!(labels.len(), names.len(), "{name} recorded with {labels:?}");
        let key = (name, labels.iter().map(|l| l.to_string()).collect());
        let entry = state.values.entry(key).or_default();
        *entry = if gauge { value } else { *entry + value };
        true
    }

    fn http_callout(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u64, String> {
        let id = self.next_callout.fetch_add(1, Ordering::Relaxed);
        self.state().callouts.push(Callout {
            id,
            cluster: cluster.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timeout,
        });
        Ok(id)
    }

    fn scheduler(&self) -> Option<Box<dyn SchedulerHandle>> {
        Some(Box::new(MockScheduler(Arc::clone(&self.commits))))
    }
}

/// A local reply the module sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub details: String,
}

#[derive(Debug, Default)]
struct FilterState {
    request_headers: Vec<(String, Vec<u8>)>,
    response_headers: Vec<(String, Vec<u8>)>,
    request_body: Vec<u8>,
    response_body: Vec<u8>,
    attributes: BTreeMap<u32, Vec<u8>>,
    int_attributes: BTreeMap<u32, u64>,
    replies: Vec<LocalReply>,
    /// Calls made, by name, in order.
    calls: Vec<String>,
}

/// One HTTP stream as Envoy holds it. Interior mutability: the handle is shared (`&self`)
/// as Envoy's own is.
#[derive(Debug, Default)]
pub struct MockFilter {
    state: Mutex<FilterState>,
}

impl MockFilter {
    /// A request with these headers and no body.
    pub fn request(headers: &[(&str, &str)]) -> Self {
        let filter = MockFilter::default();
        filter.state().request_headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        filter
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FilterState> {
        self.state.lock().unwrap()
    }

    pub fn request_header(&self, name: &str) -> Option<String> {
        self.state()
            .request_headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// How many values of `name` the request carries.
    pub fn request_header_count(&self, name: &str) -> usize {
        self.state()
            .request_headers
            .iter()
            .filter(|(k, _)| k == name)
            .count()
    }

    pub fn set_request_body(&self, body: &[u8]) {
        self.state().request_body = body.to_vec();
    }

    /// The upstream's answer as the stream-end hook reads it.
    pub fn served(&self, upstream: &str, code: u64) {
        let mut state = self.state();
        state
            .response_headers
            .push((":status".to_string(), code.to_string().into_bytes()));
        state.attributes.insert(
            Attribute::UpstreamAddress as u32,
            upstream.as_bytes().to_vec(),
        );
        state
            .int_attributes
            .insert(Attribute::ResponseCode as u32, code);
        state
            .int_attributes
            .insert(Attribute::ResponseFlags as u32, 0);
        state
            .int_attributes
            .insert(Attribute::UpstreamRequestAttemptCount as u32, 1);
    }

    pub fn replies(&self) -> Vec<LocalReply> {
        self.state().replies.clone()
    }

    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    fn call(&self, name: &str) {
        self.state().calls.push(name.to_string());
    }
}

fn map_of(state: &mut FilterState, map: HeaderMap) -> &mut Vec<(String, Vec<u8>)> {
    match map {
        HeaderMap::Request => &mut state.request_headers,
        HeaderMap::Response => &mut state.response_headers,
    }
}

impl FilterHandle for MockFilter {
    fn header(&self, map: HeaderMap, name: &str) -> Option<Vec<u8>> {
        self.call("header");
        let mut state = self.state();
        map_of(&mut state, map)
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    fn set_header(&self, map: HeaderMap, name: &str, value: Option<&[u8]>) -> bool {
        self.call("set_header");
        let mut state = self.state();
        let headers = map_of(&mut state, map);
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        if let Some(value) = value {
            headers.push((name.to_string(), value.to_vec()));
        }
        true
    }

    fn body_size(&self, request: bool) -> usize {
        let state = self.state();
        if request {
            state.request_body.len()
        } else {
            state.response_body.len()
        }
    }

    fn body(&self, request: bool, limit: usize) -> Vec<u8> {
        self.call("body");
        let state = self.state();
        let body = if request {
            &state.request_body
        } else {
            &state.response_body
        };
        body[..body.len().min(limit)].to_vec()
    }

    fn attribute_string(&self, attribute: Attribute) -> Option<Vec<u8>> {
        self.state().attributes.get(&(attribute as u32)).cloned()
    }

    fn attribute_int(&self, attribute: Attribute) -> Option<u64> {
        self.state()
            .int_attributes
            .get(&(attribute as u32))
            .copied()
    }

    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8], details: &str) {
        self.call("send_response");
        self.state().replies.push(LocalReply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
            details: details.to_string(),
        });
    }
}
