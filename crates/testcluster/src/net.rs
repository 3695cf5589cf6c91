//! What the cluster's processes listen on and connect to, read from `/proc`.
//!
//! A process's sockets are the `socket:[<inode>]` links in `/proc/<pid>/fd`; `/proc/net/tcp` and
//! `/proc/net/tcp6` map each inode to its local and remote address and its TCP state.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::{Error, Result};

/// The TCP states that matter here; see `include/net/tcp_states.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// An open connection.
    Established,
    /// A listening socket.
    Listen,
    /// A connection being opened (`SYN_SENT`, `SYN_RECV`).
    Connecting,
    /// Any other state (closing, `TIME_WAIT`, ...), with its kernel code.
    Other(u8),
}

impl TcpState {
    fn from_code(code: u8) -> Self {
        match code {
            0x01 => TcpState::Established,
            0x02 | 0x03 => TcpState::Connecting,
            0x0A => TcpState::Listen,
            other => TcpState::Other(other),
        }
    }
}

/// One TCP socket held by a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketInfo {
    /// The process holding the socket.
    pub pid: u32,
    /// The socket's inode number.
    pub inode: u64,
    /// The local address.
    pub local: SocketAddr,
    /// The remote address (`0.0.0.0:0` / `[::]:0` for a listener).
    pub remote: SocketAddr,
    /// The TCP state.
    pub state: TcpState,
}

/// Whether `ip` is a loopback address: `127.0.0.0/8`, `::1` or `::ffff:127.x.y.z`.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// All TCP sockets (IPv4 and IPv6) of the given processes. Processes that no longer exist are
/// skipped.
pub fn sockets(pids: impl IntoIterator<Item = u32>) -> Result<Vec<SocketInfo>> {
    let mut table = HashMap::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).map_err(Error::io(format!("reading {file}")))?;
        table.extend(parse_proc_net_tcp(&text));
    }
    let mut found = Vec::new();
    for pid in pids {
        for inode in socket_inodes(pid) {
            if let Some(&(local, remote, state)) = table.get(&inode) {
                found.push(SocketInfo {
                    pid,
                    inode,
                    local,
                    remote,
                    state,
                });
            }
        }
    }
    Ok(found)
}

/// The listening TCP sockets of the given processes: what the cluster exposes. A test asserts
/// that every one of them [`is_loopback`].
pub fn listening_sockets(pids: impl IntoIterator<Item = u32>) -> Result<Vec<SocketInfo>> {
    let mut all = sockets(pids)?;
    all.retain(|s| s.state == TcpState::Listen);
    Ok(all)
}

/// The inodes of the sockets open in `/proc/<pid>/fd` (empty if the process is gone).
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| parse_socket_link(target.to_str()?))
        .collect()
}

/// `socket:[12345]` -> `12345`.
fn parse_socket_link(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Parses the text of `/proc/net/tcp` or `/proc/net/tcp6` into inode -> (local, remote, state).
/// Malformed lines are skipped.
pub(crate) fn parse_proc_net_tcp(text: &str) -> HashMap<u64, (SocketAddr, SocketAddr, TcpState)> {
    text.lines()
        .skip(1) // the header
        .filter_map(|line| {
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = parse_hex_addr(fields.get(1)?)?;
            let remote = parse_hex_addr(fields.get(2)?)?;
            let state = TcpState::from_code(u8::from_str_radix(fields.get(3)?, 16).ok()?);
            let inode = fields.get(9)?.parse().ok()?;
            Some((inode, (local, remote, state)))
        })
        .collect()
}

/// Parses `0100007F:1F90` (IPv4) or a 32-digit IPv6 address with a port. The kernel prints each
/// 32-bit word of the address in host byte order.
fn parse_hex_addr(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0100007F:9C40 0100007F:0CEA 01 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 20 4 30 10 -1
   3: 0F02000A:A1B2 0A00600A:01BB 02 00000001:00000000 01:00000200 00000000     0        0 1004 1 0000000000000000 100 0 0 10 0
garbage line
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:0051 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:0052 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2003 1 0000000000000000 100 0 0 10 0
";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ipv4_table() {
        let table = parse_proc_net_tcp(TCP);
        assert_eq!(table.len(), 4);
        assert_eq!(
            table[&1001],
            (addr("127.0.0.1:3306"), addr("0.0.0.0:0"), TcpState::Listen)
        );
        assert_eq!(table[&1002].0, addr("0.0.0.0:8080"));
        assert_eq!(table[&1003].2, TcpState::Established);
        assert_eq!(
            table[&1004],
            (
                addr("10.0.2.15:41394"),
                addr("10.96.0.10:443"),
                TcpState::Connecting
            )
        );
    }

    #[test]
    fn parses_ipv6_table() {
        let table = parse_proc_net_tcp(TCP6);
        assert_eq!(table[&2001].0, addr("[::1]:80"));
        assert_eq!(table[&2002].0, addr("[::]:81"));
        assert_eq!(table[&2003].0, addr("[::ffff:127.0.0.1]:82"));
    }

    #[test]
    fn loopback_check_rejects_wildcard_and_private_addresses() {
        let listeners: Vec<SocketAddr> = parse_proc_net_tcp(TCP)
            .into_values()
            .chain(parse_proc_net_tcp(TCP6).into_values())
            .filter(|(_, _, state)| *state == TcpState::Listen)
            .map(|(local, _, _)| local)
            .collect();
        let exposed: Vec<SocketAddr> = listeners
            .into_iter()
            .filter(|a| !is_loopback(a.ip()))
            .collect();
        let mut exposed: Vec<String> = exposed.iter().map(ToString::to_string).collect();
        exposed.sort();
        assert_eq!(exposed, ["0.0.0.0:8080", "[::]:81"]);
        assert!(!is_loopback("10.96.0.10".parse().unwrap()));
        assert!(is_loopback("127.3.4.5".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn parses_socket_links() {
        assert_eq!(parse_socket_link("socket:[12345]"), Some(12345));
        assert_eq!(parse_socket_link("pipe:[12345]"), None);
        assert_eq!(parse_socket_link("/dev/null"), None);
    }

    #[test]
    fn finds_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let found = listening_sockets([std::process::id()]).unwrap();
        assert!(
            found
                .iter()
                .any(|s| s.local == addr(&format!("127.0.0.1:{port}"))),
            "{found:?}"
        );
    }
}
