//! Hosts for the tests that cross a network: network namespaces joined by veth pairs to a
//! bridge, each with an address of its own, removed again when dropped (the ssh target's hosts,
//! the Kubernetes pods).

use std::process::Command;

/// Runs `ip ARGS`, panicking when it fails.
pub fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().unwrap();
    assert!(status.success(), "ip {}", args.join(" "));
}

/// `count` network namespaces on one bridge.
pub struct Network {
    /// Prefix of every name (interfaces have at most 15 characters).
    pub prefix: String,
    /// Each namespace's address, in order.
    pub addresses: Vec<String>,
}

impl Network {
    /// Makes the bridge and `count` namespaces, each with its loopback up and an address.
    pub fn start(count: usize) -> Self {
        // Names unique to this test process.
        let tag = std::process::id() % 100_000;
        let prefix = format!("rs{tag}");
        let subnet = 100 + tag % 100;
        let bridge = format!("{prefix}b");
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("10.214.{subnet}.1/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        let mut network = Self { prefix: prefix.clone(), addresses: Vec::new() };
        for n in 1..=count {
            let (ns, outer, inner) = (network.namespace(n - 1), format!("{prefix}o{n}"), format!("{prefix}i{n}"));
            let address = format!("10.214.{subnet}.{}", 10 + n);
            ip(&["netns", "add", &ns]);
            ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "master", &bridge, "up"]);
            ip(&["netns", "exec", &ns, "ip", "addr", "add", &format!("{address}/24"), "dev", &inner]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", &inner, "up"]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
            network.addresses.push(address);
        }
        network
    }

    /// The name of namespace `index`.
    pub fn namespace(&self, index: usize) -> String {
        format!("{}n{}", self.prefix, index + 1)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for n in 0..self.addresses.len() {
            let _ = Command::new("ip").args(["netns", "delete", &self.namespace(n)]).status();
        }
        let _ = Command::new("ip").args(["link", "delete", &format!("{}b", self.prefix)]).status();
    }
}
