//! Integration tests: real clusters on ephemeral loopback ports, real clients.

mod accounts;
mod bench;
mod cli;
mod client;
mod client_files;
mod client_shell;
mod concurrency;
mod data_connections;
mod embedding;
mod faults;
mod files;
mod ftps;
mod limits;
mod logs_and_reload;
mod notifications;
mod operations;
mod packaging;
mod proxy_protocol;
mod rclone;
mod routing;
#[cfg(feature = "etcd")]
mod shared_registry;
mod site_commands;
mod stock_clients;
mod support;
mod wire;
mod workers;
