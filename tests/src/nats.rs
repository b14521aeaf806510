//! [`NatsCluster`]: real `nats-server` processes (Debian's package) forming a cluster on
//! loopback ports, with their monitoring endpoints, for the cluster tests; with JetStream on
//! ([`NatsCluster::start_jetstream`]) for the store's.

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `nats-server` binary: `$NATS_SERVER`, or found on `PATH` (or in /usr/sbin).
///
/// # Panics
/// When there is none, with how to install it.
pub fn nats_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.exists())
        .expect("nats-server is not installed: `apt-get install nats-server` (.ci/run does it)")
}

/// A free loopback port (the listener is closed before the server binds it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One server of a [`NatsCluster`].
#[derive(Debug)]
struct Node {
    child: Option<Child>,
    client_port: u16,
    monitor_port: u16,
    cluster_port: u16,
}

impl Node {
    /// A server not started yet, on ports free at this moment.
    fn on_free_ports() -> Node {
        Node {
            child: None,
            client_port: free_port(),
            monitor_port: free_port(),
            cluster_port: free_port(),
        }
    }
}

/// `n` nats-server processes in one cluster (full mesh of routes), killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
    agent: ureq::Agent,
    /// With JetStream: where the servers keep its files (`node{i}/` each).
    jetstream: Option<tempfile::TempDir>,
    /// The servers do not tell clients of the others (`--no_advertise`).
    no_advertise: bool,
    /// What each server writes to its stderr (`node{i}.log`), shown when it fails.
    logs: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `n` servers and waits until every one has a route to every other.
    ///
    /// # Panics
    /// If they do not form the cluster within 20 s.
    pub fn start(n: usize) -> NatsCluster {
        NatsCluster::start_with(n, false, false)
    }

    /// Starts `n` servers that do not tell their clients of the others
    /// (`--no_advertise`): a client stays with the server it was given, so killing that
    /// server cuts it off.
    ///
    /// # Panics
    /// If they do not form the cluster within 20 s.
    pub fn start_without_discovery(n: usize) -> NatsCluster {
        NatsCluster::start_with(n, false, true)
    }

    /// Starts `n` servers with JetStream (each keeping its files in a temporary directory of
    /// its own, kept across [`restart`](Self::restart)) and waits until every route is up and
    /// every server knows JetStream's meta leader (a single server: until JetStream is on).
    ///
    /// # Panics
    /// If they do not get there within 20 s.
    pub fn start_jetstream(n: usize) -> NatsCluster {
        let cluster = NatsCluster::start_with(n, true, false);
        if n == 1 {
            // a single server runs JetStream on its own, with no meta group
            cluster.wait_until("JetStream is on", |c| {
                c.monitor(0, "jsz")
                    .is_some_and(|v| v.get("config").is_some())
            });
        } else {
            cluster.wait_until("JetStream has a meta leader", |c| {
                (0..c.nodes.len()).all(|i| c.meta_leader(i).is_some())
            });
        }
        cluster
    }

    fn start_with(n: usize, jetstream: bool, no_advertise: bool) -> NatsCluster {
        let nodes: Vec<Node> = (0..n).map(|_| Node::on_free_ports()).collect();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let jetstream = jetstream.then(|| tempfile::tempdir().expect("a temporary directory"));
        let mut cluster = NatsCluster {
            nodes,
            agent,
            jetstream,
            no_advertise,
            logs: tempfile::tempdir().expect("a temporary directory"),
        };
        // A port is free when chosen and bound by the server a moment later: another process
        // can take it in between, and the server exits. Then the cluster starts again on new
        // ports (a few times at most).
        for attempt in 1.. {
            for i in 0..n {
                cluster.spawn(i);
            }
            match cluster.wait_for_routes() {
                Ok(()) => break,
                Err(exited) => {
                    assert!(attempt < 3, "NATS: {exited}\n{}", cluster.logs());
                    for i in 0..n {
                        cluster.kill(i);
                        cluster.nodes[i] = Node::on_free_ports();
                    }
                }
            }
        }
        cluster
    }

    /// Waits until every server has a route to every other; `Err` if one exited first.
    ///
    /// # Panics
    /// After 20 s, with the servers' logs.
    fn wait_for_routes(&mut self) -> Result<(), String> {
        let n = self.nodes.len() as u64;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if (0..self.nodes.len()).all(|i| {
                self.monitor(i, "routez")
                    .is_some_and(|v| v["num_routes"].as_u64() == Some(n - 1))
            }) {
                return Ok(());
            }
            for (i, node) in self.nodes.iter_mut().enumerate() {
                if let Some(Ok(Some(status))) = node.child.as_mut().map(Child::try_wait) {
                    return Err(format!(
                        "node{i} exited ({status}) before the cluster formed"
                    ));
                }
            }
            assert!(
                Instant::now() < deadline,
                "NATS: timed out waiting until every route is up\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The end of every server's log, for a failure's message.
    fn logs(&self) -> String {
        (0..self.nodes.len())
            .map(|i| {
                let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                format!("--- node{i}'s log (its end):\n{tail}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.logs.path().join(format!("node{i}.log"))
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect();
        let node = &self.nodes[i];
        let mut cmd = Command::new(nats_server_binary());
        cmd.args(["-a", "127.0.0.1", "-p", &node.client_port.to_string()])
            .args(["-m", &node.monitor_port.to_string()])
            .args(["-n", &format!("node{i}")]);
        if let Some(dir) = &self.jetstream {
            cmd.arg("-js")
                .arg("-sd")
                .arg(dir.path().join(format!("node{i}")));
        }
        if self.no_advertise {
            cmd.arg("--no_advertise=true");
        }
        if self.nodes.len() > 1 {
            cmd.args(["--cluster_name", "xbus-test"])
                .args([
                    "--cluster",
                    &format!("nats://127.0.0.1:{}", node.cluster_port),
                ])
                .args(["--routes", &routes.join(",")]);
        }
        // appended to across restarts
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("the server's log file opens");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.nodes[i].child = Some(child);
    }

    /// The client URL of server `i` (`nats://127.0.0.1:PORT`).
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// `GET /{path}` of server `i`'s monitoring endpoint, as JSON (`None` while it is down).
    pub fn monitor(&self, i: usize, path: &str) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}/{path}", self.nodes[i].monitor_port);
        let mut resp = self.agent.get(&url).call().ok()?;
        let body = resp.body_mut().read_to_string().ok()?;
        serde_json::from_str(&body).ok()
    }

    /// The subjects server `i`'s clients are subscribed to (its own connections only, from
    /// `/connz?subs=1`), sorted.
    pub fn client_subscriptions(&self, i: usize) -> Vec<String> {
        let mut subs: Vec<String> = self
            .monitor(i, "connz?subs=1")
            .map(|v| {
                v["connections"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|c| {
                        c["subscriptions_list"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                    })
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        subs.sort();
        subs
    }

    /// The name server `i` knows JetStream's meta leader by (`node{j}`), if it knows one.
    pub fn meta_leader(&self, i: usize) -> Option<String> {
        let jsz = self.monitor(i, "jsz")?;
        let leader = jsz["meta_cluster"]["leader"].as_str()?;
        (!leader.is_empty()).then(|| leader.to_owned())
    }

    /// The server that leads the stream `stream` (as server `i` reports it), if one does.
    pub fn stream_leader(&self, i: usize, stream: &str) -> Option<usize> {
        let jsz = self.monitor(i, "jsz?accounts=true&streams=true")?;
        let leader = jsz["account_details"]
            .as_array()?
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .find(|s| s["name"] == stream)?["cluster"]["leader"]
            .as_str()?
            .to_owned();
        leader.strip_prefix("node")?.parse().ok()
    }

    /// Kills server `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` again, on the same ports.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// Polls `cond` (every 20 ms) until it holds.
    ///
    /// # Panics
    /// After 20 s, naming `what`, with the servers' logs.
    pub fn wait_until(&self, what: &str, cond: impl Fn(&NatsCluster) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "NATS: timed out waiting until {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
