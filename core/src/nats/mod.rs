//! The NATS layer: codec, subjects, subscription index and the embedded server.

pub mod account;
pub mod conn;
pub mod link;
pub mod monitor;
pub mod proto;
pub mod server;
pub mod subject;
pub mod sublist;

pub use conn::{CloseReason, ConnId, ConnectOptions, InternalMsg};
pub use server::route::{ClusterConfig, RouteUrl, RouteView};
pub use server::{parse_host_port, route, Auth, Config, Input, Login, Output, Server};
