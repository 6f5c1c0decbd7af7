//! `accounts { }`, the `users` lists and `no_auth_user` of the NATS server, read with
//! its key names, aliases and error texts.

use super::value::{Entry, Value};
use super::{go_quote, not_supported, ConfigError};
use crate::nats::account::{AccountConfig, Export, Import, ShareKind, User, GLOBAL};

type Result<T> = std::result::Result<T, ConfigError>;

/// `users: [ {user, password}, ... ]` of an account (or of `authorization`, for
/// `$G`); `path` names the list in errors about keys this server lacks.
pub(super) fn users(e: &Entry, account: &str, path: &str) -> Result<Vec<User>> {
    let Value::Array(items) = &e.value else {
        return Err(ConfigError::at(
            e,
            format!("Expected users field to be an array, got {}", e.value),
        ));
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Map(fields) = item else {
            return Err(ConfigError::at(
                e,
                format!("Expected user entry to be a map/struct, got {item}"),
            ));
        };
        let (mut name, mut pass) = (String::new(), String::new());
        for f in fields {
            match f.key.to_lowercase().as_str() {
                "user" | "username" => name = string(f)?,
                "pass" | "password" => pass = string(f)?,
                "nkey"
                | "permission"
                | "permissions"
                | "authorization"
                | "allowed_connection_types"
                | "connection_types"
                | "clients" => {
                    return Err(not_supported(f, &format!("{path}.{}", f.key)));
                }
                _ if f.used_as_variable => {}
                _ => return Err(unknown(f)),
            }
        }
        if name.is_empty() {
            return Err(ConfigError::at(e, "User entry requires a user"));
        }
        out.push(User {
            name,
            pass,
            account: account.to_string(),
        });
    }
    Ok(out)
}

/// `accounts { NAME: { users, exports, imports } }` or `accounts: [NAME, ...]`:
/// the accounts and their users, exports and imports checked against each other.
pub(super) fn accounts(e: &Entry) -> Result<(Vec<AccountConfig>, Vec<User>)> {
    let mut accounts: Vec<AccountConfig> = Vec::new();
    let mut users = Vec::new();
    match &e.value {
        Value::Array(names) => {
            for n in names {
                let Value::String(name) = n else {
                    return Err(ConfigError::at(
                        e,
                        format!(
                            "interface conversion: interface {{}} is {}, not string",
                            n.go_type()
                        ),
                    ));
                };
                if name == GLOBAL {
                    return Err(reserved(e, name));
                }
                if accounts.iter().any(|a| &a.name == name) {
                    return Err(ConfigError::at(
                        e,
                        format!("Duplicate Account Entry: {name}"),
                    ));
                }
                accounts.push(AccountConfig {
                    name: name.clone(),
                    ..AccountConfig::default()
                });
            }
        }
        Value::Map(block) => {
            for a in block {
                if a.used_as_variable {
                    continue;
                }
                let Value::Map(fields) = &a.value else {
                    return Err(ConfigError::at(a, "Expected map entries for accounts"));
                };
                if a.key == GLOBAL {
                    return Err(reserved(a, &a.key));
                }
                let mut acc = AccountConfig {
                    name: a.key.clone(),
                    ..AccountConfig::default()
                };
                for f in fields {
                    let path = format!("{}.{}.{}", e.key, a.key, f.key);
                    match f.key.to_lowercase().as_str() {
                        "users" => users.extend(self::users(f, &a.key, &path)?),
                        "exports" => acc.exports = exports(f, &path)?,
                        "imports" => acc.imports = imports(f, &path)?,
                        "nkey"
                        | "jetstream"
                        | "default_permissions"
                        | "mappings"
                        | "maps"
                        | "limits" => return Err(not_supported(f, &path)),
                        _ if f.used_as_variable => {}
                        _ => return Err(unknown(f)),
                    }
                }
                accounts.push(acc);
            }
        }
        // The NATS server reads nothing from any other kind of value.
        _ => {}
    }
    crate::nats::account::validate(&accounts).map_err(|reason| ConfigError::at(e, reason))?;
    Ok((accounts, users))
}

fn reserved(e: &Entry, name: &str) -> ConfigError {
    ConfigError::at(e, format!("{} is a Reserved Account", go_quote(name)))
}

fn exports(e: &Entry, path: &str) -> Result<Vec<Export>> {
    let Value::Array(items) = &e.value else {
        return Err(ConfigError::at(
            e,
            format!("Exports should be an array, got {}", e.value.go_type()),
        ));
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Map(fields) = item else {
            return Err(ConfigError::at(
                e,
                format!(
                    "Export Items should be a map with type entry, got {}",
                    item.go_type()
                ),
            ));
        };
        let mut kind: Option<(ShareKind, String)> = None;
        let mut accounts = None;
        for f in fields {
            match f.key.to_lowercase().as_str() {
                k @ ("stream" | "service") => {
                    let (this, other) = if k == "stream" {
                        (ShareKind::Stream, "service")
                    } else {
                        (ShareKind::Service, "stream")
                    };
                    if kind.as_ref().is_some_and(|(seen, _)| *seen != this) {
                        return Err(ConfigError::at(
                            f,
                            format!("Detected {k} {} but already saw a {other}", shown(&f.value)),
                        ));
                    }
                    let Value::String(subject) = &f.value else {
                        return Err(ConfigError::at(
                            f,
                            format!("Expected {k} name to be string, got {}", f.value.go_type()),
                        ));
                    };
                    kind = Some((this, subject.clone()));
                }
                "accounts" => accounts = Some(strings(f)?),
                "response"
                | "response_type"
                | "threshold"
                | "response_threshold"
                | "response_max_time"
                | "response_time"
                | "latency"
                | "account_token_position" => {
                    return Err(not_supported(f, &format!("{path}.{}", f.key)));
                }
                _ if f.used_as_variable => {}
                _ => return Err(unknown(f)),
            }
        }
        if let Some((kind, subject)) = kind {
            out.push(Export {
                kind,
                subject,
                accounts,
            });
        }
    }
    Ok(out)
}

