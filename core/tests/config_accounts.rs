//! `accounts`, `users` and `no_auth_user` as the NATS server reads them: what a good
//! file gives, and one test per malformed entry with the NATS server's words.

use stan_core::config::{parse_str, NatsFileOptions};
use stan_core::nats::account::{AccountConfig, Export, Import, ShareKind, User};

fn nats(text: &str) -> NatsFileOptions {
    let map = parse_str("n.conf", text).unwrap_or_else(|e| panic!("{e}"));
    NatsFileOptions::from_map(&map).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn error(text: &str) -> String {
    let map = parse_str("n.conf", text).unwrap_or_else(|e| panic!("{e}"));
    match NatsFileOptions::from_map(&map) {
        Ok(o) => panic!("{text:?} gave {o:?}"),
        Err(e) => e.to_string(),
    }
}

fn user(name: &str, pass: &str, account: &str) -> User {
    User {
        name: name.into(),
        pass: pass.into(),
        account: account.into(),
    }
}

#[test]
fn accounts_users_exports_and_imports_are_read() {
    let o = nats(
        r#"
authorization { users: [ {user: g, password: gp} ] }
accounts {
  A: {
    users: [ {user: a, pass: ap}, {username: a2, password: "$2a$11$x"} ]
    exports: [ {stream: "news.>"}, {service: "help", accounts: [B]} ]
  }
  B: {
    users: [ {user: b, password: bp} ]
    imports: [
      {stream: {account: A, subject: "news.>"}, prefix: from_a}
      {service: {account: A, subject: help}, to: ask}
      {stream: {account: A, subject: "news.x"}}
    ]
  }
}
no_auth_user: b
"#,
    );
    assert_eq!(
        o.users.unwrap(),
        vec![
            user("g", "gp", "$G"),
            user("a", "ap", "A"),
            user("a2", "$2a$11$x", "A"),
            user("b", "bp", "B"),
        ]
    );
    assert_eq!(o.no_auth_user.as_deref(), Some("b"));
    let accounts = o.accounts.unwrap();
    assert_eq!(
        accounts[0],
        AccountConfig {
            name: "A".into(),
            exports: vec![
                Export {
                    kind: ShareKind::Stream,
                    subject: "news.>".into(),
                    accounts: None,
                },
                Export {
                    kind: ShareKind::Service,
                    subject: "help".into(),
                    accounts: Some(vec!["B".into()]),
                },
            ],
            imports: vec![],
        }
    );
    let import = |kind, subject: &str, to: &str| Import {
        kind,
        account: "A".into(),
        subject: subject.into(),
        to: to.into(),
    };
    assert_eq!(
        accounts[1].imports,
        vec![
            import(ShareKind::Stream, "news.>", "from_a.news.>"),
            import(ShareKind::Service, "help", "ask"),
            import(ShareKind::Stream, "news.x", "news.x"),
        ]
    );
    // The short form names accounts without users.
    let o = nats("accounts: [A, B]\n");
    assert_eq!(o.accounts.unwrap().len(), 2);
    assert_eq!(o.users, None);
}

#[test]
fn bcrypt_secrets_are_accepted() {
    let o = nats("authorization { user: a, password: $2a$11$abcdefghijklmnopqrstuv }\n");
    assert_eq!(o.pass.as_deref(), Some("$2a$11$abcdefghijklmnopqrstuv"));
    let o = nats("authorization { token: \"$2b$10$xyz\" }\n");
    assert_eq!(o.token.as_deref(), Some("$2b$10$xyz"));
}

macro_rules! refused {
    ($($name:ident: $text:expr => $want:expr;)*) => {$(
        #[test]
        fn $name() {
            assert_eq!(error($text), $want);
        }
    )*};
}

refused! {
    account_not_a_map: "accounts {\n  A: 1\n}\n" => "n.conf:2: Expected map entries for accounts";
    global_account_is_reserved: "accounts { \"$G\": {} }\n" => "n.conf:1: \"$G\" is a Reserved Account";
    global_account_is_reserved_in_a_list: "accounts: [\"$G\"]\n" => "n.conf:1: \"$G\" is a Reserved Account";
    duplicate_account_in_a_list: "accounts: [A, A]\n" => "n.conf:1: Duplicate Account Entry: A";
    unknown_account_field: "accounts {\n  A: {\n    userz: []\n  }\n}\n" => "n.conf:3: unknown field \"userz\"";
    account_jetstream: "accounts { A: { jetstream: enabled } }\n" => "n.conf:1: parameter \"accounts.A.jetstream\" is not supported yet by stan-server";
    account_mappings: "accounts { A: { mappings: {} } }\n" => "n.conf:1: parameter \"accounts.A.mappings\" is not supported yet by stan-server";
    users_not_an_array: "accounts { A: { users: x } }\n" => "n.conf:1: Expected users field to be an array, got x";
    user_not_a_map: "accounts { A: { users: [x] } }\n" => "n.conf:1: Expected user entry to be a map/struct, got x";
    user_without_a_name: "accounts { A: { users: [{password: p}] } }\n" => "n.conf:1: User entry requires a user";
    unknown_user_field: "accounts { A: { users: [{user: u, pw: p}] } }\n" => "n.conf:1: unknown field \"pw\"";
    nkey_user: "accounts { A: { users: [{nkey: UABC}] } }\n" => "n.conf:1: parameter \"accounts.A.users.nkey\" is not supported yet by stan-server";
    user_permissions: "authorization { users: [{user: u, permissions: {}}] }\n" => "n.conf:1: parameter \"authorization.users.permissions\" is not supported yet by stan-server";
    duplicate_user: "accounts { A: { users: [{user: u}] }, B: { users: [{user: u}] } }\n" => "n.conf:1: Duplicate user \"u\" detected";
    duplicate_user_of_authorization: "authorization { users: [{user: u}] }\naccounts { A: { users: [{user: u}] } }\n" => "n.conf:2: Duplicate user \"u\" detected";
    single_user_and_accounts: "authorization { user: x, password: y }\naccounts {\n  A: { users: [{user: u}] }\n}\n" => "n.conf:2: Can not have a single user/pass and accounts";
    token_and_accounts: "authorization { token: t }\naccounts { A: { users: [{user: u}] } }\n" => "n.conf:2: Can not have a token and accounts";
    single_user_and_users: "authorization {\n  user: x\n  users: [{user: u}]\n}\n" => "n.conf:1: Can not have a single user/pass and a users array";
    exports_not_an_array: "accounts { A: { exports: x } }\n" => "n.conf:1: Exports should be an array, got string";
    export_not_a_map: "accounts { A: { exports: [x] } }\n" => "n.conf:1: Export Items should be a map with type entry, got string";
    export_stream_and_service: "accounts { A: { exports: [{stream: a, service: b}] } }\n" => "n.conf:1: Detected service \"b\" but already saw a stream";
    export_name_not_a_string: "accounts { A: { exports: [{stream: 5}] } }\n" => "n.conf:1: Expected stream name to be string, got int64";
    export_to_an_undefined_account: "accounts { A: { exports: [{stream: a, accounts: [C]}] } }\n" => "n.conf:1: \"C\" account not defined for stream export";
    export_response_type: "accounts { A: { exports: [{service: a, response_type: stream}] } }\n" => "n.conf:1: parameter \"accounts.A.exports.response_type\" is not supported yet by stan-server";
    export_unknown_field: "accounts { A: { exports: [{stream: a, foo: 1}] } }\n" => "n.conf:1: unknown field \"foo\"";
    imports_not_an_array: "accounts { A: { imports: {} } }\n" => "n.conf:1: Imports should be an array, got map[string]interface {}";
    import_not_a_map: "accounts { A: { imports: [1] } }\n" => "n.conf:1: Import Items should be a map with type entry, got int64";
    import_source_not_a_map: "accounts { A: { imports: [{stream: x}] } }\n" => "n.conf:1: Stream entry should be an account map, got string";
    import_without_a_subject: "accounts { A: { imports: [{service: {account: B}}] } }\n" => "n.conf:1: Expect an account name and a subject";
    import_stream_and_service: "accounts { A: { imports: [{stream: {account: B, subject: x}, service: {account: B, subject: y}}] } }\n" => "n.conf:1: Detected service but already saw a stream";
    import_from_an_undefined_account: "accounts { A: { imports: [{stream: {account: Z, subject: x}}] } }\n" => "n.conf:1: \"Z\" account not defined for stream import";
    import_not_exported: "accounts { A: {}, B: { imports: [{stream: {account: A, subject: x}}] } }\n" => "n.conf:1: Error adding stream import \"x\": stream import not authorized";
    import_of_an_export_for_others: "accounts { A: { exports: [{service: s, accounts: [C]}] }, B: { imports: [{service: {account: A, subject: s}}] }, C: {} }\n" => "n.conf:1: Error adding service import \"s\": service import not authorized";
    import_wider_than_the_export: "accounts { A: { exports: [{stream: \"a.*\"}] }, B: { imports: [{stream: {account: A, subject: \"a.>\"}}] } }\n" => "n.conf:1: Error adding stream import \"a.>\": stream import not authorized";
    import_prefix_and_to: "accounts { A: { imports: [{stream: {account: B, subject: x}, prefix: p, to: q}] } }\n" => "n.conf:1: Stream import can not have a 'prefix' and a 'to' property";
    import_wildcard_prefix: "accounts { A: { exports: [{stream: x}] }, B: { imports: [{stream: {account: A, subject: x}, prefix: \"p.*\"}] } }\n" => "n.conf:1: Error adding stream import \"x\": stream import prefix can not contain wildcard tokens";
    duplicate_service_import: "accounts { A: { exports: [{service: s}, {service: t}] }, B: { imports: [{service: {account: A, subject: s}, to: q}, {service: {account: A, subject: t}, to: q}] } }\n" => "n.conf:1: Duplicate service import subject \"q\", previously used in import for account \"A\", subject \"s\"";
    import_share: "accounts { A: { imports: [{service: {account: B, subject: s}, share: true}] } }\n" => "n.conf:1: parameter \"accounts.A.imports.share\" is not supported yet by stan-server";
    no_auth_user_without_users: "\nno_auth_user: x\n" => "n.conf:2: no_auth_user: \"x\" present, but users are not defined";
    no_auth_user_not_a_user: "accounts { A: { users: [{user: u}] } }\nno_auth_user: x\n" => "n.conf:2: no_auth_user: \"x\" not present as user in authorization block or account configuration";
}
