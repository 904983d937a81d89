//! What the server tells of itself beyond STATS: latency histograms
//! recorded on the hot paths ([`timing`]), values read when scraped
//! ([`live`]), and the `--metrics-listen` HTTP listener that serves them
//! ([`http`]). The names are listed in the README ("Metrics").

mod http;
mod live;
mod timing;

pub use http::{MetricsListener, MetricsSocket};
pub use live::Sources;
pub use timing::{LocalRequests, Store, StoreCall, Timing};
