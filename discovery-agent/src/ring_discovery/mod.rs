//! Ring discovery (`--ring-tables`): who owns which token, per table, learnt through Alternator
//! itself and published as the snapshot's `ring` member.
//!
//! A separate task, so a slow ring read never delays a `/localnodes` refresh. Each round asks
//! one active node of the published snapshot (the next one on a transport failure):
//!
//! 1. `ListTables` (with `all`), so tables come and go with the cluster;
//! 2. `system.peers` and `system.local`, from the same node: broadcast address and host id →
//!    the address `/localnodes` lists;
//! 3. per table, one read: `system.tablets` for a tablet table, `system.token_ring` of its
//!    keyspace for a vnode table. A table is described (`DescribeTable`: id, hash key) when
//!    first seen, when its read comes back empty (dropped or recreated), and once per idle
//!    interval; its layout is learnt by asking `system.tablets` first.
//!
//! Rows become a [`TableOwnership`], which refuses rings with holes or overlaps; a refused
//! ring keeps the table's previous one (stale ownership is never wrong, only slower). A node
//! that refuses for want of credentials stops the round; the node list is served as before.
//! Whenever a table's ownership changes the ring version increases and the discovery loop
//! rebuilds the snapshot, re-attaching the ring to the current node list.

pub mod client;
pub mod rows;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use alternator_routing::ring::{Layout, RingError, TableOwnership};
use alternator_routing::snapshot::HealthState;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

use crate::config::{RingConfig, RingTables};
use crate::metrics::RoundOutcome;
use crate::sigv4::Signer;
use crate::state::{stopped, unix_ms, AgentState, PublishedRing};
use crate::transport::Transport;
use client::{Call, CallError, Client};
use rows::{AddressBook, Item, Skipped, TableSchema};

/// The metric label of a refused ring.
pub fn rejection_reason(error: &RingError) -> &'static str {
    match error {
        RingError::Empty { .. } => "empty",
        RingError::Overlap { .. } => "overlap",
        RingError::Gap { .. } => "gap",
        RingError::TooManyReplicas { .. } => "too_many_replicas",
        RingError::Malformed(_) => "malformed",
    }
}

/// Builds a table's ownership from its rows. `layout` says which internal table they are.
pub fn assemble(
    table: &str,
    schema: &TableSchema,
    layout: Layout,
    rows: &[Item],
    book: &AddressBook,
) -> (Result<TableOwnership, RingError>, Skipped) {
    match layout {
        Layout::Vnodes => {
            let (ranges, skipped) = rows::token_ring_ranges(table, rows, book);
            let built = TableOwnership::from_ranges(
                table,
                &schema.hash_key,
                schema.key_type,
                Layout::Vnodes,
                ranges,
            );
            (built, skipped)
        }
        Layout::Tablets => {
            let (tablets, skipped) = rows::tablets(rows, book);
            let built =
                TableOwnership::from_tablets(table, &schema.hash_key, schema.key_type, tablets);
            (built, skipped)
        }
    }
}

#[derive(Debug, Clone)]
struct TableState {
    schema: TableSchema,
    described_at: Instant,
    layout: Option<Layout>,
    ownership: Option<TableOwnership>,
    last_rejection: Option<String>,
}

/// What reading one table produced.
enum TableRead {
    /// The table does not exist (any more).
    Gone,
    /// Its rows (possibly none) under this schema and layout.
    Rows {
        schema: TableSchema,
        described_at: Instant,
        layout: Layout,
        rows: Vec<Item>,
    },
}

/// The ring discovery task.
#[derive(Debug)]
pub struct RingDiscovery<T> {
    config: RingConfig,
    signer: Option<Signer>,
    port: u16,
    transport: Arc<T>,
    state: Arc<AgentState>,
    tables: BTreeMap<String, TableState>,
    version: u64,
    rotation: usize,
    refused_logged: bool,
    error_streak: u32,
    last_error: String,
}

