//! `topotap client`: the API from the command line.
//!
//! Prints the API's JSON (pretty) or a table; a 4xx/5xx answer or an unreachable server
//! is an error with the server's one-line reason and a non-zero exit.

use anyhow::{anyhow, bail, Context};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::cli::{ClientArgs, ClientCommand, Format, TopologyCommand};

pub async fn run(args: ClientArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.analyzer)?;
    let value = match &args.command {
        ClientCommand::Status => api.call(Method::GET, "/api/status", None).await?,
        ClientCommand::Topology { command } => match command {
            TopologyCommand::Query { gremlin } => {
                api.call(
                    Method::POST,
                    "/api/topology",
                    Some(json!({ "GremlinQuery": gremlin })),
                )
                .await?
            }
            TopologyCommand::Export => api.call(Method::GET, "/api/topology", None).await?,
        },
    };
    print(&value, args.format);
    Ok(())
}

/// A client of one topotap API.
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(analyzer: &str) -> anyhow::Result<Self> {
        let base = if analyzer.starts_with("http://") || analyzer.starts_with("https://") {
            analyzer.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", analyzer.trim_end_matches('/'))
        };
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Api { base, http })
    }

    /// Sends a request; returns the JSON answer (`null` for an empty body).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach topotap at {}: {}", self.base, root_cause(&e)))?;
        let status = resp.status();
        let text = resp.text().await.context("reading the answer")?;
        if !status.is_success() {
            let reason = text.trim();
            if reason.is_empty() {
                bail!("{status}");
            }
            bail!("{status}: {reason}");
        }
        if status == StatusCode::NO_CONTENT || text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("answer from {url} is not JSON"))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn print(value: &Value, format: Format) {
    match format {
        Format::Json => match serde_json::to_string_pretty(value) {
            Ok(s) => println!("{s}"),
            Err(_) => println!("{value}"),
        },
        Format::Table => print!("{}", table(value)),
    }
}

/// Renders a list of objects (or an object of objects keyed by ID) as aligned columns;
/// anything else is printed as JSON.
pub fn table(value: &Value) -> String {
    let rows: Vec<&serde_json::Map<String, Value>> = match value {
        Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
        Value::Object(map) if map.values().all(Value::is_object) => {
            map.values().filter_map(Value::as_object).collect()
        }
        _ => Vec::new(),
    };
    if rows.is_empty() {
        return format!("{value}\n");
    }
    // Graph elements: show the useful metadata, not the whole map.
    let is_element = rows
        .iter()
        .all(|r| r.contains_key("ID") && r.contains_key("Metadata"));
    let columns: Vec<String> = if is_element {
        ["ID", "Name", "Type", "Host"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        let mut cols: Vec<String> = Vec::new();
        for r in &rows {
            for (k, v) in r.iter() {
                if !v.is_object() && !v.is_array() && !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
        // The resource's key first, whatever the JSON key order.
        if let Some(i) = cols.iter().position(|c| c == "UUID") {
            let key = cols.remove(i);
            cols.insert(0, key);
        }
        cols
    };
    let cell = |r: &serde_json::Map<String, Value>, c: &str| -> String {
        let v = if is_element && (c == "Name" || c == "Type") {
            r.get("Metadata").and_then(|m| m.get(c))
        } else {
            r.get(c)
        };
        match v {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(r, c)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |vals: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(columns.iter().map(String::as_str).collect(), &mut out);
    for r in &cells {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_elements_shows_name_and_type() {
        let v = json!([{"ID": "a", "Metadata": {"Name": "eth0", "Type": "veth"}, "Host": "h"}]);
        let t = table(&v);
        assert_eq!(t, "ID  Name  Type  Host\na   eth0  veth  h\n");
    }

    #[test]
    fn table_of_resources_keyed_by_id() {
        let v = json!({"u1": {"UUID": "u1", "Count": 2}});
        assert_eq!(table(&v), "UUID  Count\nu1    2\n");
    }

    #[test]
    fn scalars_print_as_json() {
        assert_eq!(table(&json!(3)), "3\n");
    }
}
