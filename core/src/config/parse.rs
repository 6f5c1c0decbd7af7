//! The NATS configuration language (OPERATIONS §2.2), read into a [`Map`].
//!
//! The grammar follows the Go NATS server's lexer closely enough that every file it
//! accepts reads the same here, quirks included: a bare `1m` is the integer 1000000
//! (size suffix) while `10s` and `24h` are strings, `127.0.0.1:4222` is a string, and
//! backslash escapes apply in unquoted strings too. Where the Go lexer would lose a
//! value or loop forever (a key with no value inside a map, self-including files,
//! self-referring environment variables, unbounded nesting), this parser reports an
//! error instead, so that any input gives `Ok` or `Err` and never panics.

use std::sync::Arc;

use super::value::{Entry, Map, Pos, Value};
use super::ConfigError;

/// The text of a file named by an `include` directive, as the caller found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Included {
    /// The name errors and nested includes refer to, typically its path.
    pub name: String,
    pub text: String,
}

/// Finds an included file: called with the name of the including file and the path
/// as written after `include`; returns the file, or why it cannot be read.
pub type IncludeFn<'a> = dyn FnMut(&str, &str) -> Result<Included, String> + 'a;

/// Looks up an environment variable for `$name` references.
pub type EnvFn<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// Maps and arrays deeper than this are refused: the parser recurses on them.
const MAX_NESTING: usize = 64;
/// Includes and environment variables whose text is parsed, one inside another.
const MAX_DOCUMENTS: usize = 16;
/// Bytes of text read from includes and environment variables, plus the size of the
/// values `$name` references copy, for one whole parse. Each include or reference
/// may repeat the one before it several times, so without a bound a file of a few
/// hundred bytes could take exponential time or memory to read.
const MAX_EXPANSION: usize = 16 << 20;
/// What reading one more document costs against [`MAX_EXPANSION`] beyond its text.
const DOCUMENT_COST: usize = 1024;

/// Parses the configuration file `file` whose text is `text`. `include` supplies the
/// files named by `include` directives and `env` the environment variables that
/// `$name` falls back to.
pub fn parse(
    file: &str,
    text: &str,
    include: &mut IncludeFn<'_>,
    env: &EnvFn<'_>,
) -> Result<Map, ConfigError> {
    let mut host = Host {
        include,
        env,
        expanded: 0,
    };
    Parser::new(&mut host, Arc::from(file), text, 0).document()
}

/// Parses text that may not include files nor refer to the environment.
pub fn parse_str(file: &str, text: &str) -> Result<Map, ConfigError> {
    let mut no_include = |_: &str, path: &str| -> Result<Included, String> {
        Err(format!("cannot include {path:?} here"))
    };
    parse(file, text, &mut no_include, &|_| None)
}

struct Host<'h, 'a> {
    include: &'h mut IncludeFn<'a>,
    env: &'h EnvFn<'a>,
    /// Counted against [`MAX_EXPANSION`].
    expanded: usize,
}

impl Host<'_, '_> {
    /// Counts `n` more bytes of expansion; false once the total is too large.
    fn expand(&mut self, n: usize) -> bool {
        self.expanded = self.expanded.saturating_add(n);
        self.expanded <= MAX_EXPANSION
    }
}

/// What copying `value` costs against [`MAX_EXPANSION`] (a rough count of the bytes
/// it takes), and how deeply its maps and arrays nest.
fn footprint(value: &Value) -> (usize, usize) {
    const NODE: usize = 32;
    match value {
        Value::String(s) => (NODE + s.len(), 0),
        Value::Array(items) => items.iter().fold((NODE, 1), |(size, depth), v| {
            let (s, d) = footprint(v);
            (size.saturating_add(s), depth.max(d + 1))
        }),
        Value::Map(map) => map.iter().fold((NODE, 1), |(size, depth), e| {
            let (s, d) = footprint(&e.value);
            (size.saturating_add(s + e.key.len()), depth.max(d + 1))
        }),
        _ => (NODE, 0),
    }
}

