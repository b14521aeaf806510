//! ZMTP commands (RFC 23 / RFC 37): READY, ERROR, SUBSCRIBE, CANCEL, PING and PONG.
//!
//! A command frame's body is a 1-byte name length, the name, and command-specific data.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::frame::encode_command_frame;
use crate::ZmtpError;

/// The properties of a READY command, in the order received (names compare case-insensitively).
pub type Metadata = Vec<(String, Bytes)>;

/// A decoded command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Handshake: the peer's metadata (`Socket-Type`, `Identity`, …).
    Ready(Metadata),
    /// The peer refuses the connection, with a reason.
    Error(String),
    /// ZMTP 3.1 subscription (same meaning as a `\x01prefix` message).
    Subscribe(Bytes),
    /// ZMTP 3.1 unsubscription (same meaning as a `\x00prefix` message).
    Cancel(Bytes),
    /// Heartbeat request: answer with a PONG carrying the same context.
    Ping {
        /// Time-to-live the peer asks for, in tenths of a second (0 = none).
        ttl_deciseconds: u16,
        /// Up to 16 bytes to echo back.
        context: Bytes,
    },
    /// Heartbeat reply.
    Pong {
        /// The context of the PING being answered.
        context: Bytes,
    },
    /// Any other command: ignored by this engine, but reported so callers can log it.
    Other {
        /// The command name.
        name: String,
        /// Its data.
        data: Bytes,
    },
}

/// Splits a command frame's body into its name and its data: the one reader of command names
/// (the NULL commands here, CURVE's in `curve::handshake`).
pub(crate) fn split_name(mut body: Bytes) -> Result<(String, Bytes), ZmtpError> {
    if body.is_empty() {
        return Err(malformed("?", "empty command frame"));
    }
    let name_len = body.get_u8() as usize;
    if body.len() < name_len {
        return Err(malformed("?", "command name longer than the frame"));
    }
    let name_bytes = body.split_to(name_len);
    // RFC 23 allows only ASCII letters; other UTF-8 is let through (as an unknown command),
    // bytes that are not UTF-8 are refused so the name is kept exactly
    match std::str::from_utf8(&name_bytes) {
        Ok("") => Err(malformed("?", "empty command name")),
        Ok(name) => Ok((name.to_owned(), body)),
        Err(_) => Err(malformed("?", "command name is not UTF-8")),
    }
}

fn malformed(command: &str, reason: &'static str) -> ZmtpError {
    ZmtpError::MalformedCommand {
        command: command.to_owned(),
        reason,
    }
}

impl Command {
    /// Parses a command frame body.
    ///
    /// ```
    /// use xbus_zmtp::Command;
    /// let cmd = Command::parse(bytes::Bytes::from_static(b"\x09SUBSCRIBEab")).unwrap();
    /// assert_eq!(cmd, Command::Subscribe(bytes::Bytes::from_static(b"ab")));
    /// ```
    pub fn parse(body: Bytes) -> Result<Command, ZmtpError> {
        let (name, data) = split_name(body)?;
        Ok(match name.as_bytes() {
            b"READY" => Command::Ready(parse_metadata(data).map_err(|r| malformed(&name, r))?),
            b"ERROR" => {
                let mut d = data;
                if d.is_empty() {
                    return Err(malformed(&name, "missing reason length"));
                }
                let len = d.get_u8() as usize;
                if d.len() < len {
                    return Err(malformed(&name, "reason longer than the frame"));
                }
                Command::Error(String::from_utf8_lossy(&d[..len]).into_owned())
            }
            b"SUBSCRIBE" => Command::Subscribe(data),
            b"CANCEL" => Command::Cancel(data),
            b"PING" => {
                let mut d = data;
                if d.len() < 2 {
                    return Err(malformed(&name, "missing TTL"));
                }
                let ttl_deciseconds = d.get_u16();
                if d.len() > 16 {
                    return Err(malformed(&name, "context longer than 16 bytes"));
                }
                Command::Ping {
                    ttl_deciseconds,
                    context: d,
                }
            }
            b"PONG" => Command::Pong { context: data },
            _ => Command::Other { name, data },
        })
    }

    /// The command's wire name (`"READY"`, `"PING"`, …).
    pub fn name(&self) -> &str {
        match self {
            Command::Ready(_) => "READY",
            Command::Error(_) => "ERROR",
            Command::Subscribe(_) => "SUBSCRIBE",
            Command::Cancel(_) => "CANCEL",
            Command::Ping { .. } => "PING",
            Command::Pong { .. } => "PONG",
            Command::Other { name, .. } => name,
        }
    }

