//! Endpoints (`tcp://host:port`, `ipc:///path`) and the byte streams behind them: connect, bind,
//! accept, split. One type for both transports, so connection code is written once.
//!
//! Every TCP stream, connected or accepted, has `TCP_NODELAY` and TCP keepalive
//! ([`Keepalive::DEFAULT`]), so a peer whose host died or whose connection was cut is found
//! even when it speaks ZMTP 3.0 and cannot be PINGed.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{tcp, TcpListener, TcpStream};
#[cfg(unix)]
use tokio::net::{unix, UnixListener, UnixStream};

/// TCP keepalive settings: after `idle` without traffic the kernel probes the peer every
/// `interval`, and closes the connection (reads and writes fail) after `retries` unanswered
/// probes. A dead peer is therefore found within `idle + interval × retries`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub retries: u32,
}

impl Keepalive {
    /// 30 s idle, then a probe every 10 s, dead after 3 unanswered: 60 s in all.
    pub const DEFAULT: Keepalive = Keepalive {
        idle: Duration::from_secs(30),
        interval: Duration::from_secs(10),
        retries: 3,
    };

    /// The longest a dead peer goes unnoticed: `idle + interval × retries`.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(xbus_zmtp::transport::Keepalive::DEFAULT.detection_time(), Duration::from_secs(60));
    /// ```
    pub fn detection_time(&self) -> Duration {
        self.idle
            .saturating_add(self.interval.saturating_mul(self.retries))
    }

    fn apply(&self, stream: &TcpStream) -> io::Result<()> {
        // the kernel takes whole seconds, at least 1
        let secs = |d: Duration| Duration::from_secs(d.as_secs().clamp(1, 32_767));
        let ka = socket2::TcpKeepalive::new()
            .with_time(secs(self.idle))
            .with_interval(secs(self.interval));
        #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
        let ka = ka.with_retries(self.retries.clamp(1, 127));
        socket2::SockRef::from(stream).set_tcp_keepalive(&ka)
    }
}

fn tune(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    Keepalive::DEFAULT.apply(stream)
}

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
    /// Connects to the endpoint (TCP streams get `TCP_NODELAY` and [`Keepalive::DEFAULT`]).
    pub async fn connect(&self) -> io::Result<Stream> {
        match self {
            Endpoint::Tcp(addr) => {
                let s = TcpStream::connect(addr.as_str()).await?;
                tune(&s)?;
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

    /// Binds a listener.
    ///
    /// For `ipc://`, a file already at the path is replaced only when it is a *stale* socket (a
    /// socket nothing listens on, left by a process that died). Anything else is refused: a
    /// socket another process is listening on ([`io::ErrorKind::AddrInUse`]), and a path that
    /// is not a socket at all ([`io::ErrorKind::AlreadyExists`]).
    pub async fn bind(&self) -> io::Result<Listener> {
        match self {
            Endpoint::Tcp(addr) => Ok(Listener::Tcp(TcpListener::bind(addr.as_str()).await?)),
            #[cfg(unix)]
            Endpoint::Ipc(path) => {
                remove_stale_socket(path).await?;
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

/// Removes the file at `path` if it is a socket nothing listens on; refuses anything else.
#[cfg(unix)]
async fn remove_stale_socket(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ),
        ));
    }
    match UnixStream::connect(path).await {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another process is listening on {}; refusing to replace its socket",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot tell whether {} is in use: {e}", path.display()),
        )),
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
                tune(&s)?;
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

/// Implements `AsyncRead` for an enum with a `Tcp` and (on Unix) a `Unix` variant by handing
/// each call to the variant.
macro_rules! delegate_read {
    ($ty:ident) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $ty::Tcp(s) => Pin::new(s).poll_read(cx, buf),
                    #[cfg(unix)]
                    $ty::Unix(s) => Pin::new(s).poll_read(cx, buf),
                }
            }
        }
    };
}

/// Implements `AsyncWrite` (vectored) the same way as `delegate_read!`.
macro_rules! delegate_write {
    ($ty:ident) => {
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $ty::Tcp(s) => Pin::new(s).poll_write(cx, buf),
                    #[cfg(unix)]
                    $ty::Unix(s) => Pin::new(s).poll_write(cx, buf),
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $ty::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                    #[cfg(unix)]
                    $ty::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $ty::Tcp(s) => Pin::new(s).poll_flush(cx),
                    #[cfg(unix)]
                    $ty::Unix(s) => Pin::new(s).poll_flush(cx),
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $ty::Tcp(s) => Pin::new(s).poll_shutdown(cx),
                    #[cfg(unix)]
                    $ty::Unix(s) => Pin::new(s).poll_shutdown(cx),
                }
            }
        }
    };
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

delegate_read!(Stream);

delegate_write!(Stream);

impl Stream {
    /// Splits into owned read and write halves, usable from separate tasks. The halves are the
    /// transports' own (no lock is taken on a read or a write).
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            #[cfg(unix)]
            Stream::Unix(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Unix(r), WriteHalf::Unix(w))
            }
        }
    }
}

/// The read half of a [`Stream`].
#[derive(Debug)]
pub enum ReadHalf {
    /// TCP.
    Tcp(tcp::OwnedReadHalf),
    /// Unix domain socket.
    #[cfg(unix)]
    Unix(unix::OwnedReadHalf),
}

/// The write half of a [`Stream`]; shutting it down shuts down the write side only.
#[derive(Debug)]
pub enum WriteHalf {
    /// TCP.
    Tcp(tcp::OwnedWriteHalf),
    /// Unix domain socket.
    #[cfg(unix)]
    Unix(unix::OwnedWriteHalf),
}

delegate_read!(ReadHalf);

delegate_write!(WriteHalf);

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

    #[tokio::test]
    async fn ipc_bind_refuses_live_sockets_and_other_files() {
        let base = std::env::temp_dir().join(format!("xbus-zmtp-bind-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        // a regular file is never replaced
        let file = base.join("not-a-socket");
        std::fs::write(&file, b"precious").unwrap();
        let ep: Endpoint = format!("ipc://{}", file.display()).parse().unwrap();
        let err = ep.bind().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"precious");
        // a live listener is refused, and keeps working
        let sock = base.join("live.sock");
        let ep: Endpoint = format!("ipc://{}", sock.display()).parse().unwrap();
        let live = ep.bind().await.unwrap();
        let err = ep.bind().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        let (c, a) = tokio::join!(ep.connect(), live.accept());
        c.unwrap();
        a.unwrap();
        // a stale socket (its listener gone, the file left behind) is replaced
        let Listener::Unix(l, _) = live else {
            panic!("ipc listener")
        };
        drop(l);
        assert!(sock.exists());
        ep.bind().await.unwrap();
        let _ = std::fs::remove_dir_all(&base);
    }
}
