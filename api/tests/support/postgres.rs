//! A real PostgreSQL server for tests: `initdb` into a temporary directory
//! and `postgres` on a free loopback port, as the `postgres` user when the
//! tests run as root (PostgreSQL refuses to run as root). One initdb per
//! test binary serves as a template that each server copies.

use std::{
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Serving TLS only (plain connections are rejected).
    tls: bool,
    ca_pem: Option<String>,
    /// fsync and synchronous commit left on.
    durable: bool,
}

impl Postgres {
    pub async fn start() -> Postgres {
        Postgres::start_with(false).await
    }

    /// A server that keeps PostgreSQL's durability settings (fsync and
    /// synchronous commit on), for benchmarks whose figures must be real.
    pub async fn start_durable() -> Postgres {
        let mut server = Postgres::start_with(false).await;
        server.stop();
        server.durable = true;
        server.spawn().await;
        server
    }

    /// A server that accepts TLS connections only, with a certificate for
    /// `localhost` issued by a fresh test CA; returns the CA's PEM too.
    pub async fn start_tls() -> (Postgres, String) {
        let mut server = Postgres::start_with(true).await;
        let ca = server.ca_pem.take().unwrap_or_default();
        (server, ca)
    }

    /// Writes a certificate, its key and a TLS-only pg_hba.conf into the
    /// data directory; returns the issuing CA's PEM.
    fn install_certificate(dir: &Path) -> String {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let data = dir.join("data");
        std::fs::write(data.join("server.crt"), server.pem()).unwrap();
        std::fs::write(data.join("server.key"), key.serialize_pem()).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostnossl all all all reject\nhostssl all all all trust\n",
        )
        .unwrap();
        let _ = Command::new("chmod")
            .arg("600")
            .arg(data.join("server.key"))
            .status();
        ca.pem()
    }

    async fn start_with(tls: bool) -> Postgres {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("api-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(template(), &dir.join("data"));
        std::fs::create_dir_all(dir.join("socket")).unwrap();
        let ca_pem = tls.then(|| Postgres::install_certificate(&dir));
        chown_to_postgres(&dir);
        let mut server = Postgres {
            port,
            dir,
            child: None,
            tls,
            ca_pem,
            durable: false,
        };
        server.spawn().await;
        server
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL over TLS, naming the host the certificate is for.
    pub fn tls_url(&self) -> String {
        format!(
            "postgres://postgres@localhost:{}/postgres?sslmode=require",
            self.port
        )
    }

    async fn spawn(&mut self) {
        let mut command = as_postgres(binary("postgres"));
        command
            .arg("-D")
            .arg(self.dir.join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-k")
            .arg(self.dir.join("socket"))
            .args(["-c", "max_connections=100"])
            .args(["-c", if self.tls { "ssl=on" } else { "ssl=off" }])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if !self.durable {
            // Tests need correctness, not crash safety of the test server.
            command.args(["-c", "fsync=off", "-c", "synchronous_commit=off"]);
            command.args(["-c", "full_page_writes=off"]);
        }
        self.child = Some(command.spawn().expect("postgres runs"));
        for _ in 0..250 {
            let up = if self.tls {
                // Plain connections are refused by pg_hba once it runs.
                matches!(
                    tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await,
                    Err(e) if e.as_db_error().is_some()
                )
            } else {
                tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
                    .await
                    .is_ok()
            };
            if up {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("postgres did not start on port {}", self.port);
    }

    /// Stops the server (fast shutdown: clients are cut off), as an outage.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// A connection for the test's own queries.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("test connection");
        tokio::spawn(connection);
        client
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A freshly initialised data directory, made once and kept (in the temp
/// directory, named by the initdb version) for later runs; built under a
/// private name and renamed, so concurrent runs never see half of one.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let initdb = binary("initdb");
        let version = Command::new(&initdb).arg("--version").output().unwrap();
        let version: String = String::from_utf8_lossy(&version.stdout)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        let dir = std::env::temp_dir().join(format!("api-pg-template-{version}"));
        if dir.join("data").join("PG_VERSION").is_file() {
            return dir.join("data");
        }
        let building = std::env::temp_dir().join(format!("api-pg-building-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&building);
        std::fs::create_dir_all(&building).unwrap();
        chown_to_postgres(&building);
        let status = as_postgres(initdb)
            .arg("-D")
            .arg(building.join("data"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb runs (scripts/install-postgres installs it)");
        assert!(status.success(), "initdb failed");
        if std::fs::rename(&building, &dir).is_err() {
            // Another run got there first.
            let _ = std::fs::remove_dir_all(&building);
        }
        dir.join("data")
    })
}

/// A PostgreSQL program: on PATH, else in Debian's versioned directory.
fn binary(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if let Some(path) = on_path {
        return path;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.path().join("bin").join(name))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.is_file());
    versions.sort();
    versions
        .pop()
        .unwrap_or_else(|| panic!("{name} not found: run scripts/install-postgres"))
}

/// The uid and gid of the `postgres` user, when running as root.
fn postgres_ids() -> Option<(u32, u32)> {
    let me = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
}

fn as_postgres(program: PathBuf) -> Command {
    let mut command = Command::new(program);
    if let Some((uid, gid)) = postgres_ids() {
        command.uid(uid).gid(gid);
    }
    command
}

fn chown_to_postgres(dir: &Path) {
    if postgres_ids().is_some() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "copying the template data directory");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