    /// Appends this command as a complete command frame.
    ///
    /// ```
    /// use xbus_zmtp::Command;
    /// let mut buf = bytes::BytesMut::new();
    /// Command::Pong { context: bytes::Bytes::from_static(b"x") }.encode(&mut buf);
    /// assert_eq!(&buf[..], b"\x04\x06\x04PONGx");
    /// ```
    pub fn encode(&self, buf: &mut BytesMut) {
        let mut data = BytesMut::new();
        match self {
            Command::Ready(meta) => encode_metadata(meta, &mut data),
            Command::Error(reason) => {
                let r = &reason.as_bytes()[..reason.len().min(255)];
                data.put_u8(r.len() as u8);
                data.put_slice(r);
            }
            Command::Subscribe(p) | Command::Cancel(p) => data.put_slice(p),
            Command::Ping {
                ttl_deciseconds,
                context,
            } => {
                data.put_u16(*ttl_deciseconds);
                data.put_slice(&context[..context.len().min(16)]);
            }
            Command::Pong { context } => data.put_slice(context),
            Command::Other { data: d, .. } => data.put_slice(d),
        }
        encode_command_frame(buf, self.name(), &data);
    }

    /// A READY command announcing `socket_type` (and an identity, when given).
    pub fn ready(socket_type: crate::SocketType, identity: Option<&Bytes>) -> Command {
        let mut meta = vec![(
            "Socket-Type".to_owned(),
            Bytes::from_static(socket_type.as_str().as_bytes()),
        )];
        if let Some(id) = identity {
            meta.push(("Identity".to_owned(), id.clone()));
        }
        Command::Ready(meta)
    }
}

/// Looks a READY property up by name, case-insensitively (RFC 23: names are case-insensitive).
///
/// ```
/// let meta = vec![("socket-type".to_owned(), bytes::Bytes::from_static(b"SUB"))];
/// assert_eq!(xbus_zmtp::command::property(&meta, "Socket-Type").unwrap(), &b"SUB"[..]);
/// ```
pub fn property<'a>(meta: &'a Metadata, name: &str) -> Option<&'a Bytes> {
    meta.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Appends READY-style properties (name length, name, 4-byte value length, value); CURVE's
/// INITIATE and READY boxes carry the same encoding.
pub(crate) fn encode_metadata(meta: &Metadata, data: &mut BytesMut) {
    for (name, value) in meta {
        data.put_u8(name.len().min(255) as u8);
        data.put_slice(&name.as_bytes()[..name.len().min(255)]);
        data.put_u32(value.len() as u32);
        data.put_slice(value);
    }
}

pub(crate) fn parse_metadata(mut data: Bytes) -> Result<Metadata, &'static str> {
    let mut meta = Vec::new();
    while data.has_remaining() {
        let name_len = data.get_u8() as usize;
        if name_len == 0 {
            return Err("empty property name");
        }
        if data.len() < name_len + 4 {
            return Err("property name or value length cut short");
        }
        let name = String::from_utf8(data.split_to(name_len).to_vec())
            .map_err(|_| "property name is not UTF-8")?;
        let value_len = data.get_u32() as usize;
        if data.len() < value_len {
            return Err("property value longer than the frame");
        }
        meta.push((name, data.split_to(value_len)));
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::SocketType;

    fn roundtrip(cmd: Command) {
        let mut buf = BytesMut::new();
        cmd.encode(&mut buf);
        // strip the 2-byte short header
        let body = buf.freeze().slice(2..);
        assert_eq!(Command::parse(body).unwrap(), cmd);
    }

    #[test]
    fn commands_roundtrip() {
        roundtrip(Command::ready(
            SocketType::XPub,
            Some(&Bytes::from_static(b"id")),
        ));
        roundtrip(Command::Error("no".into()));
        roundtrip(Command::Subscribe(Bytes::from_static(b"A.")));
        roundtrip(Command::Cancel(Bytes::from_static(b"")));
        roundtrip(Command::Ping {
            ttl_deciseconds: 300,
            context: Bytes::from_static(b"ctx"),
        });
        roundtrip(Command::Pong {
            context: Bytes::from_static(b"ctx"),
        });
    }

    #[test]
    fn malformed_commands_are_errors_not_panics() {
        for body in [
            &b""[..],
            b"\x09SUBSC",
            b"\x05READY\x0bSocket-Type\x00\x00",
            b"\x05READY\x00",
            b"\x05ERROR",
            b"\x05ERROR\x09no",
            b"\x04PING\x00",
            // an empty name (RFC 23 wants 1 to 255 letters); names that are not UTF-8, which
            // the fuzzer found did not survive a round trip
            b"\x00",
            b"\x02\xff\xfe",
            b"\x05READY\x02\xff\xfe\x00\x00\x00\x00",
        ] {
            assert!(
                Command::parse(Bytes::copy_from_slice(body)).is_err(),
                "{body:?}"
            );
        }
    }
}