fn imports(e: &Entry, path: &str) -> Result<Vec<Import>> {
    let Value::Array(items) = &e.value else {
        return Err(ConfigError::at(
            e,
            format!("Imports should be an array, got {}", e.value.go_type()),
        ));
    };
    let mut out: Vec<Import> = Vec::new();
    for item in items {
        let Value::Map(fields) = item else {
            return Err(ConfigError::at(
                e,
                format!(
                    "Import Items should be a map with type entry, got {}",
                    item.go_type()
                ),
            ));
        };
        let mut kind: Option<(ShareKind, String, String)> = None;
        let (mut prefix, mut to) = (None::<String>, None::<String>);
        for f in fields {
            match f.key.to_lowercase().as_str() {
                k @ ("stream" | "service") => {
                    let (this, other, name) = if k == "stream" {
                        (ShareKind::Stream, "service", "Stream")
                    } else {
                        (ShareKind::Service, "stream", "Service")
                    };
                    if kind.as_ref().is_some_and(|(seen, ..)| *seen != this) {
                        return Err(ConfigError::at(
                            f,
                            format!("Detected {k} but already saw a {other}"),
                        ));
                    }
                    let Value::Map(source) = &f.value else {
                        return Err(ConfigError::at(
                            f,
                            format!(
                                "{name} entry should be an account map, got {}",
                                f.value.go_type()
                            ),
                        ));
                    };
                    let (mut account, mut subject) = (String::new(), String::new());
                    for s in source {
                        match s.key.to_lowercase().as_str() {
                            "account" => account = string(s)?,
                            "subject" => subject = string(s)?,
                            _ if s.used_as_variable => {}
                            _ => return Err(unknown(s)),
                        }
                    }
                    if account.is_empty() || subject.is_empty() {
                        return Err(ConfigError::at(f, "Expect an account name and a subject"));
                    }
                    kind = Some((this, account, subject));
                }
                "prefix" => prefix = Some(string(f)?),
                "to" => {
                    to = Some(string(f)?);
                    if prefix.is_some() && matches!(kind, Some((ShareKind::Stream, ..)) | None) {
                        return Err(ConfigError::at(
                            f,
                            "Stream import can not have a 'prefix' and a 'to' property",
                        ));
                    }
                }
                "share" => {
                    if !matches!(f.value, Value::Bool(false)) {
                        return Err(not_supported(f, &format!("{path}.{}", f.key)));
                    }
                }
                _ if f.used_as_variable => {}
                _ => return Err(unknown(f)),
            }
        }
        let Some((kind, account, subject)) = kind else {
            continue;
        };
        let local = match (kind, &prefix, &to) {
            (ShareKind::Stream, Some(p), _) if !p.is_empty() => {
                let literal = !p.split('.').any(|t| t == "*" || t == ">");
                if !literal {
                    return Err(ConfigError::at(
                        e,
                        format!(
                            "Error adding stream import {}: stream import prefix can not contain wildcard tokens",
                            go_quote(&subject)
                        ),
                    ));
                }
                let dot = if p.ends_with('.') { "" } else { "." };
                format!("{p}{dot}{subject}")
            }
            (_, _, Some(t)) if !t.is_empty() => t.clone(),
            _ => subject.clone(),
        };
        if kind == ShareKind::Service {
            if let Some(dup) = out
                .iter()
                .find(|o| o.kind == ShareKind::Service && o.to == local)
            {
                return Err(ConfigError::at(
                    e,
                    format!(
                        "Duplicate service import subject {}, previously used in import for account {}, subject {}",
                        go_quote(&local),
                        go_quote(&dup.account),
                        go_quote(&dup.subject)
                    ),
                ));
            }
        }
        out.push(Import {
            kind,
            account,
            subject,
            to: local,
        });
    }
    Ok(out)
}

/// A value in an error, quoted when a string, as the NATS server shows it.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        other => other.to_string(),
    }
}

fn strings(e: &Entry) -> Result<Vec<String>> {
    let Value::Array(items) = &e.value else {
        return Err(ConfigError::at(
            e,
            format!(
                "interface conversion: interface {{}} is {}, not []interface {{}}",
                e.value.go_type()
            ),
        ));
    };
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(ConfigError::at(
                e,
                format!(
                    "interface conversion: interface {{}} is {}, not string",
                    other.go_type()
                ),
            )),
        })
        .collect()
}

fn string(e: &Entry) -> Result<String> {
    match &e.value {
        Value::String(s) => Ok(s.clone()),
        other => Err(ConfigError::at(
            e,
            format!(
                "interface conversion: interface {{}} is {}, not string",
                other.go_type()
            ),
        )),
    }
}

fn unknown(e: &Entry) -> ConfigError {
    ConfigError::at(e, format!("unknown field {}", go_quote(&e.key)))
}
