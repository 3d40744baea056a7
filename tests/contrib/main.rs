//! What ships beside the crate: the demo's pieces (`examples/demo/`) and the Grafana dashboard
//! and Prometheus alerts (`contrib/`).

mod dashboards;
mod demo_closed;
mod demo_svg;
