//! The cluster's moving parts, below the FTP servers: the [`registry`] of servers (no I/O), the
//! [`secret`] that registry changes must prove, the lean FTP [`control`] connection of our own
//! hops, the main server's [`worker_client`] (the only code that talks to workers) and
//! [`router`] (the one retry policy), and a worker's [`join`] (the only code in a worker that
//! talks to the main server), and the [`shared`] registry and counters of several main servers
//! (on etcd with the `etcd` feature).
//!
//! Nothing here knows about libunftp: the SITE handlers ([`crate::site_cmds`]) and the servers
//! ([`crate::server`]) use these parts, never the other way round.

pub mod control;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod join;
pub mod pipeline;
pub mod registry;
pub mod router;
pub mod secret;
pub mod shared;
pub mod tls;
pub mod worker_client;