impl<T: Transport> RingDiscovery<T> {
    /// A task for `config`, asking Alternator on `port` through `transport`.
    pub fn new(config: RingConfig, port: u16, transport: Arc<T>, state: Arc<AgentState>) -> Self {
        let signer = config.credentials.clone().map(|credentials| Signer {
            credentials,
            region: config.region.clone(),
            service: "dynamodb".to_owned(),
        });
        RingDiscovery {
            config,
            signer,
            port,
            transport,
            state,
            tables: BTreeMap::new(),
            version: 0,
            rotation: rand::random(),
            refused_logged: false,
            error_streak: 0,
            last_error: String::new(),
        }
    }

    /// Refreshes until `stop`: at once when a snapshot with active nodes exists, then every
    /// `refresh_active` while filters report traffic or after the node list changed, every
    /// `refresh_idle` otherwise.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut published = self.state.snapshot.subscribe();
        loop {
            let hosts = self.hosts();
            if hosts.is_empty() {
                tokio::select! {
                    _ = stopped(&mut stop) => return,
                    changed = published.changed() => if changed.is_err() { return },
                }
                continue;
            }
            let started = Instant::now();
            let members = self.members();
            let outcome = tokio::select! {
                outcome = self.round(&hosts) => outcome,
                _ = stopped(&mut stop) => return,
            };
            self.finish(outcome);
            let mut membership_changed = false;
            loop {
                let now = Instant::now();
                let active_due = started + self.config.refresh_active;
                let due = if membership_changed || self.state.is_active(now) {
                    active_due
                } else {
                    started + self.config.refresh_idle
                };
                if now >= due {
                    break;
                }
                // Sleep until due, but look again every active interval, so traffic that
                // starts while idle shortens the wait.
                let next_check = if now < active_due {
                    active_due
                } else {
                    now + self.config.refresh_active
                };
                let wake = due.min(next_check);
                tokio::select! {
                    _ = stopped(&mut stop) => return,
                    _ = sleep_until(wake) => {}
                    changed = published.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        membership_changed |= self.members() != members;
                    }
                }
            }
        }
    }

    /// Active nodes of the published snapshot, rotated per round.
    fn hosts(&mut self) -> Vec<String> {
        let Some(current) = self.state.current() else {
            return Vec::new();
        };
        let mut hosts: Vec<String> = current
            .snapshot
            .nodes()
            .iter()
            .filter(|n| n.health == HealthState::Active)
            .map(|n| n.address.to_string())
            .collect();
        if !hosts.is_empty() {
            let len = hosts.len();
            hosts.rotate_left(self.rotation % len);
            self.rotation = self.rotation.wrapping_add(1);
        }
        hosts
    }

    fn members(&self) -> BTreeSet<IpAddr> {
        self.state
            .current()
            .map(|p| p.snapshot.nodes().iter().map(|n| n.address).collect())
            .unwrap_or_default()
    }

    fn client(&self) -> Client<'_, T> {
        Client {
            transport: &*self.transport,
            port: self.port,
            signer: self.signer.as_ref(),
            timeout: self.config.request_timeout,
        }
    }

    /// One refresh of every table.
    pub async fn round(&mut self, hosts: &[String]) -> RoundOutcome {
        let mut cursor = 0usize;
        let names = match &self.config.tables {
            RingTables::Named(names) => names.clone(),
            RingTables::All => match self.list_tables(hosts, &mut cursor).await {
                Ok(names) => names,
                Err(error) => return self.failed_round(error),
            },
        };
        let listed: BTreeSet<&String> = names.iter().collect();
        let before = self.tables.len();
        self.tables.retain(|name, _| listed.contains(name));
        if self.tables.len() != before {
            info!(
                tables = self.tables.len(),
                "tables left the cluster; their rings are no longer published"
            );
        }
        if names.is_empty() {
            self.publish();
            return RoundOutcome::Ok;
        }
        let book = match self.address_book(hosts, &mut cursor).await {
            Ok(book) => book,
            Err(error) => return self.failed_round(error),
        };
        let mut outcome = RoundOutcome::Ok;
        for name in &names {
            match self.read_table(name, hosts, &mut cursor).await {
                Ok(TableRead::Gone) => {
                    if self.tables.remove(name).is_some() {
                        info!(table = %name, "table no longer exists; its ring is dropped");
                    } else {
                        debug!(table = %name, "table does not exist (yet)");
                    }
                }
                Ok(TableRead::Rows {
                    schema,
                    described_at,
                    layout,
                    rows,
                }) => self.accept(name, schema, described_at, layout, &rows, &book),
                Err(error @ CallError::Refused { .. }) => {
                    self.publish();
                    return self.failed_round(error);
                }
                Err(error) => {
                    debug!(table = %name, %error, "ring read failed; keeping the previous ring");
                    self.last_error = error.to_string();
                    outcome = RoundOutcome::Error;
                }
            }
        }
        self.publish();
        outcome
    }

    fn failed_round(&mut self, error: CallError) -> RoundOutcome {
        match error {
            CallError::Refused {
                status,
                kind,
                message,
            } => {
                self.last_error = format!("HTTP {status} {kind}");
                if !self.refused_logged {
                    warn!(
                        status,
                        error = %kind,
                        message = %message,
                        "Alternator refused ring discovery (authorization is enforced): serving \
                         the node list without a ring; give the agent an access key \
                         (--ring-access-key-id and --ring-secret-access-key, \
                         --ring-credentials-file, or AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY). Logged once."
                    );
                }
                RoundOutcome::Refused
            }
            error => {
                debug!(%error, "ring discovery round failed");
                self.last_error = error.to_string();
                RoundOutcome::Error
            }
        }
    }

    fn finish(&mut self, outcome: RoundOutcome) {
        self.state.metrics.ring.count_round(outcome, unix_ms());
        match outcome {
            RoundOutcome::Ok => {
                if self.refused_logged {
                    info!("Alternator accepts ring discovery again");
                }
                if self.error_streak > 0 {
                    info!(
                        after_failures = self.error_streak,
                        "ring discovery succeeds again"
                    );
                }
                self.refused_logged = false;
                self.error_streak = 0;
            }
            RoundOutcome::Refused => self.refused_logged = true,
            RoundOutcome::Error => {
                self.error_streak = self.error_streak.saturating_add(1);
                if self.error_streak.is_power_of_two() {
                    warn!(
                        consecutive_failures = self.error_streak,
                        last_error = %self.last_error,
                        "ring discovery could not read every table; their previous rings are kept"
                    );
                }
            }
        }
    }

    /// Every table name. Like every read here: asks the hosts from `cursor` on, moving to the
    /// next one when a host is unavailable; the host that answered stays the cursor for the
    /// rest of the round.
    async fn list_tables(
        &self,
        hosts: &[String],
        cursor: &mut usize,
    ) -> Result<Vec<String>, CallError> {
        let client = self.client();
        let mut last = unavailable();
        for i in 0..hosts.len() {
            let at = (*cursor + i) % hosts.len();
            match client.list_tables(&hosts[at]).await {
                Ok((names, pages)) => {
                    self.count(Call::ListTables, true, pages);
                    *cursor = at;
                    return Ok(names);
                }
                Err(error) => {
                    self.count(Call::ListTables, false, 1);
                    if !error.is_unavailable() {
                        return Err(error);
                    }
                    debug!(host = %hosts[at], %error, "ListTables failed; asking the next node");
                    last = error;
                }
            }
        }
        Err(last)
    }

    /// `system.peers` and `system.local`, both from the same node.
    async fn address_book(
        &self,
        hosts: &[String],
        cursor: &mut usize,
    ) -> Result<AddressBook, CallError> {
        let client = self.client();
        let mut last = unavailable();
        for i in 0..hosts.len() {
            let at = (*cursor + i) % hosts.len();
            let host = &hosts[at];
            let result = async {
                let peers = client.items(host, "Scan", client::scan("peers")).await;
                self.count_items(Call::Peers, &peers);
                let (peers, _) = peers?;
                let local = client.items(host, "Scan", client::scan("local")).await;
                self.count_items(Call::Local, &local);
                let (local, _) = local?;
                Ok::<_, CallError>((peers, local))
            }
            .await;
            match result {
                Ok((peers, local)) => {
                    let (book, skipped) = AddressBook::from_rows(&peers, &local);
                    self.state.metrics.ring.count_skipped(&skipped);
                    *cursor = at;
                    return Ok(book);
                }
                Err(error) if error.is_unavailable() => {
                    debug!(%host, %error, "system.peers/local read failed; asking the next node");
                    last = error;
                }
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }

    fn count(&self, call: Call, ok: bool, requests: u32) {
        self.state
            .metrics
            .ring
            .count_requests(call, ok, u64::from(requests));
    }

    fn count_items(&self, call: Call, result: &Result<(Vec<Item>, u32), CallError>) {
        match result {
            Ok((_, pages)) => self.count(call, true, *pages),
            Err(_) => self.count(call, false, 1),
        }
    }

    /// Items of one Query or Scan from any host.
    async fn items_anywhere(
        &self,
        call: Call,
        operation: &str,
        request: serde_json::Value,
        hosts: &[String],
        cursor: &mut usize,
    ) -> Result<Vec<Item>, CallError> {
        let client = self.client();
        let mut last = unavailable();
        for i in 0..hosts.len() {
            let at = (*cursor + i) % hosts.len();
            let result = client.items(&hosts[at], operation, request.clone()).await;
            self.count_items(call, &result);
            match result {
                Ok((items, _)) => {
                    *cursor = at;
                    return Ok(items);
                }
                Err(error) if error.is_unavailable() => {
                    debug!(host = %hosts[at], call = call.as_str(), %error, "ring read failed; asking the next node");
                    last = error;
                }
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }

    async fn describe(
        &self,
        table: &str,
        hosts: &[String],
        cursor: &mut usize,
    ) -> Result<Option<TableSchema>, CallError> {
        let client = self.client();
        let mut last = unavailable();
        for i in 0..hosts.len() {
            let at = (*cursor + i) % hosts.len();
            let result = client
                .call(&hosts[at], "DescribeTable", &json!({"TableName": table}))
                .await;
            self.count(Call::DescribeTable, result.is_ok(), 1);
            match result {
                Ok(answer) => {
                    *cursor = at;
                    return match rows::table_schema(&answer) {
                        Some(schema) => Ok(Some(schema)),
                        None => Err(CallError::Rejected {
                            status: 200,
                            kind: "DescribeTable".to_owned(),
                            message: format!("no usable HASH key definition for {table}"),
                        }),
                    };
                }
                Err(CallError::NotFound(_)) => return Ok(None),
                Err(error) if error.is_unavailable() => last = error,
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }

    async fn read_table(
        &self,
        name: &str,
        hosts: &[String],
        cursor: &mut usize,
    ) -> Result<TableRead, CallError> {
        let now = Instant::now();
        let known = self.tables.get(name);
        let due = known.is_none_or(|s| {
            now.saturating_duration_since(s.described_at) >= self.config.refresh_idle
        });
        let (mut schema, mut described_at, mut layout, mut fresh) = match known {
            Some(state) if !due => (
                state.schema.clone(),
                state.described_at,
                state.layout,
                false,
            ),
            _ => match self.describe(name, hosts, cursor).await? {
                Some(schema) => {
                    // The same table (same id) keeps its layout; a recreated one learns it anew.
                    let layout = known
                        .filter(|s| s.schema.table_id == schema.table_id)
                        .and_then(|s| s.layout);
                    (schema, now, layout, true)
                }
                None => return Ok(TableRead::Gone),
            },
        };
        loop {
            let (layout_read, rows) = self.read_rows(name, &schema, layout, hosts, cursor).await?;
            if !rows.is_empty() || fresh {
                return Ok(TableRead::Rows {
                    schema,
                    described_at,
                    layout: layout_read,
                    rows,
                });
            }
            // Nothing under what we knew: the table may be gone or recreated. Look again once.
            match self.describe(name, hosts, cursor).await? {
                Some(again) => {
                    schema = again;
                    described_at = Instant::now();
                    layout = None;
                    fresh = true;
                }
                None => return Ok(TableRead::Gone),
            }
        }
    }

    /// The rows of the table's internal table; an unknown layout is learnt by asking
    /// `system.tablets` first.
    async fn read_rows(
        &self,
        name: &str,
        schema: &TableSchema,
        layout: Option<Layout>,
        hosts: &[String],
        cursor: &mut usize,
    ) -> Result<(Layout, Vec<Item>), CallError> {
        if layout != Some(Layout::Vnodes) {
            if let Some(id) = &schema.table_id {
                let rows = self
                    .items_anywhere(
                        Call::Tablets,
                        "Query",
                        client::tablets_query(id),
                        hosts,
                        cursor,
                    )
                    .await?;
                if !rows.is_empty() || layout == Some(Layout::Tablets) {
                    return Ok((Layout::Tablets, rows));
                }
            }
        }
        let rows = self
            .items_anywhere(
                Call::TokenRing,
                "Query",
                client::token_ring_query(name),
                hosts,
                cursor,
            )
            .await?;
        Ok((Layout::Vnodes, rows))
    }

    fn accept(
        &mut self,
        name: &str,
        schema: TableSchema,
        described_at: Instant,
        layout: Layout,
        rows: &[Item],
        book: &AddressBook,
    ) {
        let (built, skipped) = assemble(name, &schema, layout, rows, book);
        if skipped.total() > 0 {
            debug!(table = %name, skipped = skipped.total(), "ring rows skipped");
        }
        self.state.metrics.ring.count_skipped(&skipped);
        let state = self
            .tables
            .entry(name.to_owned())
            .or_insert_with(|| TableState {
                schema: schema.clone(),
                described_at,
                layout: Some(layout),
                ownership: None,
                last_rejection: None,
            });
        state.schema = schema;
        state.described_at = described_at;
        state.layout = Some(layout);
        match built {
            Ok(ownership) => {
                if state.ownership.is_none() {
                    info!(table = %name, layout = ?layout, ranges = ownership.len(), "table ring learnt");
                }
                state.ownership = Some(ownership);
                state.last_rejection = None;
            }
            Err(error) => {
                self.state
                    .metrics
                    .ring
                    .count_rejected(rejection_reason(&error));
                let text = error.to_string();
                if state.last_rejection.as_deref() != Some(text.as_str()) {
                    warn!(table = %name, %error, "table ring refused; keeping its previous ring");
                } else {
                    debug!(table = %name, %error, "table ring refused again");
                }
                state.last_rejection = Some(text);
            }
        }
    }

    /// Sends the ring to the discovery loop when any table's ownership changed.
    fn publish(&mut self) {
        let tables: Vec<TableOwnership> = self
            .tables
            .values()
            .filter_map(|s| s.ownership.clone())
            .collect();
        let metrics = &self.state.metrics.ring;
        metrics.set_tables(tables.len());
        let unchanged = self
            .state
            .published_ring
            .borrow()
            .as_ref()
            .is_some_and(|view| view.tables == tables);
        if unchanged || (self.version == 0 && tables.is_empty()) {
            return;
        }
        self.version = if self.version == 0 {
            unix_ms().max(1)
        } else {
            self.version.saturating_add(1)
        };
        metrics.set_version(self.version);
        debug!(
            version = self.version,
            tables = tables.len(),
            "ring changed"
        );
        self.state
            .published_ring
            .send_replace(Some(Arc::new(PublishedRing {
                version: self.version,
                tables,
            })));
    }
}

fn unavailable() -> CallError {
    CallError::Unavailable("no active node to ask".to_owned())
}
