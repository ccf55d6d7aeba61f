//! The configuration file (`--config FILE`, TOML) and `topotap config print`.
//!
//! The file's keys are the long names of the running subcommand's flags (`listen`,
//! `flow-max-entries`, `netns-path`...; `snake_case` spellings are accepted too). Nothing
//! here lists the flags: the accepted keys are read from clap's own definition of the
//! subcommand, and every value goes through that flag's own clap parser. A file value
//! becomes the flag's default, so the order of precedence is clap's: a flag on the
//! command line, then its `TOPOTAP_*` environment variable, then the file, then the
//! built-in default. A flag added to the CLI is therefore a config key as soon as it
//! exists.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};

use crate::cli::Cli;

/// The id of the flag that names the configuration file.
const CONFIG_ARG: &str = "config";

/// A parsed command line, with what `config print` needs to explain it.
pub struct Invocation {
    pub cli: Cli,
    command: Command,
    matches: ArgMatches,
    file: Option<ConfigFile>,
}

/// A failure to read or apply the configuration file: one line naming the file, the
/// line and the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// Why parsing the command line stopped.
#[derive(Debug)]
pub enum ParseError {
    /// Clap's own outcome (usage errors, but also `--help` and `--version`).
    Clap(clap::Error),
    Config(ConfigError),
}

impl From<clap::Error> for ParseError {
    fn from(e: clap::Error) -> Self {
        ParseError::Clap(e)
    }
}

impl From<ConfigError> for ParseError {
    fn from(e: ConfigError) -> Self {
        ParseError::Config(e)
    }
}

/// Parses the command line; when the chosen subcommand has `--config FILE` (or
/// `TOPOTAP_CONFIG`), the file's values become that subcommand's defaults first.
pub fn parse<I, T>(args: I) -> Result<Invocation, ParseError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let command = Cli::command();
    // First pass: which subcommand runs, and with which config file. Errors are left for
    // the second pass (a required flag may come from the file).
    let first = command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&args)?;
    let (path, leaf) = leaf_matches(&first);
    let config_path = leaf
        .try_get_one::<PathBuf>(CONFIG_ARG)
        .ok()
        .flatten()
        .cloned();
    let mut command = command;
    let file = match config_path {
        None => None,
        Some(p) => {
            let leaf_cmd = find_subcommand(&mut command, &path);
            let file = ConfigFile::load(&p, leaf_cmd)?;
            apply_defaults(leaf_cmd, &file);
            Some(file)
        }
    };
    let matches = command.try_get_matches_from_mut(&args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    Ok(Invocation {
        cli,
        command,
        matches,
        file,
    })
}

/// The subcommand names from the top to the deepest one chosen, and its matches.
fn leaf_matches(m: &ArgMatches) -> (Vec<String>, &ArgMatches) {
    let mut path = Vec::new();
    let mut m = m;
    while let Some((name, sub)) = m.subcommand() {
        path.push(name.to_owned());
        m = sub;
    }
    (path, m)
}

fn find_subcommand<'a>(cmd: &'a mut Command, path: &[String]) -> &'a mut Command {
    let mut cmd = cmd;
    for name in path {
        cmd = cmd
            .find_subcommand_mut(name)
            .expect("a subcommand clap just matched exists");
    }
    cmd
}

/// The flags a configuration file may set: every named argument but `--help`,
/// `--version` and `--config` itself.
fn settable(arg: &Arg) -> bool {
    let id = arg.get_id().as_str();
    arg.get_long().is_some()
        && id != CONFIG_ARG
        && !matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        )
}

/// The key of `arg` in the file: its long name.
fn key_of(arg: &Arg) -> &str {
    arg.get_long().unwrap_or(arg.get_id().as_str())
}

fn is_flag(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
}

