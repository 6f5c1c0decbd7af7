//! stan-runtime: the IO shell around stan-core — sockets, clocks, monitoring HTTP,
//! the command line and logging.

pub mod bench;
pub mod cli;
pub mod cluster;
pub mod config_file;
pub mod driver;
pub mod encryption;
pub mod external;
#[doc(hidden)]
pub mod fuzzing;
pub mod harness;
pub mod http;
pub mod load;
pub mod logger;
pub mod memory;
pub mod metrics;
pub mod nkeys;
pub mod ports_file;
pub mod process;
pub mod raft_log;
pub mod routes;
pub mod server;
pub mod stan_client;
pub mod store;
pub mod tls;
