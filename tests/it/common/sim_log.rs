//! What the nodes of a simulation log that a test must see: every entries batch a node
//! refused from a peer (`kappalog::sync::inbound` warns "refused an entries batch"), with
//! its reason, attributed to the seed whose runtime threads (named `sim-SEED`) logged it.
//! Optionally also the nodes' logs, filtered by `RUST_LOG`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The runtime thread name prefix [`refused_batches`] attributes events by.
pub const THREAD_PREFIX: &str = "sim-";

static REFUSED: Mutex<BTreeMap<u64, Vec<Refused>>> = Mutex::new(BTreeMap::new());

/// One refused batch: why, and from which peer key.
#[derive(Clone, Debug)]
pub struct Refused {
    pub reason: String,
    pub peer_author: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (from {})", self.reason, self.peer_author)
    }
}

/// Installs the process-wide subscriber (once; later calls do nothing).
///
/// The other integration tests run in this process too, so without `RUST_LOG` the
/// subscriber takes only the refusal warnings: every other callsite stays disabled, as it
/// is with no subscriber, and the other tests neither pay for nor see it.
pub fn install() {
    let refused =
        RefusedBatches.with_filter(filter_fn(is_refusal_warning).with_max_level_hint(Level::WARN));
    let subscriber = tracing_subscriber::registry().with(refused);
    // Two calls, not one with an `Option` layer: a `None` layer still counts as interested
    // in every callsite, which would enable the other tests' warnings and errors.
    let _ = match std::env::var_os("RUST_LOG") {
        Some(_) => subscriber
            .with(
                tracing_subscriber::fmt::layer()
                    .with_test_writer()
                    .with_filter(EnvFilter::from_default_env()),
            )
            .try_init(),
        None => subscriber.try_init(),
    };
}

/// The warnings `kappalog::sync::inbound` logs for a refused batch (and its other warnings).
fn is_refusal_warning(meta: &Metadata<'_>) -> bool {
    *meta.level() == Level::WARN && meta.target() == "kappalog::sync::inbound"
}

/// Takes the batches refused under `seed`'s runtime so far.
pub fn refused_batches(seed: u64) -> Vec<Refused> {
    REFUSED.lock().unwrap().remove(&seed).unwrap_or_default()
}

struct RefusedBatches;

impl<S: Subscriber> Layer<S> for RefusedBatches {
    /// Sees only [`is_refusal_warning`] events (the filter in [`install`]).
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let Some(seed) = std::thread::current()
            .name()
            .and_then(|n| n.strip_prefix(THREAD_PREFIX))
            .and_then(|s| s.parse().ok())
        else {
            return;
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message.contains("refused an entries batch") {
            let refused = Refused {
                reason: fields.reason,
                peer_author: fields.peer_author,
            };
            REFUSED
                .lock()
                .unwrap()
                .entry(seed)
                .or_default()
                .push(refused);
        }
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    reason: String,
    peer_author: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let slot = match field.name() {
            "message" => &mut self.message,
            "reason" => &mut self.reason,
            "peer_author" => &mut self.peer_author,
            _ => return,
        };
        *slot = format!("{value:?}");
    }
}
