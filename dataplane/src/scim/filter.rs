//! SCIM filters (RFC 7644 section 3.4.2.2): a parser into [`Filter`] and an evaluator over
//! resources as JSON. Operators `eq ne co sw ew pr gt ge lt le`, `and`/`or`/`not`,
//! parentheses, attribute paths with schema URNs and sub-attributes, and complex value
//! filters (`emails[type eq "work" and value co "@x"]`). Any input gives a value or an
//! error, never a panic; nesting is bounded.

use serde_json::Value;

use super::path::{AttrPath, attr_path_end, parse_attr_path};

/// Deepest nesting of parentheses, brackets and `not` a filter may use.
const MAX_DEPTH: usize = 32;

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Contains (strings).
    Co,
    /// Starts with (strings).
    Sw,
    /// Ends with (strings).
    Ew,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// `path op value`.
    Compare(AttrPath, Op, Value),
    /// `path pr`.
    Present(AttrPath),
    /// `a and b`.
    And(Box<Filter>, Box<Filter>),
    /// `a or b`.
    Or(Box<Filter>, Box<Filter>),
    /// `not (a)`.
    Not(Box<Filter>),
    /// `path[filter]`: some element of the multi-valued `path` matches `filter`.
    ValuePath(AttrPath, Box<Filter>),
}

/// Why a filter does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter: {0}")]
pub struct FilterError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError(message.into()))
}

