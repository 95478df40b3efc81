//! The test server helper itself: a server a test owns is stopped, by its pid, when dropped.

use warren_store::StateStore;
use warren_store_postgres::testing::{self, TestServer};

#[test]
fn an_owned_server_serves_and_stops_when_dropped() {
    if testing::shared().is_none() {
        return;
    }
    let server = TestServer::start().unwrap();
    assert!(server.is_running());
    let (pid, data) = (server.pid(), server.data_dir().to_path_buf());
    assert!(data.is_dir());
    let store = super::replica(&server.fresh_database());
    assert!(store.list(true).unwrap().is_empty());
    drop(store);
    drop(server);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "the server {pid} still runs: {stat}"
    );
    assert!(!data.exists(), "its directory {} is left", data.display());
}
