//! The bridge's line to puppetserver's status API: a TCP relay (TLS passes
//! through untouched, end to end) that the test can cut. Cut, the bridge's
//! status reads fail, so it sees a server without capacity while the
//! server itself keeps serving the agents: that is how the suite gets
//! cached-catalog runs without stopping puppetserver.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct StatusLink {
    pub port: u16,
    cut: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl StatusLink {
    /// Relays `127.0.0.1:<free port>` to `127.0.0.1:target_port`.
    pub async fn start(target_port: u16) -> anyhow::Result<StatusLink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (cut, _) = watch::channel(false);
        let cut = Arc::new(cut);
        let state = Arc::clone(&cut);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if *state.borrow() {
                    // Refused: closed at once, as a dead server would.
                    drop(inbound);
                    continue;
                }
                let mut cut_seen = state.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        // A cut also ends the connections already open (the
                        // poller keeps one alive between reads).
                        _ = cut_seen.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Ok(StatusLink { port, cut, task })
    }

    /// From now on the status API is unreachable through the link.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Reachable again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for StatusLink {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.task.abort();
    }
}
