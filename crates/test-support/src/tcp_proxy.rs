//! A loopback TCP relay that a test can cut: every connection through it is closed and new
//! ones are refused until [`TcpProxy::restore`]. Used to take one process's view of the API
//! server away without stopping the shared API server.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

/// See the module docs. Stops relaying on drop.
pub struct TcpProxy {
    local: SocketAddr,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stopped: Arc<AtomicBool>,
}

impl TcpProxy {
    /// Relays `127.0.0.1:<free port>` to `target`.
    pub fn start(target: SocketAddr) -> Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the proxy")?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        {
            let (cut, stopped, open) = (cut.clone(), stopped.clone(), open.clone());
            std::thread::spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            if cut.load(Ordering::Relaxed) {
                                let _ = client.shutdown(Shutdown::Both);
                                continue;
                            }
                            let _ = client.set_nonblocking(false);
                            let Ok(server) = TcpStream::connect(target) else {
                                continue;
                            };
                            relay(client, server, &open);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        Ok(TcpProxy {
            local,
            cut,
            open,
            stopped,
        })
    }

    /// The address to connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
        for stream in self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Relays again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.cut();
    }
}

fn relay(client: TcpStream, server: TcpStream, open: &Arc<Mutex<Vec<TcpStream>>>) {
    let handles = [
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ];
    let [Ok(c1), Ok(s1), Ok(c2), Ok(s2)] = handles else {
        return;
    };
    {
        let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
        open.push(client);
        open.push(server);
    }
    std::thread::spawn(move || pipe(c1, s1));
    std::thread::spawn(move || pipe(s2, c2));
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