/// Where the parser is inside a map: the top level of a document ends values at
/// newlines, `,`, `;` and `}`; a `{ }` block also needs its closing brace.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    Block,
}

pub(super) struct Parser<'p, 'h, 'a> {
    host: &'p mut Host<'h, 'a>,
    file: Arc<str>,
    pub(super) src: &'p str,
    pub(super) at: usize,
    line: u32,
    /// The maps being filled, outermost first: `$name` looks in them from the inside
    /// out.
    scopes: Vec<Map>,
    nesting: usize,
    /// How many documents (includes, environment variables) enclose this one.
    documents: usize,
}

pub(super) type PResult<T> = std::result::Result<T, ConfigError>;

pub(super) fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

pub(super) fn is_newline(c: char) -> bool {
    c == '\n' || c == '\r'
}

impl<'p, 'h, 'a> Parser<'p, 'h, 'a> {
    fn new(host: &'p mut Host<'h, 'a>, file: Arc<str>, src: &'p str, documents: usize) -> Self {
        Parser {
            host,
            file,
            src,
            at: 0,
            line: 1,
            scopes: Vec::new(),
            nesting: 0,
            documents,
        }
    }

    /// A parser for a document found inside this one; nesting keeps counting, so that
    /// includes cannot stack recursion deeper than one document could.
    fn nested<'q>(&'q mut self, file: &str, src: &'q str) -> Parser<'q, 'h, 'a> {
        let mut parser = Parser::new(&mut *self.host, Arc::from(file), src, self.documents + 1);
        parser.nesting = self.nesting;
        parser
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.src[self.at..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        let mut chars = self.src[self.at..].chars();
        chars.next();
        chars.next()
    }

    pub(super) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn error_at(&self, line: u32, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line,
            key: None,
            reason: reason.into(),
        }
    }

    pub(super) fn error(&self, reason: impl Into<String>) -> ConfigError {
        self.error_at(self.line, reason)
    }

    /// Characters in messages: a newline shows as `\n`, as the Go lexer shows it.
    pub(super) fn shown(c: Option<char>) -> String {
        match c {
            Some('\n') => "\\n".into(),
            Some(c) => c.to_string(),
            None => String::new(),
        }
    }