/// Parses a whole filter expression.
pub fn parse(text: &str) -> Result<Filter, FilterError> {
    let mut parser = Parser { text, pos: 0 };
    let filter = parser.or(0)?;
    parser.skip_ws();
    if parser.pos != text.len() {
        return err(format!("unexpected text at offset {}", parser.pos));
    }
    Ok(filter)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    // A keyword (case-insensitive) followed by a space, `(`, `[` or the end.
    fn keyword(&mut self, word: &str) -> bool {
        self.skip_ws();
        let rest = self.rest();
        let Some(head) = rest.get(..word.len()) else {
            return false;
        };
        let boundary = rest[word.len()..]
            .chars()
            .next()
            .is_none_or(|c| c.is_whitespace() || c == '(' || c == ')' || c == ']');
        if head.eq_ignore_ascii_case(word) && boundary {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn symbol(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn or(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.and(depth)?;
        while self.keyword("or") {
            let right = self.and(depth)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.unary(depth)?;
        while self.keyword("and") {
            let right = self.unary(depth)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if depth >= MAX_DEPTH {
            return err("the filter is nested too deeply");
        }
        if self.keyword("not") {
            if !self.symbol('(') {
                return err("`not` must be followed by `(`");
            }
            let inner = self.or(depth + 1)?;
            if !self.symbol(')') {
                return err("missing `)`");
            }
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.symbol('(') {
            let inner = self.or(depth + 1)?;
            if !self.symbol(')') {
                return err("missing `)`");
            }
            return Ok(inner);
        }
        self.attr_expression(depth)
    }

    fn attr_expression(&mut self, depth: usize) -> Result<Filter, FilterError> {
        self.skip_ws();
        let end = attr_path_end(self.rest());
        if end == 0 {
            return err(format!("expected an attribute at offset {}", self.pos));
        }
        let path = parse_attr_path(&self.rest()[..end]).map_err(|e| FilterError(e.0))?;
        self.pos += end;
        if self.rest().starts_with('[') {
            self.pos += 1;
            let inner = self.or(depth + 1)?;
            if !self.symbol(']') {
                return err("missing `]`");
            }
            if path.sub.is_some() {
                return err("a value filter applies to an attribute, not a sub-attribute");
            }
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        if self.keyword("pr") {
            return Ok(Filter::Present(path));
        }
        let op = self.operator()?;
        let value = self.comp_value()?;
        Ok(Filter::Compare(path, op, value))
    }

    fn operator(&mut self) -> Result<Op, FilterError> {
        let ops = [
            ("eq", Op::Eq),
            ("ne", Op::Ne),
            ("co", Op::Co),
            ("sw", Op::Sw),
            ("ew", Op::Ew),
            ("gt", Op::Gt),
            ("ge", Op::Ge),
            ("lt", Op::Lt),
            ("le", Op::Le),
        ];
        for (word, op) in ops {
            if self.keyword(word) {
                return Ok(op);
            }
        }
        err(format!("expected an operator at offset {}", self.pos))
    }

    fn comp_value(&mut self) -> Result<Value, FilterError> {
        self.skip_ws();
        let rest = self.rest();
        if rest.starts_with('"') {
            // A JSON string: find its closing quote, honouring escapes.
            let mut escaped = false;
            for (i, c) in rest.char_indices().skip(1) {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        let value = serde_json::from_str(&rest[..=i])
                            .map_err(|_| FilterError("invalid string literal".into()))?;
                        self.pos += i + 1;
                        return Ok(value);
                    }
                    _ => {}
                }
            }
            return err("unterminated string");
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || c == ')' || c == ']')
            .unwrap_or(rest.len());
        let word = &rest[..end];
        let value = match word {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            _ => match serde_json::from_str::<Value>(word) {
                Ok(number @ Value::Number(_)) => number,
                _ => return err(format!("invalid comparison value at offset {}", self.pos)),
            },
        };
        self.pos += end;
        Ok(value)
    }
}

/// Whether `resource` matches `filter`. `case_exact` says which attributes compare strings
/// exactly (all others compare case-insensitively, RFC 7643 `caseExact: false`).
pub fn matches(filter: &Filter, resource: &Value, case_exact: &dyn Fn(&AttrPath) -> bool) -> bool {
    match filter {
        Filter::And(a, b) => matches(a, resource, case_exact) && matches(b, resource, case_exact),
        Filter::Or(a, b) => matches(a, resource, case_exact) || matches(b, resource, case_exact),
        Filter::Not(inner) => !matches(inner, resource, case_exact),
        Filter::Present(path) => path.values(resource).iter().any(|v| present(v)),
        Filter::Compare(path, op, expected) => {
            let exact = case_exact(path);
            let values = path.values(resource);
            match op {
                // `ne` holds when no value equals (including when there is none).
                Op::Ne => !values.iter().any(|v| compare(v, Op::Eq, expected, exact)),
                Op::Eq if expected.is_null() => !values.iter().any(|v| present(v)),
                _ => values.iter().any(|v| compare(v, *op, expected, exact)),
            }
        }
        Filter::ValuePath(path, inner) => path.values(resource).iter().any(|element| {
            // Inside the brackets, paths name sub-attributes of the element.
            matches(inner, element, case_exact)
        }),
    }
}

/// Whether a value counts as present (`pr`): not null, not empty.
pub fn present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn compare(actual: &Value, op: Op, expected: &Value, exact: bool) -> bool {
    // A complex value compares by its `value` sub-attribute.
    let actual = match actual {
        Value::Object(object) => match object.get("value") {
            Some(value) => value,
            None => return false,
        },
        other => other,
    };
    match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            let (a, e) = if exact {
                (a.clone(), e.clone())
            } else {
                (a.to_lowercase(), e.to_lowercase())
            };
            match op {
                Op::Eq => a == e,
                Op::Ne => a != e,
                Op::Co => a.contains(&e),
                Op::Sw => a.starts_with(&e),
                Op::Ew => a.ends_with(&e),
                Op::Gt => a > e,
                Op::Ge => a >= e,
                Op::Lt => a < e,
                Op::Le => a <= e,
            }
        }
        (Value::Number(a), Value::Number(e)) => {
            let (Some(a), Some(e)) = (a.as_f64(), e.as_f64()) else {
                return false;
            };
            match op {
                Op::Eq => a == e,
                Op::Ne => a != e,
                Op::Gt => a > e,
                Op::Ge => a >= e,
                Op::Lt => a < e,
                Op::Le => a <= e,
                Op::Co | Op::Sw | Op::Ew => false,
            }
        }
        (Value::Bool(a), Value::Bool(e)) => match op {
            Op::Eq => a == e,
            Op::Ne => a != e,
            _ => false,
        },
        _ => false,
    }
}

/// The indexed predicate the whole filter implies, if it is `attribute eq "string"` alone
/// or one conjunct of an `and`: the candidate rows can then be narrowed in SQL.
pub fn pushdown<'f>(filter: &'f Filter, indexed: &[&str]) -> Option<(&'static str, &'f str)> {
    match filter {
        Filter::Compare(path, Op::Eq, Value::String(value)) if path.sub.is_none() => indexed
            .iter()
            .find(|name| name.eq_ignore_ascii_case(&path.name))
            .and_then(|name| {
                INDEXED
                    .iter()
                    .find(|known| known.eq_ignore_ascii_case(name))
            })
            .map(|name| (*name, value.as_str())),
        Filter::And(a, b) => pushdown(a, indexed).or_else(|| pushdown(b, indexed)),
        _ => None,
    }
}

/// Attributes a filter may push down to SQL.
const INDEXED: [&str; 4] = ["id", "userName", "externalId", "displayName"];

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
