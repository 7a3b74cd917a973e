//! nginx with nginx-rtmp (Debian's `libnginx-mod-rtmp`), an RTMP server
//! Glass did not write, started on loopback with a generated configuration:
//! the reference Glass's relay is measured against (`glass bench relay
//! --peer nginx-rtmp`). One process (`master_process off`), so the process
//! that serves is the one pinned and timed, as `worker_processes 1` would
//! give one worker.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::relay::APP;

/// Where Debian installs the module.
pub const MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// What to install when nginx or the module is missing.
pub const INSTALL: &str = "apt-get install nginx libnginx-mod-rtmp";

/// A running nginx-rtmp; killed when dropped.
pub struct NginxRtmp {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

/// Whether nginx and its RTMP module are installed; the error says what to
/// install.
pub fn available() -> Result<()> {
    let ok = Command::new("nginx")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!("nginx is not installed ({INSTALL})");
    }
    if !std::path::Path::new(MODULE).exists() {
        bail!("nginx's RTMP module is not at {MODULE} ({INSTALL})");
    }
    Ok(())
}

/// The configuration: one RTMP server on `addr`, application `live` with
/// `live on` (nginx-rtmp's defaults otherwise: no GOP cache, so a player
/// starts at the next message), room for `connections`.
pub fn config(addr: SocketAddr, connections: usize, dir: &std::path::Path) -> String {
    format!(
        "load_module {MODULE};\n\
         daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         worker_rlimit_nofile {files};\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/error.log warn;\n\
         events {{ worker_connections {connections}; }}\n\
         rtmp {{\n  server {{\n    listen {addr};\n    chunk_size 4096;\n    application {APP} {{ live on; }}\n  }}\n}}\n",
        files = connections * 2 + 64,
        dir = dir.display(),
    )
}

impl NginxRtmp {
    /// Starts nginx-rtmp on a free loopback port for up to `connections`
    /// clients and waits (at most 5 s) until it accepts connections.
    pub fn start(connections: usize) -> Result<NginxRtmp> {
        available()?;
        let addr = free_loopback_port()?;
        let dir = std::env::temp_dir().join(format!(
            "glass-nginx-{}-{}",
            std::process::id(),
            addr.port()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(addr, connections + 16, &dir))?;
        let mut cmd = Command::new("nginx");
        cmd.arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        crate::topology::die_with_parent(&mut cmd);
        let child = cmd.spawn().context("starting nginx")?;
        let mut n = NginxRtmp { child, dir, addr };
        let t0 = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = n.child.try_wait()? {
                let log = std::fs::read_to_string(n.dir.join("error.log")).unwrap_or_default();
                bail!("nginx exited at start ({status}): {}", log.trim());
            }
            if t0.elapsed() > Duration::from_secs(5) {
                bail!("nginx did not accept connections on {addr} within 5 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(n)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its error log so far (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for NginxRtmp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback address whose port was free a moment ago.
fn free_loopback_port() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    l.local_addr().map_err(|e| anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_the_module_the_address_and_the_application() {
        let c = config(
            "127.0.0.1:1935".parse().unwrap(),
            100,
            std::path::Path::new("/tmp/x"),
        );
        assert!(c.starts_with(&format!("load_module {MODULE};")));
        assert!(c.contains("listen 127.0.0.1:1935;"));
        assert!(c.contains("application live { live on; }"));
        assert!(c.contains("worker_connections 100;"));
        assert!(c.contains("master_process off;"));
    }
}
