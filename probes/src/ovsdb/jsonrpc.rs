//! The JSON-RPC 1.0 framing of OVSDB (RFC 7047 §4): messages are JSON objects sent
//! back to back with no delimiter or length prefix, so the reader must find where each
//! value ends. No I/O here.

use serde_json::{json, Value};

use super::rows::MONITORED;

/// Largest amount of unparsed input kept while waiting for the end of a value. A
/// monitor reply for thousands of interfaces is a few MiB; far beyond that the peer is
/// not speaking OVSDB.
pub const MAX_PENDING: usize = 256 << 20;

/// Splits a byte stream into JSON values.
///
/// Every OVSDB message is an object, so the end of a value is found by a linear scan
/// that tracks bracket depth outside strings; only a complete value is handed to
/// `serde_json` (which also validates it). A reply arriving in many reads is scanned
/// once, not re-parsed from its start after every read.
#[derive(Debug, Default)]
pub struct JsonStream {
    buf: Vec<u8>,
    /// How far `buf` has been scanned, and the scanner state there.
    scanned: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

/// The input is not a sequence of JSON objects.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("invalid JSON from server: {0}")]
    Syntax(#[from] serde_json::Error),
    #[error("unexpected byte {0:#04x} where a JSON object must start")]
    NotAnObject(u8),
    #[error("unterminated JSON value over {0} bytes")]
    TooLarge(usize),
}

impl JsonStream {
    pub fn new() -> Self {
        JsonStream::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete value, `Ok(None)` if the buffer holds only part of one (or
    /// nothing), an error if the input can never become a valid message.
    pub fn next_value(&mut self) -> Result<Option<Value>, StreamError> {
        while self.scanned < self.buf.len() {
            let b = self.buf[self.scanned];
            self.scanned += 1;
            if self.depth == 0 {
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' => continue,
                    b'{' | b'[' => self.depth = 1,
                    other => return Err(StreamError::NotAnObject(other)),
                }
                continue;
            }
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let end = self.scanned;
                        let value = serde_json::from_slice(&self.buf[..end]);
                        self.buf.drain(..end);
                        self.scanned = 0;
                        return Ok(Some(value?));
                    }
                }
                _ => {}
            }
        }
        if self.depth == 0 {
            self.buf.clear();
            self.scanned = 0;
        } else if self.buf.len() > MAX_PENDING {
            return Err(StreamError::TooLarge(self.buf.len()));
        }
        Ok(None)
    }

    /// Bytes received but not yet returned as a value.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// The ID of the `monitor` request.
pub const MONITOR_ID: u64 = 1;

/// The monitor-id echoed in every `update` notification.
pub const MONITOR_TAG: &str = "topotap";

/// `monitor` on the Open_vSwitch database for the [`MONITORED`] tables and columns,
/// initial contents and all changes.
pub fn monitor_request() -> Value {
    let mut requests = serde_json::Map::new();
    for (table, columns) in MONITORED {
        requests.insert(
            (*table).to_owned(),
            json!({"columns": columns, "select": {"initial": true, "insert": true, "delete": true, "modify": true}}),
        );
    }
    json!({"method": "monitor", "params": ["Open_vSwitch", MONITOR_TAG, requests], "id": MONITOR_ID})
}

/// Our own keepalive, answered by the server with a reply of the same id.
pub fn echo_request() -> Value {
    json!({"method": "echo", "params": [], "id": "topotap-echo"})
}

/// A message from the server, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// `echo` request: must be answered with [`echo_reply`].
    Echo { id: Value, params: Value },
    /// `update` notification for our monitor: `<table-updates>`.
    Update(Value),
    /// Reply to the monitor request: the initial `<table-updates>`, or the error.
    MonitorReply(Result<Value, Value>),
    /// Anything else (replies to our echo, other notifications).
    Other,
}

