//! Endpoints (`tcp://host:port`, `ipc:///path`) and the byte streams behind them: connect, bind,
//! accept. One type for both transports, so connection code is written once.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
#[cfg(unix)]
use tokio::net::{UnixListener, UnixStream};

/// Where to connect or bind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `tcp://host:port` (`host` may be a name, an IPv4 address or a bracketed IPv6 address;
    /// when binding, port 0 picks a free port).
    Tcp(String),
    /// `ipc:///path/to/socket` (a Unix domain socket).
    Ipc(std::path::PathBuf),
}

/// An endpoint string that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid endpoint {endpoint:?}: {reason} (expected tcp://HOST:PORT or ipc:///PATH)")]
pub struct EndpointError {
    /// The text given.
    pub endpoint: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    /// ```
    /// use xbus_zmtp::transport::Endpoint;
    /// assert_eq!("tcp://127.0.0.1:5122".parse::<Endpoint>().unwrap().to_string(), "tcp://127.0.0.1:5122");
    /// assert!("tcp://127.0.0.1".parse::<Endpoint>().is_err());
    /// assert!("udp://x:1".parse::<Endpoint>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Endpoint, EndpointError> {
        let err = |reason| EndpointError {
            endpoint: s.to_owned(),
            reason,
        };
        if let Some(addr) = s.strip_prefix("tcp://") {
            let (host, port) = addr.rsplit_once(':').ok_or_else(|| err("missing :PORT"))?;
            if host.is_empty() {
                return Err(err("missing host"));
            }
            if host == "*" {
                return Ok(Endpoint::Tcp(format!("0.0.0.0:{port}")));
            }
            port.parse::<u16>()
                .map_err(|_| err("port is not a number from 0 to 65535"))?;
            Ok(Endpoint::Tcp(addr.to_owned()))
        } else if let Some(path) = s.strip_prefix("ipc://") {
            if path.is_empty() {
                return Err(err("missing path"));
            }
            Ok(Endpoint::Ipc(path.into()))
        } else {
            Err(err("unknown transport"))
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
            Endpoint::Ipc(path) => write!(f, "ipc://{}", path.display()),
        }
    }
}

impl Endpoint {
    /// Connects to the endpoint (TCP_NODELAY is set on TCP streams).
    pub async fn connect(&self) -> io::Result<Stream> {
        match self {
            Endpoint::Tcp(addr) => {
                let s = TcpStream::connect(addr.as_str()).await?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            #[cfg(unix)]
            Endpoint::Ipc(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
            #[cfg(not(unix))]
            Endpoint::Ipc(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "ipc:// needs Unix",
            )),
        }
    }

    /// Binds a listener. For `ipc://`, a stale socket file left by a previous run is removed
    /// first when nothing answers on it.
    pub async fn bind(&self) -> io::Result<Listener> {
        match self {
            Endpoint::Tcp(addr) => Ok(Listener::Tcp(TcpListener::bind(addr.as_str()).await?)),
            #[cfg(unix)]
            Endpoint::Ipc(path) => {
                if path.exists() && UnixStream::connect(path).await.is_err() {
                    std::fs::remove_file(path)?;
                }
                Ok(Listener::Unix(UnixListener::bind(path)?, path.clone()))
            }
            #[cfg(not(unix))]
            Endpoint::Ipc(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "ipc:// needs Unix",
            )),
        }
    }
}

/// A bound listener on either transport.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix domain socket, with its path.
    #[cfg(unix)]
    Unix(UnixListener, std::path::PathBuf),
}

impl Listener {
    /// The endpoint actually bound (with the real port when port 0 was asked for).
    pub fn local_endpoint(&self) -> io::Result<Endpoint> {
        match self {
            Listener::Tcp(l) => Ok(Endpoint::Tcp(l.local_addr()?.to_string())),
            #[cfg(unix)]
            Listener::Unix(_, path) => Ok(Endpoint::Ipc(path.clone())),
        }
    }

    /// Accepts one connection: the stream and a printable peer address for logs.
    pub async fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, addr) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok((Stream::Tcp(s), addr.to_string()))
            }
            #[cfg(unix)]
            Listener::Unix(l, path) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), format!("ipc:{}", path.display())))
            }
        }
    }
}

/// A connected byte stream on either transport.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix domain socket.
    #[cfg(unix)]
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(unix)]
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl Stream {
    /// Splits into owned read and write halves, usable from separate tasks.
    pub fn into_split(self) -> (tokio::io::ReadHalf<Stream>, tokio::io::WriteHalf<Stream>) {
        tokio::io::split(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn tcp_and_ipc_roundtrip() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = std::env::temp_dir().join(format!("xbus-zmtp-{}.sock", std::process::id()));
        for ep in [
            "tcp://127.0.0.1:0".to_owned(),
            format!("ipc://{}", dir.display()),
        ] {
            let listener = ep.parse::<Endpoint>().unwrap().bind().await.unwrap();
            let local = listener.local_endpoint().unwrap();
            let (client, server) = tokio::join!(local.connect(), listener.accept());
            let (mut client, (mut server, _)) = (client.unwrap(), server.unwrap());
            client.write_all(b"ping").await.unwrap();
            let mut got = [0u8; 4];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"ping");
        }
        let _ = std::fs::remove_file(dir);
    }
}
