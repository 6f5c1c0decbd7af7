//! The configuration parser and the option readers are total: whatever the text of a
//! file, an included file or an environment variable, they return `Ok` or `Err` and
//! never panic or recurse without bound.

use proptest::prelude::*;
use stan_core::config::{
    parse, parse_str, Included, Map, NatsFileOptions, StreamingFileOptions, Value,
};

/// Pieces that steer generated text into every corner of the grammar.
const PIECES: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    "=",
    ",",
    ";",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\"",
    "'",
    "(",
    "\n)\n",
    ")",
    "#",
    "//",
    "/",
    "\\",
    "\\x4",
    "\\u00e9",
    "\\U",
    "$",
    "$a",
    "$ENV",
    "$2a$",
    "include ",
    "include",
    "a",
    "key",
    "streaming",
    "store_limits",
    "channels",
    "max_age",
    "\"1m\"",
    "1m",
    "10s",
    "24h",
    "1.5",
    "1.",
    "-",
    "-1",
    "0",
    "9223372036854775807",
    "99999999999999999999",
    "1kb",
    "1kbb",
    "2016-",
    "2016-05-04T18:53:41Z",
    "12:30",
    "127.0.0.1:4222",
    ".",
    "yes",
    "off",
    "true",
    "é",
    "\u{0}",
    "authorization",
    "user",
    "listen",
    "http",
    "tls",
    "store",
    "memory",
    "file",
    "cluster",
    "orders.>",
    "*",
    ">",
    "a: 1\n",
    "m {\n",
    "}\n",
    "x = [1, 2]\n",
    "streaming {\n",
    "store_limits {\n",
    "channels {\n",
    "\"c.>\": { mm: 0 }\n",
    "max_age: \"1h\"\n",
    "include \"i.conf\"\n",
    "v: $a\n",
    "t: (\nblock\n)\n",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..60).prop_map(|p| p.concat())
}

/// Lines of `key: value`, mostly well formed, so that the option readers see many
/// keys of every type.
fn entries() -> impl Strategy<Value = String> {
    const KEYS: &[&str] = &[
        "id",
        "store",
        "hbi",
        "hbf",
        "sd",
        "port",
        "listen",
        "http",
        "debug",
        "ping_interval",
        "max_payload",
        "authorization",
        "user",
        "token",
        "timeout",
        "store_limits",
        "channels",
        "\"foo.*\"",
        "bar",
        "mc",
        "mm",
        "mb",
        "ma",
        "mi",
        "msu",
        "streaming",
        "include",
        "STREAMING",
        "Max_Age",
        "replace_durable",
        "tls",
        "file",
        "dir",
    ];
    const VALUES: &[&str] = &[
        "1",
        "0",
        "-1",
        "1m",
        "\"1m\"",
        "24h",
        "\"-5s\"",
        "yes",
        "x",
        "\"\"",
        "1.5",
        "[1, x]",
        "{}",
        "{ mm: 0 }",
        "{ a: { mb: 1KB } }",
        "127.0.0.1:4222",
        "\"[::1]:1\"",
        "$id",
        "2016-05-04T18:53:41Z",
        "memory",
        "file",
        "10GB",
        "99999999999999999999",
    ];
    let entry = (
        prop::sample::select(KEYS),
        prop::sample::select(&[": ", " = ", " "][..]),
        prop::sample::select(VALUES),
    )
        .prop_map(|(k, sep, v)| format!("{k}{sep}{v}\n"));
    let block = prop::collection::vec(entry.clone(), 0..4)
        .prop_map(|lines| lines.concat())
        .prop_flat_map(move |inner| {
            prop::sample::select(KEYS).prop_map(move |k| format!("{k} {{\n{inner}}}\n"))
        });
    prop::collection::vec(prop_oneof![3 => entry, 1 => block], 0..12).prop_map(|p| p.concat())
}

fn read_all(map: &Map) {
    let _ = StreamingFileOptions::from_map(map);
    let _ = NatsFileOptions::from_map(map);
    for entry in map {
        let _ = entry.value.to_string();
        if let Value::Map(inner) = &entry.value {
            read_all(inner);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        if let Ok(map) = parse_str("fuzz.conf", &text) {
            read_all(&map);
        }
    }

    #[test]
    fn grammar_soup_never_panics(
        text in soup(),
        included in soup(),
        env_value in soup(),
    ) {
        let mut include = |_: &str, path: &str| -> Result<Included, String> {
            if path.len().is_multiple_of(2) {
                Ok(Included { name: path.to_string(), text: included.clone() })
            } else {
                Err("no such file".to_string())
            }
        };
        let env = |name: &str| (!name.is_empty()).then(|| env_value.clone());
        if let Ok(map) = parse("fuzz.conf", &text, &mut include, &env) {
            read_all(&map);
        }
    }

    #[test]
    fn structured_entries_never_panic(text in entries(), included in entries()) {
        let mut include = |_: &str, path: &str| -> Result<Included, String> {
            Ok(Included { name: path.to_string(), text: included.clone() })
        };
        if let Ok(map) = parse("fuzz.conf", &text, &mut include, &|_| Some("7".to_string())) {
            read_all(&map);
        }
    }

    #[test]
    fn sizes_read_as_their_value(n in 0i64..1_000_000, unit in 0usize..7, binary: bool) {
        let letters = ["", "k", "m", "g", "t", "p", "e"];
        let suffix = if binary && unit > 0 { format!("{}b", letters[unit]) } else { letters[unit].to_string() };
        let base: i64 = if binary { 1024 } else { 1000 };
        let map = parse_str("size.conf", &format!("v: {n}{suffix}\n"));
        match base.checked_pow(unit as u32).and_then(|m| n.checked_mul(m)) {
            Some(want) => {
                let map = map.unwrap();
                prop_assert_eq!(&map.get("v").unwrap().value, &Value::Integer(want));
            }
            None => prop_assert!(map.is_err()),
        }
    }
}

#[test]
#[ignore = "prints how much generated text parses; run by hand when changing the strategies"]
fn soup_acceptance_rate() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let ok = (0..2000)
        .filter(|_| {
            let text = soup().new_tree(&mut runner).unwrap().current();
            parse_str("x.conf", &text).is_ok()
        })
        .count();
    println!("soup: {ok}/2000 parse");
    let (mut parsed, mut read) = (0, 0);
    for _ in 0..2000 {
        let text = entries().new_tree(&mut runner).unwrap().current();
        if let Ok(map) = parse_str("x.conf", &text) {
            parsed += 1;
            read += usize::from(StreamingFileOptions::from_map(&map).is_ok());
        }
    }
    println!("entries: {parsed}/2000 parse, {read} read as streaming options");
}