    pub(super) fn skip_while(&mut self, keep: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&keep) {
            self.bump();
        }
    }

    /// Consumes `#...` or `//...` up to the newline, if one starts here.
    fn skip_comment(&mut self) -> bool {
        let starts = match self.peek() {
            Some('#') => true,
            Some('/') => self.peek_second() == Some('/'),
            _ => false,
        };
        if starts {
            self.skip_while(|c| !is_newline(c));
        }
        starts
    }

    fn document(mut self) -> PResult<Map> {
        self.scopes.push(Map::new());
        loop {
            // A whole file wrapped in braces reads like JSON, which the Go server
            // accepts.
            self.skip_while(|c| c.is_whitespace() || c == '{' || c == '}');
            if self.skip_comment() {
                continue;
            }
            if self.peek().is_none() {
                break;
            }
            self.entry(Level::Top)?;
            self.top_value_end()?;
        }
        Ok(self.scopes.pop().unwrap_or_default())
    }

    fn top_value_end(&mut self) -> PResult<()> {
        loop {
            match self.peek() {
                Some(c) if is_space(c) => {
                    self.bump();
                }
                Some('#' | '/') if self.skip_comment() => {}
                None => return Ok(()),
                Some(c) if is_newline(c) || matches!(c, ',' | ';' | '}') => {
                    self.bump();
                    return Ok(());
                }
                c => {
                    return Err(self.error(format!(
                        "Expected a top-level value to end with a new line, comment or EOF, but got '{}' instead.",
                        Self::shown(c)
                    )))
                }
            }
        }
    }

    /// One `key value` (or `include path`) into the innermost scope.
    fn entry(&mut self, level: Level) -> PResult<()> {
        let line = self.line;
        let (key, quoted) = match self.peek() {
            Some(c @ (':' | '=')) => {
                return Err(self.error(format!("Unexpected key separator '{c}'.")))
            }
            Some(']') if level == Level::Block => {
                return Err(self.error("Unexpected array end ']' processing map."))
            }
            Some(q @ ('"' | '\'')) => {
                self.bump();
                let start = self.at;
                self.skip_while(|c| c != q);
                if self.peek().is_none() {
                    return Err(self.error("Unexpected EOF processing quoted key."));
                }
                let key = self.src[start..self.at].to_string();
                self.bump();
                (key, true)
            }
            _ => {
                let start = self.at;
                self.skip_while(|c| !(c.is_whitespace() || c == ':' || c == '='));
                (self.src[start..self.at].to_string(), false)
            }
        };
        // Only `include` followed by a space is the directive: `include: x` is a key.
        if !quoted
            && key.eq_ignore_ascii_case("include")
            && self.peek().is_some_and(char::is_whitespace)
        {
            return self.include(line);
        }
        self.skip_while(char::is_whitespace);
        let no_value = || format!("config is invalid: key {key:?} has no value");
        match self.peek() {
            None => return Err(self.error_at(line, no_value())),
            Some(':' | '=') => {
                self.bump();
                match level {
                    // At the top level the value must be on the key's line.
                    Level::Top => self.skip_while(is_space),
                    Level::Block => self.skip_while(char::is_whitespace),
                }
            }
            _ => {}
        }
        if level == Level::Block {
            match self.peek() {
                Some('}') | None => return Err(self.error_at(line, no_value())),
                Some(',') => return Err(self.error("Unexpected map value terminator ','.")),
                _ => {}
            }
        }
        let value = self.value()?;
        let pos = Pos {
            file: self.file.clone(),
            line,
        };
        self.scope().insert(Entry {
            key,
            value,
            pos,
            used_as_variable: false,
        });
        Ok(())
    }

    fn scope(&mut self) -> &mut Map {
        if self.scopes.is_empty() {
            self.scopes.push(Map::new());
        }
        let last = self.scopes.len() - 1;
        &mut self.scopes[last]
    }

    fn include(&mut self, line: u32) -> PResult<()> {
        self.skip_while(is_space);
        let path = match self.peek() {
            Some(q @ ('"' | '\'')) => {
                self.bump();
                let start = self.at;
                self.skip_while(|c| c != q);
                if self.peek().is_none() {
                    return Err(self.error("Unexpected EOF in quoted include"));
                }
                let path = self.src[start..self.at].to_string();
                self.bump();
                path
            }
            Some('[') => {
                return Err(self.error("Expected include value but found start of an array"))
            }
            Some('{') => return Err(self.error("Expected include value but found start of a map")),
            Some('(') => {
                return Err(self.error("Expected include value but found start of a block"))
            }
            Some(c) if c.is_ascii_digit() || c == '-' => {
                return Err(self.error("Expected include value but found start of a number"))
            }
            Some('\\') => {
                return Err(self.error("Expected include value but found escape sequence"))
            }
            Some(c) if is_newline(c) => {
                return Err(self.error("Expected include value but found new line"))
            }
            None => return Err(self.error("Expected include value but found end of file")),
            Some(_) => {
                let start = self.at;
                self.skip_while(|c| {
                    !(is_newline(c) || is_space(c) || matches!(c, ';' | '}' | '\''))
                });
                let path = self.src[start..self.at].to_string();
                if self.peek() == Some('\'') {
                    self.bump();
                }
                path
            }
        };
        if self.documents + 1 >= MAX_DOCUMENTS {
            return Err(self.error_at(
                line,
                format!("error parsing include file '{path}', includes are nested too deeply"),
            ));
        }
        let file = self.file.clone();
        let included = (self.host.include)(&file, &path).map_err(|reason| {
            self.error_at(
                line,
                format!("error parsing include file '{path}', {reason}"),
            )
        })?;
        if !self.host.expand(DOCUMENT_COST + included.text.len()) {
            return Err(self.error_at(
                line,
                format!(
                    "error parsing include file '{path}', includes and variables expand to more than {MAX_EXPANSION} bytes"
                ),
            ));
        }
        // An included file is a document of its own: it cannot see the includer's
        // keys as variables, and its keys land in the current map.
        let map = self.nested(&included.name, &included.text).document()?;
        let scope = self.scope();
        for entry in map.entries() {
            scope.insert(entry.clone());
        }
        Ok(())
    }

    fn value(&mut self) -> PResult<Value> {
        match self.peek() {
            // The Go lexer reads nothing at the end of the input as an empty string.
            None => Ok(Value::String(String::new())),
            Some(c) if is_newline(c) => Err(self.error("Expected value but found new line")),
            Some('[') => self.array(),
            Some('{') => self.map(),
            Some('\'') => {
                self.bump();
                let start = self.at;
                self.skip_while(|c| c != '\'');
                if self.peek().is_none() {
                    return Err(self.error("Unexpected EOF processing quoted string."));
                }
                let text = self.src[start..self.at].to_string();
                self.bump();
                Ok(Value::String(text))
            }
            Some('"') => {
                self.bump();
                self.double_quoted()
            }
            Some('(') => {
                self.bump();
                self.block()
            }
            Some('-') => {
                self.bump();
                self.negative_number()
            }
            Some(c) if c.is_ascii_digit() => self.number(),
            Some('.') => Err(self.error("Floats must start with a digit")),
            Some(_) => self.unquoted(self.at),
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(self.error(format!(
                "maps and arrays are nested more than {MAX_NESTING} deep"
            )));
        }
        Ok(())
    }

    fn array(&mut self) -> PResult<Value> {
        self.bump();
        self.enter()?;
        let mut items = Vec::new();
        'values: loop {
            self.skip_while(char::is_whitespace);
            if self.skip_comment() {
                continue;
            }
            match self.peek() {
                None => return Err(self.error("Unexpected EOF processing array.")),
                Some(',') => return Err(self.error("Unexpected array value terminator ','.")),
                Some(']') => {
                    self.bump();
                    break;
                }
                _ => items.push(self.value()?),
            }
            loop {
                match self.peek() {
                    Some(c) if is_space(c) => {
                        self.bump();
                    }
                    Some('#' | '/') if self.skip_comment() => {}
                    Some(c) if c == ',' || is_newline(c) => {
                        self.bump();
                        continue 'values;
                    }
                    Some(']') => {
                        self.bump();
                        break 'values;
                    }
                    c => {
                        return Err(self.error(format!(
                            "Expected an array value terminator ',' or an array terminator ']', but got '{}' instead.",
                            Self::shown(c)
                        )))
                    }
                }
            }
        }
        self.nesting -= 1;
        Ok(Value::Array(items))
    }

    fn map(&mut self) -> PResult<Value> {
        self.bump();
        self.enter()?;
        self.scopes.push(Map::new());
        'entries: loop {
            self.skip_while(char::is_whitespace);
            if self.skip_comment() {
                continue;
            }
            match self.peek() {
                None => return Err(self.error("Unexpected EOF processing map.")),
                Some('}') => {
                    self.bump();
                    break;
                }
                _ => self.entry(Level::Block)?,
            }
            loop {
                match self.peek() {
                    Some(c) if is_space(c) => {
                        self.bump();
                    }
                    Some('#' | '/') if self.skip_comment() => {}
                    Some(c) if matches!(c, ',' | ';') || is_newline(c) => {
                        self.bump();
                        continue 'entries;
                    }
                    Some('}') => {
                        self.bump();
                        break 'entries;
                    }
                    c => {
                        return Err(self.error(format!(
                            "Expected a map value terminator ',' or a map terminator '}}', but got '{}' instead.",
                            Self::shown(c)
                        )))
                    }
                }
            }
        }
        self.nesting -= 1;
        Ok(Value::Map(self.scopes.pop().unwrap_or_default()))
    }
    /// An unquoted string from `start`; what was read up to here has no escapes.
    pub(super) fn unquoted(&mut self, start: usize) -> PResult<Value> {
        let mut out = self.src.as_bytes()[start..self.at].to_vec();
        let mut escaped = false;
        loop {
            match self.peek() {
                None => break,
                Some(c) if is_newline(c) || is_space(c) || matches!(c, ';' | ',' | ']' | '}') => {
                    break
                }
                // The Go lexer ends an unquoted string at a single quote and drops it.
                Some('\'') => {
                    self.bump();
                    break;
                }
                Some('\\') => {
                    self.bump();
                    escaped = true;
                    self.escape(&mut out)?;
                }
                Some(c) => {
                    self.bump();
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        if escaped {
            return Ok(Value::String(text));
        }
        match text.to_lowercase().as_str() {
            "true" | "yes" | "on" => return Ok(Value::Bool(true)),
            "false" | "no" | "off" => return Ok(Value::Bool(false)),
            _ => {}
        }
        match text.strip_prefix('$') {
            Some(name) => self.variable(name),
            None => Ok(Value::String(text)),
        }
    }

    fn variable(&mut self, name: &str) -> PResult<Value> {
        // A bcrypt hash is written bare and starts like a reference.
        if name.starts_with("2a$") {
            return Ok(Value::String(format!("${name}")));
        }
        let line = self.line;
        let could_not_parse = |reason: &str| {
            format!("variable reference for '{name}' on line {line} could not be parsed: {reason}")
        };
        let too_large = || {
            could_not_parse(&format!(
                "includes and variables expand to more than {MAX_EXPANSION} bytes"
            ))
        };
        let found = self
            .scopes
            .iter()
            .rev()
            .find_map(|scope| scope.get_exact(name))
            .map(|entry| footprint(&entry.value));
        if let Some((size, depth)) = found {
            // The copy nests inside the maps and arrays being read.
            if self.nesting + depth > MAX_NESTING {
                return Err(self.error(format!(
                    "maps and arrays are nested more than {MAX_NESTING} deep"
                )));
            }
            if !self.host.expand(size) {
                return Err(self.error(too_large()));
            }
            for scope in self.scopes.iter_mut().rev() {
                if let Some(entry) = scope.get_exact_mut(name) {
                    entry.used_as_variable = true;
                    return Ok(entry.value.clone());
                }
            }
        }
        let Some(text) = (self.host.env)(name) else {
            return Err(self.error(format!(
                "variable reference for '{name}' on line {line} can not be found"
            )));
        };
        if self.documents + 1 >= MAX_DOCUMENTS {
            return Err(self.error(could_not_parse("variables refer to each other too deeply")));
        }
        if !self.host.expand(DOCUMENT_COST + text.len()) {
            return Err(self.error(too_large()));
        }
        // The variable's text is read as the value of a one-line document.
        const KEY: &str = "pk";
        let source = format!("{KEY}={text}");
        let parsed = self.nested("", &source).document();
        match parsed {
            Ok(map) => match map.get_exact(KEY) {
                // Its value may hold copies of other variables, each counted when
                // read: count the copy made here too.
                Some(entry) if !self.host.expand(footprint(&entry.value).0) => {
                    Err(self.error(too_large()))
                }
                Some(entry) => Ok(entry.value.clone()),
                None => Err(self.error(format!(
                    "variable reference for '{name}' on line {line} can not be found"
                ))),
            },
            Err(e) => Err(self.error(could_not_parse(&e.reason))),
        }
    }
}