fn is_multi(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

/// One key of the file, checked against its flag.
#[derive(Debug)]
struct Entry {
    id: String,
    key: String,
    line: usize,
    values: Vec<String>,
}

#[derive(Debug)]
struct ConfigFile {
    path: PathBuf,
    entries: Vec<Entry>,
}

impl ConfigFile {
    fn load(path: &Path, cmd: &Command) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(path, &text, cmd)
    }

    fn parse(path: &Path, text: &str, cmd: &Command) -> Result<Self, ConfigError> {
        let shown = path.display();
        let doc = toml_edit::Document::parse(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let msg = e.message().trim_end().replace('\n', " ");
            match line {
                Some(l) => ConfigError(format!("{shown}:{l}: invalid TOML: {msg}")),
                None => ConfigError(format!("{shown}: invalid TOML: {msg}")),
            }
        })?;
        let args: Vec<&Arg> = cmd.get_arguments().filter(|a| settable(a)).collect();
        let mut entries: Vec<Entry> = Vec::new();
        for (key, item) in doc.as_table().iter() {
            let line = doc
                .as_table()
                .key(key)
                .and_then(|k| k.span())
                .map(|s| line_of(text, s.start))
                .unwrap_or(0);
            let at = |msg: String| ConfigError(format!("{shown}:{line}: {msg}"));
            if item.is_table() || item.is_array_of_tables() {
                return Err(at(format!(
                    "key '{key}' is a table; the file takes top-level keys only"
                )));
            }
            let wanted = key.replace('_', "-");
            let Some(arg) = args.iter().find(|a| key_of(a) == wanted) else {
                let known: Vec<&str> = args.iter().map(|a| key_of(a)).collect();
                return Err(at(format!(
                    "unknown key '{key}' for `{}` (known keys: {})",
                    cmd.get_name(),
                    known.join(", ")
                )));
            };
            if let Some(prev) = entries.iter().find(|e| e.id == arg.get_id().as_str()) {
                return Err(at(format!(
                    "key '{key}' sets '{}' again (line {})",
                    prev.key, prev.line
                )));
            }
            let values = values_of(key, item, arg).map_err(at)?;
            check_values(arg, &values).map_err(|m| at(format!("key '{key}': {m}")))?;
            entries.push(Entry {
                id: arg.get_id().to_string(),
                key: key.to_owned(),
                line,
                values,
            });
        }
        Ok(ConfigFile {
            path: path.to_owned(),
            entries,
        })
    }

    fn entry(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The TOML value of `key` as the strings clap would have received on the command line.
fn values_of(key: &str, item: &toml_edit::Item, arg: &Arg) -> Result<Vec<String>, String> {
    use toml_edit::Value;
    let Some(value) = item.as_value() else {
        return Err(format!(
            "key '{key}' is a table; the file takes top-level keys only"
        ));
    };
    if is_flag(arg) {
        return match value {
            Value::Boolean(b) => Ok(vec![b.value().to_string()]),
            other => Err(format!(
                "key '{key}': expected a boolean (true or false), found {}",
                other.type_name()
            )),
        };
    }
    let scalar = |v: &Value| -> Result<String, String> {
        match v {
            Value::String(s) => Ok(s.value().clone()),
            Value::Integer(i) => Ok(i.value().to_string()),
            Value::Float(f) => Ok(f.value().to_string()),
            Value::Boolean(b) => Ok(b.value().to_string()),
            other => Err(format!(
                "key '{key}': expected a string or a number, found {}",
                other.type_name()
            )),
        }
    };
    match value {
        Value::Array(items) if is_multi(arg) => items.iter().map(scalar).collect(),
        Value::Array(_) => Err(format!(
            "key '{key}': expected a single value, found an array"
        )),
        v => scalar(v).map(|s| vec![s]),
    }
}

/// Runs the values through the flag's own parser, as if they had been typed after it.
fn check_values(arg: &Arg, values: &[String]) -> Result<(), String> {
    let long = key_of(arg).to_owned();
    let mut probe = Arg::new("value")
        .long(long.clone())
        .action(arg.get_action().clone())
        .value_parser(arg.get_value_parser().clone());
    if let Some(n) = arg.get_num_args() {
        probe = probe.num_args(n);
    }
    if let Some(d) = arg.get_value_delimiter() {
        probe = probe.value_delimiter(d);
    }
    let cmd = Command::new("config").no_binary_name(true).arg(probe);
    let argv: Vec<String> = if is_flag(arg) {
        match values.first().map(String::as_str) {
            // A flag set to its "off" value is simply absent.
            Some("true") => vec![format!("--{long}")],
            _ => vec![],
        }
    } else {
        values.iter().map(|v| format!("--{long}={v}")).collect()
    };
    cmd.try_get_matches_from(argv).map(|_| ()).map_err(|e| {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or_default();
        first.trim_start_matches("error: ").to_owned()
    })
}

/// Makes the file's values the defaults of their flags.
fn apply_defaults(cmd: &mut Command, file: &ConfigFile) {
    let owned = std::mem::replace(cmd, Command::new("placeholder"));
    let mut updated = owned;
    for entry in &file.entries {
        let values = entry.values.clone();
        updated = updated.mut_arg(entry.id.as_str(), move |arg| {
            let arg = arg.required(false);
            if is_flag(&arg) {
                // clap's SetTrue/SetFalse flags default to "false"/"true": the file's
                // boolean is the flag's value when it is not given.
                arg.default_value(values[0].clone())
            } else {
                arg.default_values(values)
            }
        });
    }
    *cmd = updated;
}

/// `topotap config print`: the effective configuration of the server, as a config file
/// (every key, with where its value came from).
pub fn print(inv: &Invocation) -> String {
    let (path, leaf) = leaf_matches(&inv.matches);
    let mut command = inv.command.clone();
    let cmd = find_subcommand(&mut command, &path);
    let mut out = String::new();
    match &inv.file {
        Some(f) => {
            let _ = writeln!(
                out,
                "# Effective configuration (command line > environment > {} > built-in defaults)",
                f.path.display()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "# Effective configuration (command line > environment > built-in defaults)"
            );
        }
    }
    // In the order of the definition (applying the file moved the arguments it set).
    let mut pristine = Cli::command();
    let order: Vec<String> = find_subcommand(&mut pristine, &path)
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    let mut args: Vec<&Arg> = cmd.get_arguments().filter(|a| settable(a)).collect();
    args.sort_by_key(|a| order.iter().position(|id| id == a.get_id().as_str()));
    for arg in args {
        let id = arg.get_id().as_str();
        let key = key_of(arg);
        let source = match leaf.value_source(id) {
            Some(ValueSource::CommandLine) => "command line".to_owned(),
            Some(ValueSource::EnvVariable) => format!(
                "environment {}",
                arg.get_env()
                    .map(|e| e.to_string_lossy())
                    .unwrap_or_default()
            ),
            Some(ValueSource::DefaultValue) => match inv.file.as_ref().and_then(|f| f.entry(id)) {
                Some(e) => format!("{}:{}", file_name(inv), e.line),
                None => "default".to_owned(),
            },
            _ => "unset".to_owned(),
        };
        let raw: Vec<String> = leaf
            .get_raw(id)
            .map(|vals| {
                vals.map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if is_flag(arg) {
            let on = leaf.get_flag(id);
            let _ = writeln!(out, "{key} = {on}  # {source}");
        } else if raw.is_empty() {
            let _ = writeln!(out, "# {key} =  # {source}");
        } else if is_multi(arg) {
            let items: Vec<String> = raw.iter().map(|v| toml_scalar(v)).collect();
            let _ = writeln!(out, "{key} = [{}]  # {source}", items.join(", "));
        } else {
            let _ = writeln!(out, "{key} = {}  # {source}", toml_scalar(&raw[0]));
        }
    }
    out
}

fn file_name(inv: &Invocation) -> String {
    inv.file
        .as_ref()
        .map(|f| f.path.display().to_string())
        .unwrap_or_default()
}

/// A value as TOML: an integer when it is one, else a quoted string (the file takes
/// both for any flag, so this reads back to the same configuration).
fn toml_scalar(v: &str) -> String {
    match v.parse::<i64>() {
        Ok(n) if n.to_string() == v => v.to_owned(),
        _ => toml_edit::Value::from(v).to_string().trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command as Sub;

    fn server_command() -> Command {
        Cli::command()
            .find_subcommand("allinone")
            .expect("allinone exists")
            .clone()
    }

    /// A value for every flag of the server, different from its default; a flag added to
    /// the CLI without a sample here fails `every_server_flag_is_settable_from_the_file`.
    fn sample(key: &str) -> Option<(&'static str, Vec<&'static str>)> {
        // (TOML text, the same value as command-line arguments)
        Some(match key {
            "listen" => ("\"127.0.0.1:9999\"", vec!["--listen", "127.0.0.1:9999"]),
            "host-id" => ("\"from-file\"", vec!["--host-id", "from-file"]),
            "metadata" => (
                "[\"Rack=r12\", \"Site.Room=b2\"]",
                vec!["--metadata", "Rack=r12", "--metadata", "Site.Room=b2"],
            ),
            "no-probes" => ("true", vec!["--no-probes"]),
            "runc-root" => (
                "[\"/tmp/runc-a\", \"/tmp/runc-b\"]",
                vec!["--runc-root", "/tmp/runc-a", "--runc-root", "/tmp/runc-b"],
            ),
            "docker-socket" => ("\"/tmp/d.sock\"", vec!["--docker-socket", "/tmp/d.sock"]),
            "alert-script-dir" => ("\"/tmp/alerts\"", vec!["--alert-script-dir", "/tmp/alerts"]),
            "ovsdb" => (
                "\"tcp:127.0.0.1:6640\"",
                vec!["--ovsdb", "tcp:127.0.0.1:6640"],
            ),
            "netns-path" => (
                "[\"/tmp/a\", \"/tmp/b\"]",
                vec!["--netns-path", "/tmp/a", "--netns-path", "/tmp/b"],
            ),
            "flow-max-entries" => ("1234", vec!["--flow-max-entries", "1234"]),
            "flow-update" => ("7", vec!["--flow-update", "7"]),
            "flow-expire" => ("9", vec!["--flow-expire", "9"]),
            "metric-interval" => ("3", vec!["--metric-interval", "3"]),
            "flow-export-active-timeout" => ("11", vec!["--flow-export-active-timeout", "11"]),
            "flow-export-inactive-timeout" => ("13", vec!["--flow-export-inactive-timeout", "13"]),
            "sflow-agent-address" => ("\"127.0.0.5\"", vec!["--sflow-agent-address", "127.0.0.5"]),
            "state-dir" => (
                "\"/tmp/topotap-state\"",
                vec!["--state-dir", "/tmp/topotap-state"],
            ),
            "history" => ("\"off\"", vec!["--history", "off"]),
            "history-retention" => ("\"7d\"", vec!["--history-retention", "7d"]),
            "history-max-bytes" => ("4096", vec!["--history-max-bytes", "4096"]),
            "history-memory" => ("65536", vec!["--history-memory", "65536"]),
            "log-format" => ("\"json\"", vec!["--log-format", "json"]),
            "max-connections" => ("17", vec!["--max-connections", "17"]),
            "header-read-timeout" => ("19", vec!["--header-read-timeout", "19"]),
            "body-read-timeout" => ("23", vec!["--body-read-timeout", "23"]),
            "metrics-listen" => (
                "\"127.0.0.1:9182\"",
                vec!["--metrics-listen", "127.0.0.1:9182"],
            ),
            "max-metadata-bytes" => ("4096", vec!["--max-metadata-bytes", "4096"]),
            "max-result-bytes" => ("1000", vec!["--max-result-bytes", "1000"]),
            "max-result-elements" => ("1000", vec!["--max-result-elements", "1000"]),
            "query-timeout" => ("\"2s\"", vec!["--query-timeout", "2s"]),
            "auth-htpasswd" => ("\"/etc/h\"", vec!["--auth-htpasswd", "/etc/h"]),
            "auth-roles" => ("\"/etc/r\"", vec!["--auth-roles", "/etc/r"]),
            "auth-token-ttl" => ("60", vec!["--auth-token-ttl", "60"]),
            "insecure-no-auth" => ("true", vec!["--insecure-no-auth"]),
            "allowed-host" => ("[\"a.example\"]", vec!["--allowed-host", "a.example"]),
            "cors-origin" => (
                "[\"https://a.example\"]",
                vec!["--cors-origin", "https://a.example"],
            ),
            "allow-target" => ("[\"127.0.0.0/8\"]", vec!["--allow-target", "127.0.0.0/8"]),
            "audit-log" => ("\"/tmp/audit\"", vec!["--audit-log", "/tmp/audit"]),
            "tls-cert" => ("\"/etc/c.pem\"", vec!["--tls-cert", "/etc/c.pem"]),
            "tls-key" => ("\"/etc/k.pem\"", vec!["--tls-key", "/etc/k.pem"]),
            "tls-client-ca" => ("\"/etc/ca.pem\"", vec!["--tls-client-ca", "/etc/ca.pem"]),
            _ => return None,
        })
    }

    fn server_args(inv: Invocation) -> String {
        match inv.cli.command {
            Sub::Allinone(mut a) => {
                a.config = None;
                format!("{a:?}")
            }
            _ => panic!("not allinone"),
        }
    }

    fn with_file(toml: &str, extra: &[&str]) -> Result<Invocation, ParseError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topotap.toml");
        std::fs::write(&path, toml).unwrap();
        let mut argv = vec!["topotap", "allinone", "--config", path.to_str().unwrap()];
        argv.extend_from_slice(extra);
        parse(argv)
    }

    fn config_error(toml: &str) -> String {
        match with_file(toml, &[]) {
            Err(ParseError::Config(e)) => e.to_string(),
            Err(ParseError::Clap(e)) => panic!("clap error instead: {e}"),
            Ok(_) => panic!("accepted: {toml}"),
        }
    }

    #[test]
    fn every_server_flag_is_settable_from_the_file() {
        let defaults = server_args(parse(["topotap", "allinone"]).unwrap());
        let cmd = server_command();
        let mut checked = 0;
        for arg in cmd.get_arguments().filter(|a| settable(a)) {
            let key = key_of(arg);
            let (toml, cli) = sample(key).unwrap_or_else(|| {
                panic!("flag --{key} has no sample value in config::tests::sample")
            });
            let from_file = server_args(with_file(&format!("{key} = {toml}\n"), &[]).unwrap());
            let mut argv = vec!["topotap", "allinone"];
            argv.extend(cli);
            let from_flags = server_args(parse(argv).unwrap());
            assert_eq!(from_file, from_flags, "--{key} from the file");
            assert_ne!(from_file, defaults, "--{key}: the sample is the default");
            // snake_case spelling too.
            let snake = key.replace('-', "_");
            let from_snake = server_args(with_file(&format!("{snake} = {toml}\n"), &[]).unwrap());
            assert_eq!(from_snake, from_flags, "{snake} from the file");
            checked += 1;
        }
        assert!(checked >= 12, "only {checked} flags found");
    }

    #[test]
    fn flags_override_the_file() {
        let inv = with_file(
            "listen = \"127.0.0.1:1111\"\nflow-update = 5\n",
            &["--listen", "127.0.0.1:2222"],
        )
        .unwrap();
        let Sub::Allinone(a) = inv.cli.command else {
            panic!()
        };
        assert_eq!(a.listen.to_string(), "127.0.0.1:2222");
        assert_eq!(a.flow_update, 5);
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let e = config_error("listen = \"127.0.0.1:1\"\n\n# comment\nlissten = \"x\"\n");
        assert!(e.contains("topotap.toml:4:"), "{e}");
        assert!(e.contains("unknown key 'lissten'"), "{e}");
        assert!(e.contains("known keys: ") && e.contains(", listen,"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_key_and_line() {
        let e = config_error("flow-update = 5\nlisten = 8082\n");
        assert!(e.contains(":2: key 'listen': invalid value '8082'"), "{e}");
        let e = config_error("\nflow-max-entries = \"many\"\n");
        assert!(
            e.contains(":2: key 'flow-max-entries': invalid value 'many'"),
            "{e}"
        );
        let e = config_error("flow-update = 0\n");
        assert!(e.contains(":1: key 'flow-update'"), "{e}");
        let e = config_error("no-probes = \"yes\"\n");
        assert!(e.contains(":1: key 'no-probes': expected a boolean"), "{e}");
        let e = config_error("listen = [\"127.0.0.1:1\"]\n");
        assert!(
            e.contains(":1: key 'listen': expected a single value"),
            "{e}"
        );
        let e = config_error("log-format = \"xml\"\n");
        assert!(
            e.contains(":1: key 'log-format': invalid value 'xml'"),
            "{e}"
        );
        let e = config_error("[server]\nlisten = \"127.0.0.1:1\"\n");
        assert!(e.contains(":1: key 'server' is a table"), "{e}");
        let e = config_error("listen = \"127.0.0.1:1\"\nlisten = \"x\"\n");
        assert!(e.contains(":2: invalid TOML"), "{e}");
        let e = config_error("listen = \"127.0.0.1:1\"\nflow_update = 3\nflow-update = 4\n");
        assert!(
            e.contains(":3: key 'flow-update' sets 'flow_update' again (line 2)"),
            "{e}"
        );
    }

    #[test]
    fn print_is_a_config_file_that_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.toml");
        std::fs::write(
            &path,
            "flow-update = 5\nnetns-path = [\"/tmp/x\"]\nno-probes = true\nhost-id = \"007\"\n",
        )
        .unwrap();
        let inv = parse([
            "topotap",
            "config",
            "print",
            "--config",
            path.to_str().unwrap(),
            "--flow-expire",
            "77",
        ])
        .unwrap();
        let text = print(&inv);
        assert!(text.contains("flow-update = 5  # "), "{text}");
        assert!(text.contains("in.toml:1"), "{text}");
        assert!(text.contains("flow-expire = 77  # command line"), "{text}");
        assert!(text.contains("host-id = \"007\""), "{text}");
        assert!(
            text.contains("listen = \"127.0.0.1:8082\"  # default"),
            "{text}"
        );
        // Reading the printed configuration back gives the same server arguments.
        let out = dir.path().join("out.toml");
        std::fs::write(&out, &text).unwrap();
        let again =
            server_args(parse(["topotap", "allinone", "--config", out.to_str().unwrap()]).unwrap());
        let direct = server_args(
            parse([
                "topotap",
                "allinone",
                "--config",
                path.to_str().unwrap(),
                "--flow-expire",
                "77",
            ])
            .unwrap(),
        );
        assert_eq!(again, direct);
    }
}
