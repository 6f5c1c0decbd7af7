//! The NATS configuration language (shared/spec/OPERATIONS.md §2.2): what each piece
//! of syntax reads as, and the errors, each with its file and line.

use std::collections::BTreeMap;

use stan_core::config::{parse, parse_str, ConfigError, Datetime, Included, Map, Value};

fn read(text: &str) -> Map {
    parse_str("test.conf", text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn value(text: &str) -> Value {
    let map = read(&format!("v: {text}\n"));
    map.get("v")
        .unwrap_or_else(|| panic!("{text:?}: no value"))
        .value
        .clone()
}

fn failure(text: &str) -> String {
    match parse_str("test.conf", text) {
        Ok(map) => panic!("{text:?} parsed as {map:?}"),
        Err(e) => e.to_string(),
    }
}

fn s(text: &str) -> Value {
    Value::String(text.to_string())
}

/// Parses `main.conf` with the given other files and environment.
fn parse_with(files: &[(&str, &str)], env: &[(&str, &str)]) -> Result<Map, ConfigError> {
    let files: BTreeMap<String, String> = files
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    let mut include = |from: &str, path: &str| -> Result<Included, String> {
        // Paths are relative to the including file's directory.
        let dir = from.rsplit_once('/').map_or("", |(d, _)| d);
        let name = if dir.is_empty() {
            path.to_string()
        } else {
            format!("{dir}/{path}")
        };
        match files.get(&name) {
            Some(text) => Ok(Included {
                name,
                text: text.clone(),
            }),
            None => Err(format!(
                "error opening config file: open {name}: no such file or directory"
            )),
        }
    };
    let lookup = |name: &str| env.get(name).cloned();
    parse("main.conf", &files["main.conf"], &mut include, &lookup)
}

#[test]
fn assignment_forms_and_separators() {
    let map = read("a: 1\nb = 2\nc 3\nd:4, e=5; f 6\n\"g h\": 7\n'i': 8\n");
    let got: Vec<(&str, &Value)> = map.iter().map(|e| (e.key.as_str(), &e.value)).collect();
    let want = [
        ("a", 1),
        ("b", 2),
        ("c", 3),
        ("d", 4),
        ("e", 5),
        ("f", 6),
        ("g h", 7),
        ("i", 8),
    ];
    assert_eq!(got.len(), want.len());
    for ((key, v), (wkey, wv)) in got.iter().zip(want) {
        assert_eq!((*key, *v), (wkey, &Value::Integer(wv)));
    }
}

#[test]
fn comments() {
    let map = read("# a comment\n// another\na: 1 # trailing\nb: 2 // trailing\nc: [1, # in array\n 2]\nd { # in map\n e: 3 // x\n}\n");
    assert_eq!(map.get("a").unwrap().value, Value::Integer(1));
    assert_eq!(map.get("b").unwrap().value, Value::Integer(2));
    assert_eq!(
        map.get("c").unwrap().value,
        Value::Array(vec![Value::Integer(1), Value::Integer(2)])
    );
    let Value::Map(d) = &map.get("d").unwrap().value else {
        panic!()
    };
    assert_eq!(d.get("e").unwrap().value, Value::Integer(3));
}

#[test]
fn lines_of_keys() {
    let map = read("\n\na: 1\n# c\nb {\n  c: 2\n\n  d: (\nx\n)\n  e: 3\n}\n");
    assert_eq!(map.get("a").unwrap().pos.line, 3);
    assert_eq!(map.get("b").unwrap().pos.line, 5);
    let Value::Map(b) = &map.get("b").unwrap().value else {
        panic!()
    };
    assert_eq!(b.get("c").unwrap().pos.line, 6);
    assert_eq!(b.get("d").unwrap().pos.line, 8);
    assert_eq!(b.get("e").unwrap().pos.line, 11);
    assert_eq!(&*b.get("e").unwrap().pos.file, "test.conf");
}

#[test]
fn maps_and_arrays_nest() {
    let map = read("m { a: { b: [1, [2, 3], {c: 4}] } }\nn: {\n  x: 1\n  y: 2,\n}\narr: [\n  1\n  2,\n  3\n]\nempty_map {}\nempty: []\n");
    let Value::Map(m) = &map.get("m").unwrap().value else {
        panic!()
    };
    let Value::Map(a) = &m.get("a").unwrap().value else {
        panic!()
    };
    let Value::Array(b) = &a.get("b").unwrap().value else {
        panic!()
    };
    assert_eq!(b[0], Value::Integer(1));
    assert_eq!(
        b[1],
        Value::Array(vec![Value::Integer(2), Value::Integer(3)])
    );
    let Value::Map(c) = &b[2] else { panic!() };
    assert_eq!(c.get("c").unwrap().value, Value::Integer(4));
    let Value::Map(n) = &map.get("n").unwrap().value else {
        panic!()
    };
    assert_eq!(n.len(), 2);
    assert_eq!(
        map.get("arr").unwrap().value,
        Value::Array(vec![
            Value::Integer(1),
            Value::Integer(2),
            Value::Integer(3)
        ])
    );
    assert_eq!(map.get("empty_map").unwrap().value, Value::Map(Map::new()));
    assert_eq!(map.get("empty").unwrap().value, Value::Array(vec![]));
    // A map value may also start on the next line inside a map.
    let map = read("m {\n  a:\n    1\n}\n");
    let Value::Map(m) = &map.get("m").unwrap().value else {
        panic!()
    };
    assert_eq!(m.get("a").unwrap().value, Value::Integer(1));
}

#[test]
fn whole_file_in_braces() {
    let map = read("{\n  \"a\": 1,\n  \"b\": \"x\"\n}\n");
    assert_eq!(map.get("a").unwrap().value, Value::Integer(1));
    assert_eq!(map.get("b").unwrap().value, s("x"));
}

#[test]
fn strings() {
    assert_eq!(value(r#""tab\there""#), s("tab\there"));
    assert_eq!(value(r#""a\nb\rc\"d\\e""#), s("a\nb\rc\"d\\e"));
    assert_eq!(value(r#""\x41\u00e9\U0001F600""#), s("Aé😀"));
    assert_eq!(
        value(r##""# not a comment, ; } ]""##),
        s("# not a comment, ; } ]")
    );
    assert_eq!(value(r"'raw \n $x'"), s(r"raw \n $x"));
    assert_eq!(value("unquoted"), s("unquoted"));
    assert_eq!(value("localhost:4222"), s("localhost:4222"));
    assert_eq!(value("nats://h:4222/x?y=1"), s("nats://h:4222/x?y=1"));
    assert_eq!(value("orders.>"), s("orders.>"));
    // Unquoted strings end at whitespace, `,`, `;`, `}` and `]`.
    let map = read("m {a: x}\nl: [x,y]\nb: z;c: w\n");
    let Value::Map(m) = &map.get("m").unwrap().value else {
        panic!()
    };
    assert_eq!(m.get("a").unwrap().value, s("x"));
    assert_eq!(
        map.get("l").unwrap().value,
        Value::Array(vec![s("x"), s("y")])
    );
    assert_eq!(map.get("b").unwrap().value, s("z"));
    assert_eq!(map.get("c").unwrap().value, s("w"));
    // Escapes apply in unquoted strings too, and then no boolean or variable is read.
    assert_eq!(value(r"a\tb"), s("a\tb"));
    assert_eq!(value(r"tru\x65"), s("true"));
}

#[test]
fn block_strings() {
    let map = read("text: (\nline one\n  (line two)\n)\nafter: 1\n");
    assert_eq!(
        map.get("text").unwrap().value,
        s("\nline one\n  (line two)\n")
    );
    assert_eq!(map.get("after").unwrap().value, Value::Integer(1));
    assert_eq!(map.get("after").unwrap().pos.line, 5);
}

#[test]
fn booleans() {
    for t in ["true", "TRUE", "yes", "Yes", "on", "ON"] {
        assert_eq!(value(t), Value::Bool(true), "{t}");
    }
    for f in ["false", "False", "no", "NO", "off", "Off"] {
        assert_eq!(value(f), Value::Bool(false), "{f}");
    }
    assert_eq!(value("\"true\""), s("true"));
    assert_eq!(value("truth"), s("truth"));
}

#[test]
fn integers_and_size_suffixes() {
    let cases: &[(&str, i64)] = &[
        ("0", 0),
        ("123", 123),
        ("-5", -5),
        ("1k", 1000),
        ("1K", 1000),
        ("1kb", 1024),
        ("1KB", 1024),
        ("1ki", 1024),
        ("1KiB", 1024),
        ("2m", 2_000_000),
        ("2mb", 2 << 20),
        ("2Mi", 2 << 20),
        ("2mib", 2 << 20),
        ("3g", 3_000_000_000),
        ("3gb", 3 << 30),
        ("3GI", 3 << 30),
        ("3gib", 3 << 30),
        ("1t", 1_000_000_000_000),
        ("1tb", 1 << 40),
        ("1ti", 1 << 40),
        ("1tib", 1 << 40),
        ("1p", 1_000_000_000_000_000),
        ("1pb", 1 << 50),
        ("1pi", 1 << 50),
        ("1pib", 1 << 50),
        ("1e", 1_000_000_000_000_000_000),
        ("1eb", 1 << 60),
        ("1ei", 1 << 60),
        ("1eib", 1 << 60),
        ("10GB", 10 << 30),
        ("256MB", 256 << 20),
        ("-2k", -2000),
        ("9223372036854775807", i64::MAX),
        ("-9223372036854775808", i64::MIN),
    ];
    for (text, want) in cases {
        assert_eq!(value(text), Value::Integer(*want), "{text}");
    }
}

#[test]
fn durations_lex_as_strings_unless_their_unit_is_a_size() {
    for text in ["24h", "10s", "1h30m", "500ms", "90s", "1ms", "2us", "72h"] {
        assert_eq!(value(text), s(text), "{text}");
    }
    // `m`, `g`, ... are size suffixes: these read as integers.
    assert_eq!(value("1m"), Value::Integer(1_000_000));
    assert_eq!(value("2g"), Value::Integer(2_000_000_000));
    assert_eq!(value("\"1m\""), s("1m"));
}

#[test]
fn floats_addresses_and_datetimes() {
    assert_eq!(value("1.5"), Value::Float(1.5));
    assert_eq!(value("-0.25"), Value::Float(-0.25));
    assert_eq!(value("127.0.0.1"), s("127.0.0.1"));
    assert_eq!(value("0.0.0.0:4222"), s("0.0.0.0:4222"));
    assert_eq!(
        value("2016-05-04T18:53:41Z"),
        Value::Datetime(Datetime {
            year: 2016,
            month: 5,
            day: 4,
            hour: 18,
            minute: 53,
            second: 41
        })
    );
    assert_eq!(
        value("2016-05-04T18:53:41Z").to_string(),
        "2016-05-04 18:53:41 +0000 UTC"
    );
    assert_eq!(
        value("2024-02-29T00:00:00Z").to_string(),
        "2024-02-29 00:00:00 +0000 UTC"
    );
}

#[test]
fn later_duplicates_overwrite_and_case_is_kept() {
    let map = read("a: 1\nA: 2\na: 3\n");
    assert_eq!(map.len(), 2);
    let keys: Vec<&str> = map.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["A", "a"]);
    assert_eq!(map.get_exact("a").unwrap().value, Value::Integer(3));
    assert_eq!(map.get_exact("a").unwrap().pos.line, 3);
    assert_eq!(map.get_exact("A").unwrap().value, Value::Integer(2));
    // Case-insensitive lookup finds the last one written.
    assert_eq!(map.get("a").unwrap().key, "a");
}

#[test]
fn variables() {
    let map = read("size: 10MB\nname: \"x\"\nm {\n  inner: 5\n  a: $size\n  b: $inner\n  c: [$name, $inner]\n}\nd: $size\n");
    let Value::Map(m) = &map.get("m").unwrap().value else {
        panic!()
    };
    assert_eq!(m.get("a").unwrap().value, Value::Integer(10 << 20));
    assert_eq!(m.get("b").unwrap().value, Value::Integer(5));
    assert_eq!(
        m.get("c").unwrap().value,
        Value::Array(vec![s("x"), Value::Integer(5)])
    );
    assert_eq!(map.get("d").unwrap().value, Value::Integer(10 << 20));
    assert!(map.get("size").unwrap().used_as_variable);
    assert!(!map.get("d").unwrap().used_as_variable);
    // Only keys already written count, and names are compared exactly.
    assert_eq!(
        failure("a: $b\nb: 1\n"),
        "test.conf:1: variable reference for 'b' on line 1 can not be found"
    );
    assert_eq!(
        failure("A: 1\nb: $a\n"),
        "test.conf:2: variable reference for 'a' on line 2 can not be found"
    );
    // A bcrypt hash is not a reference.
    assert_eq!(value("$2a$11$abc"), s("$2a$11$abc"));
}

#[test]
fn environment_variables_are_parsed_as_values() {
    let files = [(
        "main.conf",
        "limit: $LIMIT\nname: $NAME\nflag: $FLAG\nlocal: 1\nshadow: $local\n",
    )];
    let env = [
        ("LIMIT", "1KB"),
        ("NAME", "prod"),
        ("FLAG", "yes"),
        ("local", "99"),
    ];
    let map = parse_with(&files, &env).unwrap();
    assert_eq!(map.get("limit").unwrap().value, Value::Integer(1024));
    assert_eq!(map.get("name").unwrap().value, s("prod"));
    assert_eq!(map.get("flag").unwrap().value, Value::Bool(true));
    // Keys of the file come before the environment.
    assert_eq!(map.get("shadow").unwrap().value, Value::Integer(1));
    let e = parse_with(&[("main.conf", "\nx: $BAD\n")], &[("BAD", "a b")]).unwrap_err();
    assert_eq!(e.file, "main.conf");
    assert_eq!(e.line, 2);
    assert!(
        e.reason
            .starts_with("variable reference for 'BAD' on line 2 could not be parsed: "),
        "{e}"
    );
    // A variable that refers to itself is an error, not an endless loop.
    let e = parse_with(&[("main.conf", "x: $LOOP\n")], &[("LOOP", "$LOOP")]).unwrap_err();
    assert!(e.reason.contains("too deeply"), "{e}");
    let e = parse_with(&[("main.conf", "x: $UNSET\n")], &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "main.conf:1: variable reference for 'UNSET' on line 1 can not be found"
    );
}

#[test]
fn includes() {
    let files = [
        ("main.conf", "a: 1\ninclude inc/one.conf\nb: 2\nm {\n  include 'inc/two.conf'\n  y: 3\n}\ninclude \"inc/one.conf\"\n"),
        ("inc/one.conf", "a: 10\nc: 11\ninclude nested.conf\n"),
        ("inc/nested.conf", "n: 12\n"),
        ("inc/two.conf", "x: 20\ny: 21\n"),
    ];
    let map = parse_with(&files, &[]).unwrap();
    // Merged where the directive stands; later keys overwrite.
    assert_eq!(map.get("a").unwrap().value, Value::Integer(10));
    assert_eq!(&*map.get("a").unwrap().pos.file, "inc/one.conf");
    assert_eq!(map.get("a").unwrap().pos.line, 1);
    assert_eq!(map.get("c").unwrap().value, Value::Integer(11));
    assert_eq!(map.get("n").unwrap().value, Value::Integer(12));
    assert_eq!(&*map.get("n").unwrap().pos.file, "inc/nested.conf");
    let Value::Map(m) = &map.get("m").unwrap().value else {
        panic!()
    };
    assert_eq!(m.get("x").unwrap().value, Value::Integer(20));
    assert_eq!(m.get("y").unwrap().value, Value::Integer(3));
    // `include` followed by a separator is an ordinary key.
    let map = read("include: 5\n");
    assert_eq!(map.get("include").unwrap().value, Value::Integer(5));
}

#[test]
fn include_errors() {
    let e = parse_with(&[("main.conf", "a: 1\n\ninclude missing.conf\n")], &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "main.conf:3: error parsing include file 'missing.conf', error opening config file: open missing.conf: no such file or directory"
    );
    // Errors inside an included file name that file.
    let e = parse_with(
        &[
            ("main.conf", "include bad.conf\n"),
            ("bad.conf", "ok: 1\nx: [1,\n"),
        ],
        &[],
    )
    .unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("bad.conf", 3));
    // An included file does not see the includer's keys.
    let e = parse_with(
        &[
            ("main.conf", "v: 1\ninclude i.conf\n"),
            ("i.conf", "w: $v\n"),
        ],
        &[],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "i.conf:1: variable reference for 'v' on line 1 can not be found"
    );
    // A file including itself ends in an error.
    let e = parse_with(&[("main.conf", "include main.conf\n")], &[]).unwrap_err();
    assert!(e.reason.contains("nested too deeply"), "{e}");
    assert_eq!(
        failure("include [x]\n"),
        "test.conf:1: Expected include value but found start of an array"
    );
    assert!(failure("include x\n").contains("error parsing include file 'x', cannot include"));
}

/// Each include or `$name` may repeat the one before it several times: a few hundred
/// bytes would take exponential time or memory to read, so the whole expansion of a
/// file is bounded and reported as an error past the bound.
#[test]
fn exponential_expansion_is_an_error() {
    let start = std::time::Instant::now();
    // Variables of the file itself: 8^16 values.
    let mut text = String::from("a: [1, 1, 1, 1, 1, 1, 1, 1]\n");
    let mut prev = 'a';
    for c in 'b'..='q' {
        text.push_str(&format!(
            "{c}: [${prev}, ${prev}, ${prev}, ${prev}, ${prev}, ${prev}, ${prev}, ${prev}]\n"
        ));
        prev = c;
    }
    let e = parse_with(&[("main.conf", &text)], &[]).unwrap_err();
    assert!(
        e.reason
            .ends_with("includes and variables expand to more than 16777216 bytes"),
        "{e}"
    );
    // Files including the next one four times: 4^14 parses.
    let names: Vec<String> = (0..15).map(|i| format!("f{i}.conf")).collect();
    let mut files: Vec<(String, String)> = names
        .windows(2)
        .map(|w| (w[0].clone(), format!("include {}\n", w[1]).repeat(4)))
        .collect();
    files.push((names[14].clone(), "x: 1\n".into()));
    files.push(("main.conf".into(), "include f0.conf\n".into()));
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let e = parse_with(&files, &[]).unwrap_err();
    assert!(
        e.reason
            .ends_with("includes and variables expand to more than 16777216 bytes"),
        "{e}"
    );
    // Environment variables referring to the next one four times.
    let env: Vec<(String, String)> = (0..14)
        .map(|i| {
            (
                format!("E{i}"),
                format!("[$E{0}, $E{0}, $E{0}, $E{0}]", i + 1),
            )
        })
        .chain([("E14".to_string(), "x".to_string())])
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    let e = parse_with(&[("main.conf", "v: $E0\n")], &env).unwrap_err();
    assert!(
        e.reason
            .ends_with("includes and variables expand to more than 16777216 bytes"),
        "{e}"
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
    // A copy nests where it is written, under the same depth limit as written text.
    let deep = format!("a: {}{}\n", "[".repeat(40), "]".repeat(40));
    let e = parse_with(
        &[(
            "main.conf",
            &format!("{deep}b: {}$a{}\n", "[".repeat(30), "]".repeat(30)),
        )],
        &[],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "main.conf:2: maps and arrays are nested more than 64 deep"
    );
    assert!(parse_with(
        &[(
            "main.conf",
            &format!("{deep}b: {}$a{}\n", "[".repeat(20), "]".repeat(20))
        )],
        &[]
    )
    .is_ok());
}

#[test]
fn syntax_errors_name_file_and_line() {
    let cases: &[(&str, &str)] = &[
        ("a: 1\nb: 1.5s\n", "test.conf:2: Expected a top-level value to end with a new line, comment or EOF, but got 's' instead."),
        ("a: 1\nb:\n  2\n", "test.conf:2: Expected value but found new line"),
        ("a: 1\nlonely\n", "test.conf:2: config is invalid: key \"lonely\" has no value"),
        ("m {\n  a: 1\n", "test.conf:3: Unexpected EOF processing map."),
        ("m {\n  a: 1 x\n}\n", "test.conf:2: Expected a map value terminator ',' or a map terminator '}', but got 'x' instead."),
        ("m { a }\n", "test.conf:1: config is invalid: key \"a\" has no value"),
        ("l: [1, 2\n", "test.conf:2: Unexpected EOF processing array."),
        ("l: [1 2]\n", "test.conf:1: Expected an array value terminator ',' or an array terminator ']', but got '2' instead."),
        ("l: [,1]\n", "test.conf:1: Unexpected array value terminator ','."),
        ("\n\ns: \"open\n", "test.conf:4: Unexpected EOF processing quoted string."),
        ("s: 'open\n", "test.conf:2: Unexpected EOF processing quoted string."),
        ("s: \"bad \\q\"\n", "test.conf:1: Invalid escape character 'q'. Only the following escape characters are allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\, \\uXXXX, \\UXXXXXXXX."),
        ("s: \"\\xZZ\"\n", "test.conf:1: Expected 2 hexadecimal digits in escape sequence, but got 'Z'"),
        ("b: (\nnever closed )\n", "test.conf:3: Unexpected EOF processing block."),
        (": 1\n", "test.conf:1: Unexpected key separator ':'."),
        ("d: 2016-13-01T00:00:00Z\n", "test.conf:1: expected Zulu formatted DateTime, but got '2016-13-01T00:00:00Z'"),
        ("d: 2023-02-29T00:00:00Z\n", "test.conf:1: expected Zulu formatted DateTime, but got '2023-02-29T00:00:00Z'"),
        ("d: 2016-05-04 18:53:41\n", "test.conf:1: Expected 'T' in ISO8601 datetime, but found ' ' instead."),
        ("d: 12-05\n", "test.conf:1: All ISO8601 dates must be in full Zulu form."),
        ("f: .5\n", "test.conf:1: Floats must start with a digit"),
        ("f: 1.x\n", "test.conf:1: Floats must have a digit after the '.', but got 'x' instead."),
        ("n: -x\n", "test.conf:1: Expected a digit but got 'x'."),
        ("n: 9223372036854775808\n", "test.conf:1: integer '9223372036854775808' is out of the range"),
        ("n: 10eb\n", "test.conf:1: integer '10eb' is out of the range"),
        ("n: 9999999999999999999k\n", "test.conf:1: integer '9999999999999999999k' is out of the range"),
    ];
    for (text, want) in cases {
        assert_eq!(failure(text), *want, "{text:?}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let text = format!("a: {}\n", "[".repeat(100_000));
    assert!(failure(&text).contains("nested more than"));
    let text = format!("a: {}\n", "{b: ".repeat(10_000));
    assert!(failure(&text).contains("nested more than"));
}
