//! A detached cluster in a fixed directory, as `mizzen dev` uses it.
//!
//! ```text
//! cargo run -p mizzen-testcluster --example dev -- up DIR [NODES]
//! KUBECONFIG=DIR/kubeconfig kubectl get nodes
//! cargo run -p mizzen-testcluster --example dev -- status DIR
//! cargo run -p mizzen-testcluster --example dev -- down DIR
//! ```

use std::path::PathBuf;

use mizzen_testcluster::{Cluster, Options};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, dir) = match args.as_slice() {
        [command, dir, ..] => (command.as_str(), PathBuf::from(dir)),
        _ => return Err("usage: dev up|status|down DIR [NODES]".into()),
    };
    match command {
        "up" => {
            let nodes = args.get(2).map(|n| n.parse()).transpose()?.unwrap_or(3);
            let cluster = Cluster::start(Options {
                nodes,
                dir: Some(dir),
                detach: true,
                ..Options::default()
            })
            .await?;
            println!(
                "cluster up in {:.2?}; export KUBECONFIG={}",
                cluster.startup_time(),
                cluster.kubeconfig_path().display()
            );
        }
        "status" => {
            for p in Cluster::running_pids(&dir) {
                println!("{:>24} {}", p.name, p.pid);
            }
        }
        "down" => Cluster::stop_dir(&dir)?,
        other => return Err(format!("unknown command {other}").into()),
    }
    Ok(())
}
