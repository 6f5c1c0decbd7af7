//! Byte-level pieces of the client: the NATS CONNECT document, the INFO fields it reads,
//! status headers, and the hot-path PubMsg encoding.

use prost::encoding::{encode_key, encode_varint, WireType};

use crate::nats::proto;

/// The CONNECT document. `headers` and `no_responders` make the server answer a request
/// nobody listens to with a 503 status at once (§6), so a missing server or a wrong
/// cluster ID shows without waiting for the timeout.
pub(super) fn connect_json(client_id: &str) -> Vec<u8> {
    serde_json::json!({
        "verbose": false,
        "pedantic": false,
        "tls_required": false,
        "name": client_id,
        "lang": "rust",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": 1,
        "echo": true,
        "headers": true,
        "no_responders": true,
    })
    .to_string()
    .into_bytes()
}

/// `max_payload` from an INFO document, if it has a usable one.
pub(super) fn info_max_payload(json: &[u8]) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let n = v.get("max_payload")?.as_u64()?;
    usize::try_from(n).ok().filter(|n| *n > 0)
}

/// True for an `HMSG` whose status line is 503: nobody subscribes to the request's
/// subject.
pub(super) fn is_no_responders(header_len: Option<usize>, payload: &[u8]) -> bool {
    match header_len {
        Some(h) => {
            let head = &payload[..h.min(payload.len())];
            head.starts_with(b"NATS/1.0 503") || head == proto::NO_RESPONDERS_HEADER
        }
        None => false,
    }
}

/// The message body after any header block.
pub(super) fn body(header_len: Option<usize>, payload: &[u8]) -> &[u8] {
    &payload[header_len.unwrap_or(0).min(payload.len())..]
}

fn put_bytes(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    // proto3 leaves empty fields out (§2).
    if value.is_empty() {
        return;
    }
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

/// Appends a `PubMsg` (§2.1) without first copying `data` into a message struct; the
/// bytes are exactly what prost writes for the same fields.
pub(super) fn encode_pub_msg(
    out: &mut Vec<u8>,
    client_id: &str,
    guid: &str,
    channel: &str,
    data: &[u8],
    conn_id: &[u8],
) {
    out.reserve(client_id.len() + guid.len() + channel.len() + data.len() + conn_id.len() + 16);
    put_bytes(out, 1, client_id.as_bytes());
    put_bytes(out, 2, guid.as_bytes());
    put_bytes(out, 3, channel.as_bytes());
    put_bytes(out, 5, data);
    put_bytes(out, 6, conn_id);
}
