//! The gateway's TOML configuration (`crates/gateway/src/config.rs`, compiled here from its
//! source: the gateway is a binary crate whose dependencies — the whole server — would make
//! this target slow to build). For any text: parsing and checking (`Config::parse`, what
//! `weir serve --config` and a reload run) never panics, and an accepted configuration has what serving needs — listeners, and routes that name defined
//! clusters of valid upstream addresses — and needs no restart to become itself.
#![no_main]

#[allow(dead_code, unused_imports)]
#[path = "../../crates/gateway/src/config.rs"]
mod config;

use config::{Config, Upstream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text) {
        assert!(!config.listeners.is_empty());
        assert!(!config.routes.is_empty());
        for cluster in config.routes.values() {
            let addresses = &config.clusters[cluster].addresses;
            assert!(!addresses.is_empty());
            for address in addresses {
                assert!(Upstream::parse(address).is_ok());
            }
        }
        assert!(config.restart_only_changes(&config).is_empty());
        let _ = format!("{config:?}");
    }
});
