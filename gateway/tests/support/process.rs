//! The real gateway binary as a child process, for tests that need
//! signals (drain) or several independent nodes. Killed if the test ends
//! early, so no process outlives its test.

use std::{
    net::{SocketAddr, TcpListener},
    process::{Child, Command as Process, Stdio},
    time::Duration,
};

use tokio::time::{sleep, Instant};

pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A gateway process that is killed if the test ends early (a panic), so
/// no process outlives the test.
pub struct Gateway(pub Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for Gateway {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Gateway {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Starts the gateway binary and waits until it accepts connections.
pub async fn spawn_gateway(addr: SocketAddr, extra: &[&str]) -> Gateway {
    spawn_gateway_with_env(addr, extra, &[]).await
}

/// Like [`spawn_gateway`], with environment variables (secrets).
pub async fn spawn_gateway_with_env(
    addr: SocketAddr,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Gateway {
    // Only the gateway package's own tests have the binary built for them;
    // the benchmarks that share this support run nodes in-process.
    let Some(binary) = option_env!("CARGO_BIN_EXE_gateway") else {
        panic!("the gateway binary is built only for the gateway's tests");
    };
    let child = Process::new(binary)
        .args(["--listen", &addr.to_string(), "--log", "warn"])
        .args(extra)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .spawn()
        .expect("gateway binary starts");
    let child = Gateway(child);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return child;
        }
        sleep(Duration::from_millis(50)).await;
    }
    panic!("gateway did not start listening on {addr}");
}

pub fn signal(child: &Child, name: &str) {
    let status = Process::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub async fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "gateway did not exit within {within:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}
