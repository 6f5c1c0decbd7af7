//! Accounts of the embedded NATS server on virtual time: isolation, users logging
//! into their account, stream and service imports with the way back of answers,
//! queue groups per account, bcrypt secrets, reloads, and routes that keep
//! accounts apart.

mod common;

use common::World;
use stan_core::nats::account::{AccountConfig, Export, Import, ShareKind, User};
use stan_core::nats::{self, Auth, ClusterConfig, ConnId};
use stan_core::node::NodeConfig;

fn user(name: &str, pass: &str, account: &str) -> User {
    User {
        name: name.into(),
        pass: pass.into(),
        account: account.into(),
    }
}

fn account(name: &str, exports: Vec<Export>, imports: Vec<Import>) -> AccountConfig {
    AccountConfig {
        name: name.into(),
        exports,
        imports,
    }
}

fn export(kind: ShareKind, subject: &str) -> Export {
    Export {
        kind,
        subject: subject.into(),
        accounts: None,
    }
}

fn import(kind: ShareKind, from: &str, subject: &str, to: &str) -> Import {
    Import {
        kind,
        account: from.into(),
        subject: subject.into(),
        to: to.into(),
    }
}

/// Accounts A (exports stream `news.>` and service `help`) and B (imports both:
/// the stream under `a.`, the service as `ask`), users `a`, `a2`, `b`, and `g` in
/// `$G`.
fn config() -> nats::Config {
    nats::Config {
        rng_seed: 1,
        auth: Auth::Users {
            users: vec![
                user("g", "gp", "$G"),
                user("a", "ap", "A"),
                user("a2", "ap", "A"),
                user("b", "bp", "B"),
            ],
            no_auth_user: None,
        },
        accounts: vec![
            account(
                "A",
                vec![
                    export(ShareKind::Stream, "news.>"),
                    export(ShareKind::Service, "help"),
                ],
                vec![],
            ),
            account(
                "B",
                vec![],
                vec![
                    import(ShareKind::Stream, "A", "news.>", "a.news.>"),
                    import(ShareKind::Service, "A", "help", "ask"),
                ],
            ),
        ],
        ..nats::Config::default()
    }
}

fn world(cfg: nats::Config) -> World {
    stan_core::nats::account::validate(&cfg.accounts).expect("a valid configuration");
    World::new(NodeConfig {
        nats: cfg,
        streaming: None,
    })
}

fn login(w: &mut World, name: &str, pass: &str) -> ConnId {
    let c = w.accept();
    w.send(
        c,
        format!("CONNECT {{\"user\":\"{name}\",\"pass\":\"{pass}\",\"headers\":true,\"no_responders\":true}}\r\nPING\r\n")
            .as_bytes(),
    );
    let hello = w.take(c);
    assert!(hello.ends_with("PONG\r\n"), "{name}: {hello}");
    c
}

#[test]
fn accounts_are_separate_subject_spaces() {
    let mut w = world(config());
    let a = login(&mut w, "a", "ap");
    let b = login(&mut w, "b", "bp");
    let g = login(&mut w, "g", "gp");
    for c in [a, b, g] {
        w.send(c, b"SUB > 1\r\nPING\r\n");
        w.take(c);
    }
    w.send(a, b"PUB secret 2\r\nhi\r\n");
    w.send(g, b"PUB global 2\r\nyo\r\n");
    assert_eq!(w.take(a), "MSG secret 1 2\r\nhi\r\n");
    assert_eq!(w.take(g), "MSG global 1 2\r\nyo\r\n");
    assert_eq!(w.take(b), "", "nothing crosses into B unless imported");
    // Users of one account see each other's messages.
    let a2 = login(&mut w, "a2", "ap");
    w.send(a2, b"PUB secret 3\r\nbye\r\n");
    assert_eq!(w.take(a), "MSG secret 1 3\r\nbye\r\n");
    snapshot!("account_isolation", w.transcript);
}

