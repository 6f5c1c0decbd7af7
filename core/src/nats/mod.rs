//! The NATS layer: codec, subjects, subscription index and the embedded server.

pub mod proto;
pub mod subject;
