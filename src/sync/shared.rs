//! The state the tasks of one node's sync share: the listener ([`super::listener`]) and the
//! dialers ([`super::peers`]) both start sessions from it, so it sits below both.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};
use tokio_util::task::TaskTracker;

use super::admission::Admission;
use super::config::SyncConfig;
use super::net::Network;
use super::pin_file::PinStore;
use super::self_probe::SelfProbe;
use super::session::SessionContext;
use super::status::{Alarms, PeerRegistry};
use super::transport::Role;
use crate::node::Node;

/// State shared by the tasks of one node's sync. Holds no [`Node`] (tasks get the node as
/// an argument), so there is no reference cycle.
pub struct SyncShared {
    pub(super) config: SyncConfig,
    pub(super) registry: Arc<PeerRegistry>,
    pub(super) admission: Arc<Admission>,
    pub(super) probe: Arc<SelfProbe>,
    pub(super) pins: Arc<PinStore>,
    pub(super) alarms: Arc<Alarms>,
    pub(super) shutdown: watch::Sender<bool>,
    /// The sync tasks (each also one of the node's): closed by `SyncHandle::shutdown`.
    pub(super) tasks: TaskTracker,
    /// The running dialers, by configured address: each one's wake-up.
    pub(super) wake: Mutex<BTreeMap<String, Arc<Notify>>>,
    pub(super) listen_addr: Option<SocketAddr>,
    /// Where the dialers connect.
    pub(super) network: Arc<dyn Network>,
}

impl SyncShared {
    /// Runs `task` as one of `node`'s tasks, tracked here too, so that sync's shutdown can
    /// wait for it (see *Shutdown* in [`super::peers`]).
    pub(super) fn spawn<F>(&self, node: Node, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        node.spawn(self.tasks.track_future(task));
    }

    /// The context of a session with the peer known as `key`, neither told the own-feed
    /// fence outcome nor shed by the listener: each side adds the one it needs.
    pub(super) fn session_context(
        &self,
        node: &Node,
        key: String,
        role: Role,
        shutdown: watch::Receiver<bool>,
    ) -> SessionContext {
        SessionContext {
            node: node.clone(),
            config: self.config.clone(),
            registry: self.registry.clone(),
            admission: self.admission.clone(),
            probe: self.probe.clone(),
            pins: self.pins.clone(),
            alarms: self.alarms.clone(),
            key,
            role,
            version: self.config.max_protocol_version,
            shutdown,
            on_have: None,
            shed: None,
        }
    }

    /// Tells every sync task to stop (sessions end with `Bye(Shutdown)`).
    pub(super) fn stop(&self) {
        self.tasks.close();
        let _ = self.shutdown.send(true);
    }
}
