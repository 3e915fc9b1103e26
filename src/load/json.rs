//! Just enough JSON for the load's reports and `make bench`'s results file, with no dependency.

use std::fmt::{self, Write};

/// A JSON value. Objects keep their keys in the order written.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    List(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The value under `key`, if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(name, _)| name == key).map(|(_, value)| value),
            _ => None,
        }
    }

    pub fn number(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Json::Number(n) => Some(*n),
            _ => None,
        }
    }

    pub fn text(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Json::Text(text) => Some(text),
            _ => None,
        }
    }

    /// Reads one JSON value; anything after it but whitespace is an error.
    ///
    /// # Errors
    /// Where the text stops being JSON, by byte offset.
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut reader = Reader {
            bytes: text.as_bytes(),
            at: 0,
        };
        let value = reader.value()?;
        reader.skip_space();
        if reader.at != reader.bytes.len() {
            return Err(reader.error("text after the value"));
        }
        Ok(value)
    }
}

/// Compact JSON, one line: numbers that are whole print without a fraction.
impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::Number(n) if !n.is_finite() => f.write_str("null"),
            Json::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => write!(f, "{}", *n as i64),
            Json::Number(n) => write!(f, "{n}"),
            Json::Text(text) => {
                f.write_char('"')?;
                for c in text.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        '\n' => f.write_str("\\n")?,
                        c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
                        c => f.write_char(c)?,
                    }
                }
                f.write_char('"')
            }
            Json::List(items) => {
                f.write_char('[')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(']')
            }
            Json::Object(fields) => {
                f.write_char('{')?;
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{}:{value}", Json::Text(name.clone()))?;
                }
                f.write_char('}')
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn error(&self, what: &str) -> String {
        format!("not JSON at byte {}: {what}", self.at)
    }

    fn skip_space(&mut self) {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        let found = self.bytes[self.at..].starts_with(word.as_bytes());
        if found {
            self.at += word.len();
        }
        found
    }

    fn value(&mut self) -> Result<Json, String> {
        self.skip_space();
        match self.bytes.get(self.at) {
            Some(b'{') => self.object(),
            Some(b'[') => self.list(),
            Some(b'"') => self.text().map(Json::Text),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ if self.eat("true") => Ok(Json::Bool(true)),
            _ if self.eat("false") => Ok(Json::Bool(false)),
            _ if self.eat("null") => Ok(Json::Null),
            _ => Err(self.error("expected a value")),
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.at;
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| b.is_ascii_digit() || b"+-.eE".contains(b))
        {
            self.at += 1;
        }
        let digits = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or_default();
        digits.parse().map(Json::Number).map_err(|_| self.error("a bad number"))
    }

    fn text(&mut self) -> Result<String, String> {
        self.at += 1; // the opening quote
        let mut text = Vec::new();
        loop {
            let Some(&byte) = self.bytes.get(self.at) else {
                return Err(self.error("a string without its closing quote"));
            };
            self.at += 1;
            match byte {
                b'"' => return String::from_utf8(text).map_err(|_| self.error("a string that is not UTF-8")),
                b'\\' => {
                    let escaped = self.bytes.get(self.at).copied();
                    self.at += 1;
                    match escaped {
                        Some(b'n') => text.push(b'\n'),
                        Some(b't') => text.push(b'\t'),
                        Some(b'r') => text.push(b'\r'),
                        Some(b'u') => {
                            let hex = self
                                .bytes
                                .get(self.at..self.at + 4)
                                .ok_or_else(|| self.error("short \\u"))?;
                            let code = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.error("a bad \\u escape"))?;
                            self.at += 4;
                            text.extend_from_slice(code.encode_utf8(&mut [0; 4]).as_bytes());
                        }
                        Some(other) => text.push(other), // \" \\ \/
                        None => return Err(self.error("a string ending in a backslash")),
                    }
                }
                other => text.push(other),
            }
        }
    }

    /// The items between `open` and `close`, separated by commas, each read by `item`.
    fn items<T>(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Result<T, String>) -> Result<Vec<T>, String> {
        self.at += 1; // the opening bracket
        let mut items = Vec::new();
        self.skip_space();
        if self.bytes.get(self.at) == Some(&close) {
            self.at += 1;
            return Ok(items);
        }
        loop {
            items.push(item(self)?);
            self.skip_space();
            match self.bytes.get(self.at) {
                Some(b',') => self.at += 1,
                Some(&b) if b == close => {
                    self.at += 1;
                    return Ok(items);
                }
                _ => return Err(self.error("expected a comma or the closing bracket")),
            }
        }
    }

    fn list(&mut self) -> Result<Json, String> {
        self.items(b']', Self::value).map(Json::List)
    }

    fn object(&mut self) -> Result<Json, String> {
        let fields = self.items(b'}', |reader| {
            reader.skip_space();
            if reader.bytes.get(reader.at) != Some(&b'"') {
                return Err(reader.error("expected a key"));
            }
            let key = reader.text()?;
            reader.skip_space();
            if !reader.eat(":") {
                return Err(reader.error("expected a colon"));
            }
            Ok((key, reader.value()?))
        })?;
        Ok(Json::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_the_same() {
        let value = Json::Object(vec![
            ("load".into(), Json::Text("ping-pong \"64 B\"\n".into())),
            ("msgs_per_s".into(), Json::Number(123456.0)),
            ("p99_us".into(), Json::Number(41.25)),
            ("ok".into(), Json::Bool(false)),
            (
                "failures".into(),
                Json::List(vec![Json::Text("dropped".into()), Json::Null]),
            ),
            ("nested".into(), Json::Object(vec![])),
        ]);
        let text = value.to_string();
        assert_eq!(
            text,
            r#"{"load":"ping-pong \"64 B\"\n","msgs_per_s":123456,"p99_us":41.25,"ok":false,"failures":["dropped",null],"nested":{}}"#
        );
        assert_eq!(Json::parse(&text), Ok(value));
    }

    #[test]
    fn reads_spaces_escapes_and_exponents_and_refuses_junk() {
        let value = Json::parse(" { \"a\" : [ 1e3 , -2.5 ] , \"b\" : \"\\u00e9\\/\" } ").unwrap();
        assert_eq!(
            value.get("a"),
            Some(&Json::List(vec![Json::Number(1000.0), Json::Number(-2.5)]))
        );
        assert_eq!(value.text("b"), Some("é/"));
        assert!(Json::parse("{\"a\": 1} x").is_err());
        assert!(Json::parse("{\"a\" 1}").is_err());
        assert!(Json::parse("[1, 2").is_err());
    }
}
