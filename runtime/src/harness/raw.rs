//! A raw NATS text-protocol connection: the bytes a hostile client writes are exactly
//! the bytes the test chose, and what the server answers is read back verbatim.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RawConn {
    pub stream: TcpStream,
    /// Everything read so far and not consumed by [`RawConn::read_until`].
    pub seen: Vec<u8>,
}

impl RawConn {
    /// Connects; does not read the server's INFO.
    pub async fn open(addr: &str) -> Result<RawConn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(RawConn {
            stream,
            seen: Vec::new(),
        })
    }

    /// Connects, reads INFO, sends `CONNECT {}` and waits for the PONG of a PING.
    pub async fn handshake(addr: &str) -> Result<RawConn, String> {
        let mut c = RawConn::open(addr).await?;
        c.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n").await?;
        c.read_until(b"PONG\r\n", Duration::from_secs(20)).await?;
        Ok(c)
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Reads until `want` has arrived; returns (and consumes) everything up to and
    /// including it. Fails on EOF or after `within`.
    pub async fn read_until(&mut self, want: &[u8], within: Duration) -> Result<Vec<u8>, String> {
        let deadline = tokio::time::Instant::now() + within;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(at) = find(&self.seen, want) {
                let rest = self.seen.split_off(at + want.len());
                return Ok(std::mem::replace(&mut self.seen, rest));
            }
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => {
                    return Err(format!(
                        "no {:?} within {within:?}; got {:?}",
                        String::from_utf8_lossy(want),
                        tail(&self.seen)
                    ))
                }
                Ok(Ok(0)) | Ok(Err(_)) => {
                    return Err(format!(
                        "closed before {:?}; got {:?}",
                        String::from_utf8_lossy(want),
                        tail(&self.seen)
                    ))
                }
                Ok(Ok(n)) => self.seen.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Reads until `n` bytes are available and returns (consumes) them.
    pub async fn take(&mut self, n: usize, within: Duration) -> Result<Vec<u8>, String> {
        let deadline = tokio::time::Instant::now() + within;
        let mut buf = vec![0u8; 64 * 1024];
        while self.seen.len() < n {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => return Err(format!("{n} bytes did not arrive within {within:?}")),
                Ok(Ok(0)) | Ok(Err(_)) => return Err(format!("closed before {n} bytes")),
                Ok(Ok(k)) => self.seen.extend_from_slice(&buf[..k]),
            }
        }
        let rest = self.seen.split_off(n);
        Ok(std::mem::replace(&mut self.seen, rest))
    }

    /// Reads to end of stream; returns what arrived, or fails after `within`.
    pub async fn read_to_close(&mut self, within: Duration) -> Result<Vec<u8>, String> {
        let deadline = tokio::time::Instant::now() + within;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => return Err(format!("still open after {within:?}")),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(std::mem::take(&mut self.seen)),
                Ok(Ok(n)) => {
                    self.seen.extend_from_slice(&buf[..n]);
                    // Only the tail matters to callers; keep memory flat on long reads.
                    if self.seen.len() > 1 << 20 {
                        self.seen.drain(..self.seen.len() - 4096);
                    }
                }
            }
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The last bytes of a buffer as text, for error messages.
pub fn tail(b: &[u8]) -> String {
    let from = b.len().saturating_sub(200);
    String::from_utf8_lossy(&b[from..]).into_owned()
}

/// Parses one `MSG <subject> <sid> [reply] <n>\r\n<payload>\r\n` at the start of `buf`;
/// returns (subject, reply, payload, bytes used).
pub fn parse_msg(buf: &[u8]) -> Option<(String, Option<String>, Vec<u8>, usize)> {
    let eol = find(buf, b"\r\n")?;
    let line = std::str::from_utf8(&buf[..eol]).ok()?;
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.first() != Some(&"MSG") {
        return None;
    }
    let (subject, reply, n) = match parts.len() {
        4 => (parts[1], None, parts[3]),
        5 => (parts[1], Some(parts[3].to_string()), parts[4]),
        _ => return None,
    };
    let n: usize = n.parse().ok()?;
    let start = eol + 2;
    if buf.len() < start + n + 2 {
        return None;
    }
    Some((
        subject.to_string(),
        reply,
        buf[start..start + n].to_vec(),
        start + n + 2,
    ))
}
