//! A worker's root: the configuration it routes by, and its side of discovery.
//!
//! A host creates one [`Root`] per worker (in proxy-wasm: per root context) and forwards the
//! root callbacks to it; each request gets a [`RequestFlow`] from [`Root::new_request`].

use std::rc::Rc;
use std::time::Duration;

use crate::config::{ConfigError, FilterConfig};
use crate::host::{log_error, Host};
use crate::poll::Poller;
use crate::request::RequestFlow;
use crate::worker::Worker;

#[derive(Debug)]
pub struct Root<H: Host + Clone> {
    host: H,
    worker: Option<Rc<Worker<H>>>,
    poller: Poller<H::CallId>,
}

impl<H: Host + Clone> Root<H> {
    pub fn new(host: H) -> Self {
        Root {
            host,
            worker: None,
            poller: Poller::new(),
        }
    }

    /// Applies a plugin configuration; on success returns the tick period the host must
    /// call [`Root::on_tick`] with. `seed` is the host's randomness for this worker: it
    /// starts the worker's round robin and names it as a poll-lease owner, so every worker
    /// of one proxy needs its own. An invalid configuration is logged with the field it
    /// names and leaves the previous one in force.
    pub fn configure(&mut self, bytes: &[u8], seed: u64) -> Result<Duration, ConfigError> {
        let config = match FilterConfig::parse(bytes) {
            Ok(c) => c,
            Err(e) => {
                log_error!(&self.host, "alternator-filter: {e}");
                return Err(e);
            }
        };
        self.poller.configure(seed);
        if let Some(previous) = &self.worker {
            previous.metrics.flush(&self.host);
        }
        let tick = config.agent.tick;
        self.worker = Some(Rc::new(Worker::new(self.host.clone(), config, seed)));
        Ok(tick)
    }

    pub fn on_tick(&mut self) {
        if let Some(worker) = self.worker.clone() {
            self.poller.on_tick(&worker);
        }
    }

    /// The host received the answer to HTTP call `id` (the id `dispatch_http_call` gave):
    /// its headers, `:status` included (none at all when the call failed without a
    /// response), and its body.
    pub fn on_agent_answer<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        id: H::CallId,
        headers: &[(K, V)],
        body: &[u8],
    ) {
        if let Some(worker) = self.worker.clone() {
            self.poller.on_answer(&worker, id, headers, body);
        }
    }

    /// The root is going away: flush counters and hand the poll lease over.
    pub fn on_done(&mut self) {
        self.poller.on_done(self.worker.as_deref(), &self.host);
    }

    /// The flow of a new request; `None` before a configuration was accepted.
    pub fn new_request(&self) -> Option<RequestFlow<H>> {
        self.worker.clone().map(RequestFlow::new)
    }

    pub fn worker(&self) -> Option<&Rc<Worker<H>>> {
        self.worker.as_ref()
    }

    pub fn poller(&self) -> &Poller<H::CallId> {
        &self.poller
    }
}