impl Incoming {
    pub fn classify(msg: Value) -> Incoming {
        let Value::Object(mut m) = msg else {
            return Incoming::Other;
        };
        match m.get("method").and_then(Value::as_str) {
            Some("echo") => Incoming::Echo {
                id: m.remove("id").unwrap_or(Value::Null),
                params: m.remove("params").unwrap_or_else(|| json!([])),
            },
            Some("update") => match m.remove("params") {
                Some(Value::Array(mut p)) if p.len() == 2 && p[0] == MONITOR_TAG => {
                    Incoming::Update(p.pop().unwrap_or(Value::Null))
                }
                _ => Incoming::Other,
            },
            Some(_) => Incoming::Other,
            None if m.get("id") == Some(&json!(MONITOR_ID)) => {
                match m.remove("error").unwrap_or(Value::Null) {
                    Value::Null => {
                        Incoming::MonitorReply(Ok(m.remove("result").unwrap_or(Value::Null)))
                    }
                    err => Incoming::MonitorReply(Err(err)),
                }
            }
            None => Incoming::Other,
        }
    }
}

/// The reply to an `echo` request: same params, same id.
pub fn echo_reply(id: Value, params: Value) -> Value {
    json!({"result": params, "error": null, "id": id})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_to_back_values_split_at_any_byte() {
        let wire =
            br#"{"method":"echo","params":[],"id":"echo"}{"id":1,"result":{},"error":null}  [1,2]"#;
        for cut in 0..wire.len() {
            let mut s = JsonStream::new();
            let mut got = Vec::new();
            s.push(&wire[..cut]);
            while let Some(v) = s.next_value().unwrap() {
                got.push(v);
            }
            s.push(&wire[cut..]);
            while let Some(v) = s.next_value().unwrap() {
                got.push(v);
            }
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert_eq!(got[2], json!([1, 2]));
            assert_eq!(s.pending(), 0);
        }
    }

    #[test]
    fn garbage_is_an_error_and_partial_is_not() {
        let mut s = JsonStream::new();
        s.push(br#"{"bad"#);
        assert!(s.next_value().unwrap().is_none());
        assert_eq!(s.pending(), 5);
        let mut s = JsonStream::new();
        s.push(b"HTTP/1.1 400 Bad Request\r\n");
        assert!(s.next_value().is_err());
        let mut s = JsonStream::new();
        s.push(b"{\"a\":1}}");
        assert_eq!(s.next_value().unwrap(), Some(json!({"a": 1})));
        assert!(s.next_value().is_err());
        // Brackets and escaped quotes inside strings do not end a value.
        let mut s = JsonStream::new();
        s.push(br#"{"a":"}]\"{"}"#);
        assert_eq!(s.next_value().unwrap(), Some(json!({"a": "}]\"{"})));
        // Balanced but invalid.
        let mut s = JsonStream::new();
        s.push(b"{1:2}");
        assert!(matches!(s.next_value(), Err(StreamError::Syntax(_))));
    }

    #[test]
    fn messages_are_classified() {
        assert_eq!(
            Incoming::classify(json!({"method":"echo","params":[],"id":"echo"})),
            Incoming::Echo {
                id: json!("echo"),
                params: json!([])
            }
        );
        assert_eq!(
            echo_reply(json!("echo"), json!([])),
            json!({"result": [], "error": null, "id": "echo"})
        );
        assert_eq!(
            Incoming::classify(
                json!({"id":null,"method":"update","params":["topotap",{"Port":{}}]})
            ),
            Incoming::Update(json!({"Port": {}}))
        );
        assert_eq!(
            Incoming::classify(json!({"id":null,"method":"update","params":["other",{}]})),
            Incoming::Other
        );
        assert_eq!(
            Incoming::classify(json!({"id":1,"result":null,"error":{"error":"unknown database"}})),
            Incoming::MonitorReply(Err(json!({"error":"unknown database"})))
        );
        assert_eq!(
            Incoming::classify(json!({"id":1,"result":{"Bridge":{}},"error":null})),
            Incoming::MonitorReply(Ok(json!({"Bridge":{}})))
        );
        assert_eq!(
            Incoming::classify(json!({"id":"topotap-echo","result":[]})),
            Incoming::Other
        );
    }

    #[test]
    fn monitor_request_names_every_table() {
        let r = monitor_request();
        assert_eq!(r["method"], "monitor");
        assert_eq!(r["params"][0], "Open_vSwitch");
        for t in ["Bridge", "Port", "Interface", "Open_vSwitch"] {
            assert!(r["params"][2][t]["columns"].is_array(), "{t}");
        }
    }
}
