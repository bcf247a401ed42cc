//! The process limits that decide how many connections one process holds,
//! and plain-language advice when they are too low.

/// Raises the open-file soft limit to the hard limit; returns the limit now
/// in force.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_max;
            }
        }
        limit.rlim_cur
    }
}

/// Problems that will stop `connections` connections, as advice lines.
pub fn advice(connections: usize, fd_limit: u64, source_ips: usize) -> Vec<String> {
    let mut lines = Vec::new();
    if (connections as u64) + 64 > fd_limit {
        lines.push(format!(
            "open-file limit is {fd_limit}, below {connections} connections: raise it (ulimit -n, \
             LimitNOFILE, fs.nr_open) or spread the load over several processes"
        ));
    }
    let ports = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|n| n.parse::<usize>().ok());
            Some(it.next()?..it.next()?)
        });
    if let Some(range) = ports {
        let per_ip = range.len() + 1;
        if connections > per_ip * source_ips {
            lines.push(format!(
                "{source_ips} source address(es) x {per_ip} ephemeral ports (net.ipv4.ip_local_port_range) \
                 < {connections} connections: use more --source-ips (loopback 127.0.0.x) or widen the range"
            ));
        }
    }
    lines
}