#[test]
fn a_stream_import_delivers_under_its_prefix() {
    let mut w = world(config());
    let a = login(&mut w, "a", "ap");
    let b = login(&mut w, "b", "bp");
    w.send(b, b"SUB a.news.* 1\r\nSUB news.sport 2\r\nPING\r\n");
    w.take(b);
    w.send(
        a,
        b"PUB news.sport reply.x 5\r\ngoal!\r\nPUB other 1\r\nx\r\n",
    );
    // The reply subject travels unchanged; B's own `news.sport` stays B's.
    assert_eq!(w.take(b), "MSG a.news.sport 1 reply.x 5\r\ngoal!\r\n");
    w.send(b, b"PUB news.sport 1\r\nb\r\n");
    assert_eq!(w.take(b), "MSG news.sport 2 1\r\nb\r\n");
    assert_eq!(w.take(a), "");
}

#[test]
fn a_service_import_answers_the_requester() {
    let mut w = world(config());
    let responder = login(&mut w, "a", "ap");
    let requester = login(&mut w, "b", "bp");
    w.send(responder, b"SUB help 1\r\nPING\r\n");
    w.take(responder);
    w.send(
        requester,
        b"SUB _INBOX.me 7\r\nPUB ask _INBOX.me 3\r\nsos\r\n",
    );
    let request = w.take(responder);
    // The responder sees the exporter's subject and a reply of its own account.
    let reply = request
        .strip_prefix("MSG help 1 ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("{request}"))
        .to_string();
    assert!(reply.starts_with("_R_."), "{reply}");
    assert_eq!(reply.len(), "_R_.123456.123456".len(), "{reply}");
    assert!(request.ends_with(" 3\r\nsos\r\n"), "{request}");
    w.send(responder, format!("PUB {reply} 4\r\nhelp\r\n").as_bytes());
    assert_eq!(w.take(requester), "MSG _INBOX.me 7 4\r\nhelp\r\n");
    // One answer per request: a second one finds no way back.
    w.send(responder, format!("PUB {reply} 5\r\nagain\r\n").as_bytes());
    assert_eq!(w.take(requester), "");
    // Without a responder the requester learns it at once.
    w.send(responder, b"UNSUB 1\r\n");
    w.send(requester, b"PUB ask _INBOX.me 1\r\n?\r\n");
    assert_eq!(
        w.take(requester),
        "HMSG _INBOX.me 7 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
    );
    // The service is not reachable under its own name from B.
    w.send(responder, b"SUB help 2\r\nPING\r\n");
    w.take(responder);
    w.send(requester, b"PUB help 1\r\nx\r\n");
    assert_eq!(w.take(responder), "");
    snapshot!("account_service_import", w.transcript);
}

#[test]
fn queue_groups_are_per_account() {
    let mut w = world(config());
    let a_members: Vec<ConnId> = (0..2).map(|_| login(&mut w, "a", "ap")).collect();
    let g_member = login(&mut w, "g", "gp");
    for &c in a_members.iter().chain([&g_member]) {
        w.send(c, b"SUB work q 1\r\nPING\r\n");
        w.take(c);
    }
    let publisher = login(&mut w, "a2", "ap");
    for i in 0..10 {
        w.send(publisher, format!("PUB work 1\r\n{i}\r\n").as_bytes());
    }
    let got: usize = a_members
        .iter()
        .map(|&c| w.take(c).matches("MSG work").count())
        .sum();
    assert_eq!(got, 10, "each message goes to one member of A's group");
    assert_eq!(
        w.take(g_member),
        "",
        "the same group name in $G is another group"
    );
}

#[test]
fn bcrypt_passwords_and_tokens() {
    let hash = |secret: &str, version| {
        bcrypt::hash_with_result(secret, 4)
            .expect("hash")
            .format_for_version(version)
    };
    let mut cfg = config();
    cfg.auth = Auth::Users {
        users: vec![
            user("a", &hash("pw-a", bcrypt::Version::TwoA), "A"),
            user("y", &hash("pw-y", bcrypt::Version::TwoY), "B"),
        ],
        no_auth_user: None,
    };
    let mut w = world(cfg);
    login(&mut w, "a", "pw-a");
    login(&mut w, "y", "pw-y");
    for (name, pass) in [("a", "pw-y"), ("y", "")] {
        let c = w.accept();
        w.send(
            c,
            format!("CONNECT {{\"user\":\"{name}\",\"pass\":\"{pass}\"}}\r\n").as_bytes(),
        );
        assert!(w.take(c).ends_with("-ERR 'Authorization Violation'\r\n"));
        assert!(w.closed.contains(&c));
    }
    // The hash itself is not the password.
    let stored = hash("pw-a", bcrypt::Version::TwoB);
    let mut w = World::new(NodeConfig {
        nats: nats::Config {
            auth: Auth::UserPass {
                user: "u".into(),
                pass: stored.clone(),
            },
            ..nats::Config::default()
        },
        streaming: None,
    });
    let c = w.accept();
    w.send(
        c,
        format!("CONNECT {{\"user\":\"u\",\"pass\":\"{stored}\"}}\r\n").as_bytes(),
    );
    assert!(w.take(c).ends_with("-ERR 'Authorization Violation'\r\n"));
    login(&mut w, "u", "pw-a");
    let mut w = World::new(NodeConfig {
        nats: nats::Config {
            auth: Auth::Token(hash("tok", bcrypt::Version::TwoA)),
            ..nats::Config::default()
        },
        streaming: None,
    });
    let ok = w.accept();
    w.send(ok, b"CONNECT {\"auth_token\":\"tok\"}\r\nPING\r\n");
    assert!(w.take(ok).ends_with("PONG\r\n"));
    let bad = w.accept();
    w.send(bad, b"CONNECT {\"auth_token\":\"tok2\"}\r\n");
    assert!(w.take(bad).ends_with("-ERR 'Authorization Violation'\r\n"));
}

#[test]
fn no_auth_user_logs_anonymous_clients_into_its_account() {
    let mut cfg = config();
    if let Auth::Users { no_auth_user, .. } = &mut cfg.auth {
        *no_auth_user = Some("b".into());
    }
    let mut w = world(cfg);
    let anonymous = w.accept();
    let info = w.take(anonymous);
    assert!(!info.contains("auth_required"), "{info}");
    w.send(anonymous, b"CONNECT {}\r\nSUB a.news.x 1\r\nPING\r\n");
    assert!(w.take(anonymous).ends_with("PONG\r\n"));
    let a = login(&mut w, "a", "ap");
    w.send(a, b"PUB news.x 1\r\n!\r\n");
    assert_eq!(w.take(anonymous), "MSG a.news.x 1 1\r\n!\r\n");
    // Wrong credentials are still refused.
    let bad = w.accept();
    w.send(bad, b"CONNECT {\"user\":\"b\",\"pass\":\"no\"}\r\n");
    assert!(w.take(bad).ends_with("-ERR 'Authorization Violation'\r\n"));
}

#[test]
fn reload_closes_the_clients_whose_user_went_and_applies_new_accounts() {
    let mut w = world(config());
    let a = login(&mut w, "a", "ap");
    let b = login(&mut w, "b", "bp");
    let g = login(&mut w, "g", "gp");
    let mut cfg = config();
    if let Auth::Users { users, .. } = &mut cfg.auth {
        users.retain(|u| u.name != "b");
        users.push(user("c", "cp", "C"));
    }
    cfg.accounts[1].imports.clear();
    cfg.accounts.push(account(
        "C",
        vec![],
        vec![import(ShareKind::Stream, "A", "news.>", "news.>")],
    ));
    let now = w.now;
    let lines = w.node.reload_nats(now, cfg).expect("reload");
    assert_eq!(
        lines,
        vec!["Reloaded: authorization users", "Reloaded: accounts"]
    );
    w.drain();
    assert!(w.take(b).ends_with("-ERR 'Authorization Violation'\r\n"));
    assert!(w.closed.contains(&b));
    assert!(!w.closed.contains(&a) && !w.closed.contains(&g));
    let c = login(&mut w, "c", "cp");
    w.send(c, b"SUB news.* 1\r\nPING\r\n");
    w.take(c);
    w.send(a, b"PUB news.x 1\r\n!\r\n");
    assert_eq!(w.take(c), "MSG news.x 1 1\r\n!\r\n");
    snapshot!("account_reload", w.transcript);
}

fn clustered(id: &str) -> World {
    let mut cfg = config();
    cfg.server_id = Some(id.into());
    cfg.cluster = Some(ClusterConfig {
        name: Some("c1".into()),
        host: "127.0.0.1".into(),
        port: 6222,
        ..ClusterConfig::default()
    });
    let mut w = world(cfg);
    let now = w.now;
    w.node.start_routes(now, 6222);
    w.drain();
    w
}

#[test]
fn routes_carry_each_account_by_name() {
    let mut w = clustered("NSELF");
    let a = login(&mut w, "a", "ap");
    let b = login(&mut w, "b", "bp");
    w.send(a, b"SUB local.a 1\r\nSUB work q 2\r\n");
    w.send(b, b"SUB local.b 1\r\n");
    let r = w.route(None);
    w.send(
        r,
        b"CONNECT {\"name\":\"NPEER\",\"cluster\":\"c1\",\"headers\":true}\r\n",
    );
    w.send(
        r,
        b"INFO {\"server_id\":\"NPEER\",\"server_name\":\"peer\",\"port\":7000,\"headers\":true,\"cluster\":\"c1\"}\r\n",
    );
    let interest = w.take(r);
    // The stream import's interest is A's, announced like a client's; the
    // service import is not announced, as each server forwards its own requests.
    for line in [
        "RS+ A news.>\r\n",
        "RS+ A local.a\r\n",
        "RS+ A work q 1\r\n",
        "RS+ B local.b\r\n",
    ] {
        assert!(interest.contains(line), "{line:?} in {interest}");
    }
    assert!(!interest.contains("ask"), "{interest}");

    // Messages from the route reach the clients of the account they name.
    w.send(
        r,
        b"RMSG A local.a 2\r\nhi\r\nRMSG B local.a 2\r\nno\r\nRMSG $G local.a 2\r\nno\r\n",
    );
    assert_eq!(w.take(a), "MSG local.a 1 2\r\nhi\r\n");
    assert_eq!(w.take(b), "");
    // ... and a routed message of A's stream reaches B's importers here.
    w.send(b, b"SUB a.news.> 3\r\nPING\r\n");
    w.take(b);
    assert_eq!(w.take(r), "RS+ B a.news.>\r\n");
    w.send(r, b"RMSG A news.x 1\r\n!\r\n");
    assert_eq!(w.take(b), "MSG a.news.x 3 1\r\n!\r\n");

    // Local messages go to the route under their account's name.
    w.send(r, b"RS+ B remote.b\r\nRS+ A remote.a\r\n");
    w.send(b, b"PUB remote.b 1\r\nx\r\nPUB remote.a 1\r\ny\r\n");
    assert_eq!(w.take(r), "RMSG B remote.b 1\r\nx\r\n");
    // A request of B to the imported service goes to a responder of A across the
    // route, and the answer comes back through this server.
    w.send(r, b"RS+ A help\r\n");
    w.send(b, b"SUB _INBOX.b 4\r\nPUB ask _INBOX.b 1\r\n?\r\n");
    let forwarded = w.take(r);
    // The answers' space of A is announced with the first request that uses it.
    assert!(
        forwarded.starts_with("RS+ B _INBOX.b\r\nRS+ A _R_."),
        "{forwarded}"
    );
    let reply = forwarded
        .split_once("RMSG A help ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .unwrap_or_else(|| panic!("{forwarded}"))
        .to_string();
    assert!(reply.starts_with("_R_."), "{forwarded}");
    w.send(r, format!("RMSG A {reply} 2\r\nok\r\n").as_bytes());
    assert_eq!(w.take(b), "MSG _INBOX.b 4 2\r\nok\r\n");
    // A routed request of B is not forwarded a second time here.
    w.send(r, b"RMSG B ask _INBOX.z 1\r\n?\r\n");
    assert_eq!(w.take(r), "");
    snapshot!("account_routes", w.transcript);
}
