//! A TCP relay on 127.0.0.1 between a dialer and a node: it forwards both directions, keeps
//! a copy of every byte it carried, counts them, and can flip bytes in the listener-to-dialer
//! direction on demand (a man on the path), or stop forwarding that direction after a given
//! number of bytes (a path that stalls mid-stream).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
pub struct Seen {
    /// Every byte carried, both directions, in arrival order per chunk.
    pub bytes: Mutex<Vec<u8>>,
    pub total: AtomicU64,
    /// While set, the last byte of every chunk from the target to the dialer is flipped.
    pub flip: AtomicBool,
    /// Chunks flipped so far.
    pub flipped: AtomicU64,
    /// Target-to-dialer bytes after which that direction stops forwarding (holds what it
    /// reads); `u64::MAX` (the default set by [`Relay::start`]) never holds.
    pub hold_after: AtomicU64,
    /// Target-to-dialer bytes forwarded so far.
    pub forwarded: AtomicU64,
}

pub struct Relay {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Relays every connection made to [`Relay::addr`] to `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen {
            hold_after: AtomicU64::new(u64::MAX),
            ..Seen::default()
        });
        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Ok((dialer, _)) = listener.accept().await {
                    let Ok(upstream) = TcpStream::connect(target).await else {
                        continue;
                    };
                    let (dr, dw) = dialer.into_split();
                    let (ur, uw) = upstream.into_split();
                    tokio::spawn(pipe(dr, uw, seen.clone(), false));
                    tokio::spawn(pipe(ur, dw, seen.clone(), true));
                }
            })
        };
        Relay { addr, seen, task }
    }

    /// Whether `needle` appears anywhere in what the relay carried.
    pub fn carried(&self, needle: &[u8]) -> bool {
        let bytes = self.seen.bytes.lock().unwrap();
        bytes.windows(needle.len()).any(|w| w == needle)
    }

    pub fn total(&self) -> u64 {
        self.seen.total.load(Ordering::SeqCst)
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    seen: Arc<Seen>,
    may_flip: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        seen.bytes.lock().unwrap().extend_from_slice(&buf[..n]);
        seen.total.fetch_add(n as u64, Ordering::SeqCst);
        if may_flip && seen.flip.load(Ordering::SeqCst) {
            buf[n - 1] ^= 0x01;
            seen.flipped.fetch_add(1, Ordering::SeqCst);
        }
        if may_flip {
            let done = seen.forwarded.load(Ordering::SeqCst);
            if done >= seen.hold_after.load(Ordering::SeqCst) {
                // Held: nothing more reaches the dialer on this connection.
                std::future::pending::<()>().await;
            }
            seen.forwarded.fetch_add(n as u64, Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
