//! A real nginx (Debian's package, installed by `scripts/install-nginx`) in
//! front of gateway nodes, balancing by a consistent hash of the gateway's
//! affinity cookie: the on-premises stand-in for the ALB's
//! application-cookie stickiness. Runs in the foreground on a free loopback
//! port with its files in a temporary directory; killed when dropped.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::process::free_port;

pub struct Nginx {
    pub addr: SocketAddr,
    dir: PathBuf,
    child: Child,
}

impl Nginx {
    /// Proxies `/ws` on a free port to `backends`, hashing `cookie`.
    pub async fn start(backends: &[SocketAddr], cookie: &str) -> Nginx {
        let addr = free_port();
        let dir =
            std::env::temp_dir().join(format!("nginx-test-{}-{}", std::process::id(), addr.port()));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let servers: String = backends
            .iter()
            // max_fails=0: a node that refused during a restart is tried
            // again at once when it is back, as the ALB does after health
            // checks pass.
            .map(|b| format!("        server {b} max_fails=0;\n"))
            .collect();
        // As root, workers would switch to `nobody`, who cannot write here.
        let user = if running_as_root() {
            "user root;\n"
        } else {
            ""
        };
        let conf = format!(
            "{user}worker_processes 1;\n\
             pid {dir}/nginx.pid;\n\
             error_log {dir}/logs/error.log warn;\n\
             worker_rlimit_nofile 16384;\n\
             events {{ worker_connections 8192; }}\n\
             http {{\n\
                 access_log off;\n\
                 client_body_temp_path {dir}/body;\n\
                 proxy_temp_path {dir}/proxy;\n\
                 fastcgi_temp_path {dir}/fastcgi;\n\
                 uwsgi_temp_path {dir}/uwsgi;\n\
                 scgi_temp_path {dir}/scgi;\n\
                 upstream gateways {{\n\
                     hash $cookie_{cookie} consistent;\n\
             {servers}\
                 }}\n\
                 server {{\n\
                     listen {addr};\n\
                     location / {{\n\
                         proxy_pass http://gateways;\n\
                         proxy_http_version 1.1;\n\
                         proxy_set_header Upgrade $http_upgrade;\n\
                         proxy_set_header Connection \"upgrade\";\n\
                         proxy_read_timeout 3600s;\n\
                         proxy_next_upstream error timeout;\n\
                     }}\n\
                 }}\n\
             }}\n",
            dir = dir.display(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let binary = if std::path::Path::new("/usr/sbin/nginx").exists() {
            "/usr/sbin/nginx"
        } else {
            "nginx"
        };
        let child = Command::new(binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx is installed (scripts/install-nginx)");
        let nginx = Nginx { addr, dir, child };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return nginx;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nginx did not start on {addr}");
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
