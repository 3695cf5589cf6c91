//! Starts a cluster, prints how long each stage took, and stops it again.
//!
//! `cargo run -p mizzen-testcluster --example start_stop -- [NODES]` (default 3 nodes).

use std::time::Instant;

use mizzen_testcluster::{Cluster, Options};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let nodes = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 3,
    };
    let started = Instant::now();
    let cluster = Cluster::start(Options {
        nodes,
        ..Options::default()
    })
    .await?;
    let total = started.elapsed();
    println!("state directory: {}", cluster.dir().display());
    for (phase, at) in cluster.startup_phases() {
        println!("{phase:>24}: {at:>10.2?} after launching etcd");
    }
    println!(
        "{nodes} nodes Ready in {:.2?} (start() call incl. certificates and binary lookup: {total:.2?})",
        cluster.startup_time()
    );
    let stopping = Instant::now();
    cluster.stop()?;
    println!("stopped in {:.2?}", stopping.elapsed());
    Ok(())
}
