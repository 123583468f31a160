//! The generated fleet keeps Foreman's real shape: a sample of clones,
//! computed by the bridge from the replica, equals real Foreman's golden
//! answer for their source host with only the clone's names rewritten.

use std::net::TcpListener;

use pvc_bridge::Bridge;
use pvc_testkit::{cluster, fleet};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/foreman");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_clones_match_their_golden_source() -> anyhow::Result<()> {
    let cluster = cluster::shared();
    let db = cluster.foreman_db("fleet").await?;
    let primary = db.connect_primary().await?;
    primary.batch_execute(fleet::FLEET_SQL).await?;
    // 10 clone batches of the 40 golden hosts.
    let row = primary
        .query_one("SELECT pvc_fleet_generate(400)", &[])
        .await?;
    assert_eq!(row.get::<_, i32>(0), 400);
    cluster.wait_replica_caught_up().await?;

    let config = pvc_bridge::config::load_from(
        None,
        [
            ("PVC_DATABASE__PRIMARY", db.primary_url.as_str()),
            ("PVC_DATABASE__REPLICAS", db.replica_url.as_str()),
            ("PVC_ENC__FOREMAN_URL", "https://localhost.localdomain.net"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )?;
    let bridge = Bridge::new(&config)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = pvc_bridge::serve(&bridge, listener, 1)?;
    let handle = server.handle();
    tokio::spawn(server);
    let http = reqwest::Client::new();

    let hosts = std::fs::read_to_string(format!("{GOLDEN}/hosts.txt"))?;
    let mut checked = 0;
    for (n, golden_host) in hosts.lines().filter(|l| !l.is_empty()).enumerate() {
        // A different batch for each golden host, deterministic.
        let clone = (n as u32 * 7) % 10 + 1;
        let name = fleet::clone_name(golden_host, clone);
        let golden = std::fs::read_to_string(format!("{GOLDEN}/enc/{golden_host}.yml"))?;
        let expected = fleet::expected_enc(&golden, golden_host, clone);
        let response = http
            .get(format!("{base}/node/{name}?format=yml"))
            .send()
            .await?;
        assert_eq!(response.status().as_u16(), 200, "{name}");
        let body = response.text().await?;
        assert_eq!(body, expected, "{name} (clone {clone} of {golden_host})");
        assert_ne!(body, golden, "{name} must differ from its source");
        checked += 1;
    }
    assert_eq!(checked, 40);
    handle.stop(true).await;
    Ok(())
}
