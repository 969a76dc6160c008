//! DynamoDB expressions: ConditionExpression / FilterExpression / KeyConditionExpression,
//! UpdateExpression and ProjectionExpression — parsing (with `#name` and `:value`
//! placeholders) and evaluation against an item.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::error::{DynamoError, DynamoResult};
use super::value::{self, av_cmp, av_eq, split, Item, KeyValue, Number};

/// One step of a document path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathElem {
    Name(String),
    Index(usize),
}

pub type Path = Vec<PathElem>;

/// The top-level attribute a path starts at.
pub fn path_root(path: &[PathElem]) -> &str {
    match path.first() {
        Some(PathElem::Name(n)) => n,
        _ => "",
    }
}

#[derive(Debug, Clone)]
pub enum Operand {
    Path(Path),
    Value(Value),
    Size(Path),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::Ne => ord != Ordering::Equal,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Le => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Ge => ord != Ordering::Less,
        }
    }

    fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            o => o,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Condition {
    Cmp(Operand, CmpOp, Operand),
    Between(Operand, Operand, Operand),
    In(Operand, Vec<Operand>),
    Exists(Path),
    NotExists(Path),
    Type(Path, Operand),
    BeginsWith(Operand, Operand),
    Contains(Operand, Operand),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
}

#[derive(Debug, Clone)]
pub enum UpdateValue {
    Path(Path),
    Value(Value),
    IfNotExists(Path, Box<UpdateValue>),
    ListAppend(Box<UpdateValue>, Box<UpdateValue>),
    Plus(Box<UpdateValue>, Box<UpdateValue>),
    Minus(Box<UpdateValue>, Box<UpdateValue>),
}

#[derive(Debug, Clone)]
pub enum UpdateAction {
    Set(Path, UpdateValue),
    Remove(Path),
    Add(Path, Value),
    Delete(Path, Value),
}

/// Placeholder maps of one request and which of their entries the expressions used, so unused
/// ones can be reported as DynamoDB does.
#[derive(Debug)]
pub struct ExprContext<'a> {
    names: Option<&'a Map<String, Value>>,
    values: Option<&'a Map<String, Value>>,
    used_names: BTreeSet<String>,
    used_values: BTreeSet<String>,
}

impl<'a> ExprContext<'a> {
    pub fn from_request(req: &'a Value) -> Self {
        ExprContext {
            names: req
                .get("ExpressionAttributeNames")
                .and_then(Value::as_object),
            values: req
                .get("ExpressionAttributeValues")
                .and_then(Value::as_object),
            used_names: BTreeSet::new(),
            used_values: BTreeSet::new(),
        }
    }

    /// After every expression of the request is parsed: reject unused placeholders.
    pub fn finish(&self) -> DynamoResult<()> {
        if let Some(names) = self.names {
            let unused: Vec<&str> = names
                .keys()
                .filter(|k| !self.used_names.contains(*k))
                .map(String::as_str)
                .collect();
            if !unused.is_empty() {
                return Err(DynamoError::validation(format!(
                    "Value provided in ExpressionAttributeNames unused in expressions: keys: {{{}}}",
                    unused.join(", ")
                )));
            }
        }
        if let Some(values) = self.values {
            let unused: Vec<&str> = values
                .keys()
                .filter(|k| !self.used_values.contains(*k))
                .map(String::as_str)
                .collect();
            if !unused.is_empty() {
                return Err(DynamoError::validation(format!(
                    "Value provided in ExpressionAttributeValues unused in expressions: keys: {{{}}}",
                    unused.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn name(&mut self, placeholder: &str) -> DynamoResult<String> {
        match self
            .names
            .and_then(|n| n.get(placeholder))
            .and_then(Value::as_str)
        {
            Some(n) => {
                self.used_names.insert(placeholder.to_owned());
                Ok(n.to_owned())
            }
            None => Err(DynamoError::validation(format!(
                "An expression attribute name used in the document path is not defined; attribute name: {placeholder}"
            ))),
        }
    }

    fn value(&mut self, placeholder: &str) -> DynamoResult<Value> {
        match self.values.and_then(|n| n.get(placeholder)) {
            Some(v) => {
                value::validate(v)?;
                self.used_values.insert(placeholder.to_owned());
                Ok(v.clone())
            }
            None => Err(DynamoError::validation(format!(
                "An expression attribute value used in expression is not defined; attribute value: {placeholder}"
            ))),
        }
    }

    pub fn parse_condition(&mut self, kind: &'static str, text: &str) -> DynamoResult<Condition> {
        let mut p = Parser::new(kind, text, self)?;
        let c = p.condition()?;
        p.expect_end()?;
        Ok(c)
    }

    pub fn parse_update(&mut self, text: &str) -> DynamoResult<Vec<UpdateAction>> {
        let mut p = Parser::new("UpdateExpression", text, self)?;
        let u = p.update()?;
        p.expect_end()?;
        Ok(u)
    }

    pub fn parse_projection(&mut self, text: &str) -> DynamoResult<Vec<Path>> {
        let mut p = Parser::new("ProjectionExpression", text, self)?;
        let mut paths = vec![p.path()?];
        while p.eat(&Tok::Comma) {
            paths.push(p.path()?);
        }
        p.expect_end()?;
        Ok(paths)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Name(String),
    Value(String),
    Int(usize),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
}

impl std::fmt::Display for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Ident(s) | Tok::Name(s) | Tok::Value(s) => f.write_str(s),
            Tok::Int(n) => write!(f, "{n}"),
            Tok::LParen => f.write_str("("),
            Tok::RParen => f.write_str(")"),
            Tok::LBracket => f.write_str("["),
            Tok::RBracket => f.write_str("]"),
            Tok::Comma => f.write_str(","),
            Tok::Dot => f.write_str("."),
            Tok::Eq => f.write_str("="),
            Tok::Ne => f.write_str("<>"),
            Tok::Lt => f.write_str("<"),
            Tok::Le => f.write_str("<="),
            Tok::Gt => f.write_str(">"),
            Tok::Ge => f.write_str(">="),
            Tok::Plus => f.write_str("+"),
            Tok::Minus => f.write_str("-"),
        }
    }
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn tokenize(kind: &str, text: &str) -> DynamoResult<Vec<Tok>> {
    let mut toks = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let syntax = |tok: String| {
        DynamoError::validation(format!(
            "Invalid {kind}: Syntax error; token: \"{tok}\", near: \"{text}\""
        ))
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let word_end = |start: usize| {
            let mut j = start;
            while j < chars.len() && is_word(chars[j]) {
                j += 1;
            }
            j
        };
        match c {
            '#' | ':' => {
                let j = word_end(i + 1);
                if j == i + 1 {
                    return Err(syntax(c.to_string()));
                }
                let s: String = chars[i..j].iter().collect();
                toks.push(if c == '#' {
                    Tok::Name(s)
                } else {
                    Tok::Value(s)
                });
                i = j;
            }
            '0'..='9' => {
                let mut j = i;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
                if j < chars.len() && is_word(chars[j]) {
                    let j2 = word_end(j);
                    return Err(syntax(chars[i..j2].iter().collect()));
                }
                let s: String = chars[i..j].iter().collect();
                toks.push(Tok::Int(s.parse().map_err(|_| syntax(s.clone()))?));
                i = j;
            }
            c if is_word(c) => {
                let j = word_end(i);
                toks.push(Tok::Ident(chars[i..j].iter().collect()));
                i = j;
            }
            '(' | ')' | '[' | ']' | ',' | '.' | '=' | '+' | '-' => {
                toks.push(match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '[' => Tok::LBracket,
                    ']' => Tok::RBracket,
                    ',' => Tok::Comma,
                    '.' => Tok::Dot,
                    '=' => Tok::Eq,
                    '+' => Tok::Plus,
                    _ => Tok::Minus,
                });
                i += 1;
            }
            '<' => {
                match chars.get(i + 1) {
                    Some('=') => {
                        toks.push(Tok::Le);
                        i += 2;
                    }
                    Some('>') => {
                        toks.push(Tok::Ne);
                        i += 2;
                    }
                    _ => {
                        toks.push(Tok::Lt);
                        i += 1;
                    }
                };
            }
            '>' => {
                if chars.get(i + 1) == Some(&'=') {
                    toks.push(Tok::Ge);
                    i += 2;
                } else {
                    toks.push(Tok::Gt);
                    i += 1;
                }
            }
            other => return Err(syntax(other.to_string())),
        }
    }
    Ok(toks)
}

struct Parser<'c, 'a> {
    kind: &'static str,
    text: String,
    toks: Vec<Tok>,
    pos: usize,
    ctx: &'c mut ExprContext<'a>,
}

impl<'c, 'a> Parser<'c, 'a> {
    fn new(kind: &'static str, text: &str, ctx: &'c mut ExprContext<'a>) -> DynamoResult<Self> {
        if text.trim().is_empty() {
            return Err(DynamoError::validation(format!(
                "Invalid {kind}: The expression can not be empty;"
            )));
        }
        Ok(Parser {
            kind,
            text: text.to_owned(),
            toks: tokenize(kind, text)?,
            pos: 0,
            ctx,
        })
    }

    fn syntax_error(&self) -> DynamoError {
        let tok = self
            .toks
            .get(self.pos)
            .map_or_else(|| "<EOF>".to_owned(), |t| t.to_string());
        DynamoError::validation(format!(
            "Invalid {}: Syntax error; token: \"{tok}\", near: \"{}\"",
            self.kind, self.text
        ))
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.pos + n)
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &Tok) -> DynamoResult<()> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(self.syntax_error())
        }
    }

    fn expect_end(&self) -> DynamoResult<()> {
        if self.pos == self.toks.len() {
            Ok(())
        } else {
            Err(self.syntax_error())
        }
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        if self.peek_keyword(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn path(&mut self) -> DynamoResult<Path> {
        let mut path = Vec::new();
        path.push(PathElem::Name(self.path_name()?));
        loop {
            if self.eat(&Tok::Dot) {
                path.push(PathElem::Name(self.path_name()?));
            } else if self.eat(&Tok::LBracket) {
                match self.peek().cloned() {
                    Some(Tok::Int(n)) => {
                        self.pos += 1;
                        path.push(PathElem::Index(n));
                    }
                    _ => return Err(self.syntax_error()),
                }
                self.expect(&Tok::RBracket)?;
            } else {
                return Ok(path);
            }
        }
    }

    fn path_name(&mut self) -> DynamoResult<String> {
        match self.peek().cloned() {
            Some(Tok::Ident(s)) => {
                self.pos += 1;
                Ok(s)
            }
            Some(Tok::Name(s)) => {
                self.pos += 1;
                self.ctx.name(&s)
            }
            _ => Err(self.syntax_error()),
        }
    }

    fn is_function_call(&self) -> Option<String> {
        match (self.peek(), self.peek_at(1)) {
            (Some(Tok::Ident(f)), Some(Tok::LParen)) => Some(f.clone()),
            _ => None,
        }
    }

    // ---- conditions ----

    fn condition(&mut self) -> DynamoResult<Condition> {
        let mut left = self.and_condition()?;
        while self.eat_keyword("OR") {
            let right = self.and_condition()?;
            left = Condition::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_condition(&mut self) -> DynamoResult<Condition> {
        let mut left = self.not_condition()?;
        while self.eat_keyword("AND") {
            let right = self.not_condition()?;
            left = Condition::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not_condition(&mut self) -> DynamoResult<Condition> {
        if self.eat_keyword("NOT") {
            return Ok(Condition::Not(Box::new(self.not_condition()?)));
        }
        self.primary_condition()
    }

    fn primary_condition(&mut self) -> DynamoResult<Condition> {
        if self.eat(&Tok::LParen) {
            let c = self.condition()?;
            self.expect(&Tok::RParen)?;
            return Ok(c);
        }
        if let Some(f) = self.is_function_call() {
            let lower = f.to_ascii_lowercase();
            if lower != "size" {
                self.pos += 2;
                let c = match lower.as_str() {
                    "attribute_exists" => Condition::Exists(self.path()?),
                    "attribute_not_exists" => Condition::NotExists(self.path()?),
                    "attribute_type" => {
                        let p = self.path()?;
                        self.expect(&Tok::Comma)?;
                        Condition::Type(p, self.operand()?)
                    }
                    "begins_with" => {
                        let a = self.operand()?;
                        self.expect(&Tok::Comma)?;
                        Condition::BeginsWith(a, self.operand()?)
                    }
                    "contains" => {
                        let a = self.operand()?;
                        self.expect(&Tok::Comma)?;
                        Condition::Contains(a, self.operand()?)
                    }
                    _ => {
                        return Err(DynamoError::validation(format!(
                            "Invalid {}: Invalid function name; function: {f}",
                            self.kind
                        )))
                    }
                };
                self.expect(&Tok::RParen)?;
                return Ok(c);
            }
        }
        let left = self.operand()?;
        let op = match self.peek() {
            Some(Tok::Eq) => CmpOp::Eq,
            Some(Tok::Ne) => CmpOp::Ne,
            Some(Tok::Lt) => CmpOp::Lt,
            Some(Tok::Le) => CmpOp::Le,
            Some(Tok::Gt) => CmpOp::Gt,
            Some(Tok::Ge) => CmpOp::Ge,
            _ => {
                if self.eat_keyword("BETWEEN") {
                    let lo = self.operand()?;
                    if !self.eat_keyword("AND") {
                        return Err(self.syntax_error());
                    }
                    let hi = self.operand()?;
                    return Ok(Condition::Between(left, lo, hi));
                }
                if self.eat_keyword("IN") {
                    self.expect(&Tok::LParen)?;
                    let mut list = vec![self.operand()?];
                    while self.eat(&Tok::Comma) {
                        list.push(self.operand()?);
                    }
                    self.expect(&Tok::RParen)?;
                    return Ok(Condition::In(left, list));
                }
                return Err(self.syntax_error());
            }
        };
        self.pos += 1;
        let right = self.operand()?;
        Ok(Condition::Cmp(left, op, right))
    }

    fn operand(&mut self) -> DynamoResult<Operand> {
        if let Some(f) = self.is_function_call() {
            if f.eq_ignore_ascii_case("size") {
                self.pos += 2;
                let p = self.path()?;
                self.expect(&Tok::RParen)?;
                return Ok(Operand::Size(p));
            }
            return Err(DynamoError::validation(format!(
                "Invalid {}: The function is not allowed to be used this way in an expression; function: {f}",
                self.kind
            )));
        }
        match self.peek().cloned() {
            Some(Tok::Value(v)) => {
                self.pos += 1;
                Ok(Operand::Value(self.ctx.value(&v)?))
            }
            Some(Tok::Ident(_)) | Some(Tok::Name(_)) => Ok(Operand::Path(self.path()?)),
            _ => Err(self.syntax_error()),
        }
    }

    // ---- updates ----

    fn update(&mut self) -> DynamoResult<Vec<UpdateAction>> {
        let mut actions = Vec::new();
        let mut seen: Vec<&'static str> = Vec::new();
        while self.pos < self.toks.len() {
            let clause = ["SET", "REMOVE", "ADD", "DELETE"]
                .into_iter()
                .find(|kw| self.peek_keyword(kw))
                .ok_or_else(|| self.syntax_error())?;
            if seen.contains(&clause) {
                return Err(DynamoError::validation(format!(
                    "Invalid UpdateExpression: The \"{clause}\" section can only be used once in an update expression;"
                )));
            }
            seen.push(clause);
            self.pos += 1;
            loop {
                match clause {
                    "SET" => {
                        let p = self.path()?;
                        self.expect(&Tok::Eq)?;
                        let v = self.set_value()?;
                        actions.push(UpdateAction::Set(p, v));
                    }
                    "REMOVE" => actions.push(UpdateAction::Remove(self.path()?)),
                    _ => {
                        let p = self.path()?;
                        let v = match self.peek().cloned() {
                            Some(Tok::Value(v)) => {
                                self.pos += 1;
                                self.ctx.value(&v)?
                            }
                            _ => return Err(self.syntax_error()),
                        };
                        actions.push(if clause == "ADD" {
                            UpdateAction::Add(p, v)
                        } else {
                            UpdateAction::Delete(p, v)
                        });
                    }
                }
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        check_overlaps(&actions)?;
        Ok(actions)
    }

    fn set_value(&mut self) -> DynamoResult<UpdateValue> {
        let left = self.set_operand()?;
        if self.eat(&Tok::Plus) {
            return Ok(UpdateValue::Plus(
                Box::new(left),
                Box::new(self.set_operand()?),
            ));
        }
        if self.eat(&Tok::Minus) {
            return Ok(UpdateValue::Minus(
                Box::new(left),
                Box::new(self.set_operand()?),
            ));
        }
        Ok(left)
    }

    fn set_operand(&mut self) -> DynamoResult<UpdateValue> {
        if let Some(f) = self.is_function_call() {
            let lower = f.to_ascii_lowercase();
            self.pos += 2;
            let v = match lower.as_str() {
                "if_not_exists" => {
                    let p = self.path()?;
                    self.expect(&Tok::Comma)?;
                    UpdateValue::IfNotExists(p, Box::new(self.set_operand()?))
                }
                "list_append" => {
                    let a = self.set_operand()?;
                    self.expect(&Tok::Comma)?;
                    UpdateValue::ListAppend(Box::new(a), Box::new(self.set_operand()?))
                }
                _ => {
                    return Err(DynamoError::validation(format!(
                        "Invalid UpdateExpression: Invalid function name; function: {f}"
                    )))
                }
            };
            self.expect(&Tok::RParen)?;
            return Ok(v);
        }
        match self.peek().cloned() {
            Some(Tok::Value(v)) => {
                self.pos += 1;
                Ok(UpdateValue::Value(self.ctx.value(&v)?))
            }
            Some(Tok::Ident(_)) | Some(Tok::Name(_)) => Ok(UpdateValue::Path(self.path()?)),
            _ => Err(self.syntax_error()),
        }
    }
}

fn action_path(a: &UpdateAction) -> &Path {
    match a {
        UpdateAction::Set(p, _)
        | UpdateAction::Remove(p)
        | UpdateAction::Add(p, _)
        | UpdateAction::Delete(p, _) => p,
    }
}

fn check_overlaps(actions: &[UpdateAction]) -> DynamoResult<()> {
    for (i, a) in actions.iter().enumerate() {
        for b in &actions[i + 1..] {
            let (pa, pb) = (action_path(a), action_path(b));
            let n = pa.len().min(pb.len());
            if pa[..n] == pb[..n] {
                return Err(DynamoError::validation(format!(
                    "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [{}], path two: [{}]",
                    path_text(pa),
                    path_text(pb)
                )));
            }
        }
    }
    Ok(())
}

fn path_text(p: &[PathElem]) -> String {
    p.iter()
        .map(|e| match e {
            PathElem::Name(n) => n.clone(),
            PathElem::Index(i) => format!("[{i}]"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// ---- evaluation ----

/// The value at a document path, if present.
pub fn get_path<'i>(item: &'i Item, path: &[PathElem]) -> Option<&'i Value> {
    let (first, rest) = path.split_first()?;
    let PathElem::Name(n) = first else {
        return None;
    };
    let mut cur = item.get(n)?;
    for e in rest {
        let (ty, v) = split(cur)?;
        cur = match (e, ty) {
            (PathElem::Name(n), "M") => v.as_object()?.get(n)?,
            (PathElem::Index(i), "L") => v.as_array()?.get(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn invalid_path() -> DynamoError {
    DynamoError::validation(
        "The document path provided in the update expression is invalid for update",
    )
}

/// The container (map entries or list) a path's last element lives in.
fn parent_mut<'i>(item: &'i mut Item, path: &[PathElem]) -> DynamoResult<Option<&'i mut Value>> {
    if path.len() < 2 {
        return Ok(None);
    }
    let PathElem::Name(n) = &path[0] else {
        return Err(invalid_path());
    };
    let mut cur = item.get_mut(n).ok_or_else(invalid_path)?;
    for e in &path[1..path.len() - 1] {
        let obj = cur.as_object_mut().ok_or_else(invalid_path)?;
        let (ty, v) = obj.iter_mut().next().ok_or_else(invalid_path)?;
        cur = match (e, ty.as_str()) {
            (PathElem::Name(n), "M") => v
                .as_object_mut()
                .ok_or_else(invalid_path)?
                .get_mut(n)
                .ok_or_else(invalid_path)?,
            (PathElem::Index(i), "L") => v
                .as_array_mut()
                .ok_or_else(invalid_path)?
                .get_mut(*i)
                .ok_or_else(invalid_path)?,
            _ => return Err(invalid_path()),
        };
    }
    Ok(Some(cur))
}

pub fn set_path(item: &mut Item, path: &[PathElem], value: Value) -> DynamoResult<()> {
    let Some(parent) = parent_mut(item, path)? else {
        let Some(PathElem::Name(n)) = path.first() else {
            return Err(invalid_path());
        };
        item.insert(n.clone(), value);
        return Ok(());
    };
    let obj = parent.as_object_mut().ok_or_else(invalid_path)?;
    let (ty, v) = obj.iter_mut().next().ok_or_else(invalid_path)?;
    match (path.last(), ty.as_str()) {
        (Some(PathElem::Name(n)), "M") => {
            v.as_object_mut()
                .ok_or_else(invalid_path)?
                .insert(n.clone(), value);
        }
        (Some(PathElem::Index(i)), "L") => {
            let list = v.as_array_mut().ok_or_else(invalid_path)?;
            if *i < list.len() {
                list[*i] = value;
            } else {
                list.push(value);
            }
        }
        _ => return Err(invalid_path()),
    }
    Ok(())
}

pub fn remove_path(item: &mut Item, path: &[PathElem]) -> DynamoResult<()> {
    let parent = match parent_mut(item, path) {
        Ok(Some(p)) => p,
        Ok(None) => {
            if let Some(PathElem::Name(n)) = path.first() {
                item.remove(n);
            }
            return Ok(());
        }
        // Removing below a missing parent is a no-op.
        Err(_) => return Ok(()),
    };
    let Some(obj) = parent.as_object_mut() else {
        return Ok(());
    };
    let Some((ty, v)) = obj.iter_mut().next() else {
        return Ok(());
    };
    match (path.last(), ty.as_str()) {
        (Some(PathElem::Name(n)), "M") => {
            if let Some(m) = v.as_object_mut() {
                m.remove(n);
            }
        }
        (Some(PathElem::Index(i)), "L") => {
            if let Some(list) = v.as_array_mut() {
                if *i < list.len() {
                    list.remove(*i);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn operand_value<'i>(op: &'i Operand, item: &'i Item) -> Option<Cow<'i, Value>> {
    match op {
        Operand::Path(p) => get_path(item, p).map(Cow::Borrowed),
        Operand::Value(v) => Some(Cow::Borrowed(v)),
        Operand::Size(p) => {
            let (ty, v) = split(get_path(item, p)?)?;
            let n = match ty {
                "S" => v.as_str()?.chars().count(),
                "B" => value::decode_binary(v).ok()?.len(),
                "SS" | "NS" | "BS" | "L" => v.as_array()?.len(),
                "M" => v.as_object()?.len(),
                _ => return None,
            };
            Some(Cow::Owned(value::number(&Number::from_u64(n as u64))))
        }
    }
}

impl Condition {
    pub fn eval(&self, item: &Item) -> bool {
        match self {
            Condition::Cmp(a, op, b) => {
                let (a, b) = (operand_value(a, item), operand_value(b, item));
                match op {
                    CmpOp::Eq => matches!((&a, &b), (Some(x), Some(y)) if av_eq(x, y)),
                    CmpOp::Ne => !matches!((&a, &b), (Some(x), Some(y)) if av_eq(x, y)),
                    _ => match (a, b) {
                        (Some(x), Some(y)) => av_cmp(&x, &y).is_some_and(|o| op.holds(o)),
                        _ => false,
                    },
                }
            }
            Condition::Between(x, lo, hi) => {
                match (
                    operand_value(x, item),
                    operand_value(lo, item),
                    operand_value(hi, item),
                ) {
                    (Some(x), Some(lo), Some(hi)) => {
                        av_cmp(&x, &lo).is_some_and(|o| o != Ordering::Less)
                            && av_cmp(&x, &hi).is_some_and(|o| o != Ordering::Greater)
                    }
                    _ => false,
                }
            }
            Condition::In(x, list) => match operand_value(x, item) {
                Some(x) => list
                    .iter()
                    .any(|o| operand_value(o, item).is_some_and(|v| av_eq(&x, &v))),
                None => false,
            },
            Condition::Exists(p) => get_path(item, p).is_some(),
            Condition::NotExists(p) => get_path(item, p).is_none(),
            Condition::Type(p, t) => {
                let want = operand_value(t, item);
                let want = want
                    .as_deref()
                    .and_then(split)
                    .and_then(|(_, v)| v.as_str().map(str::to_owned));
                match (get_path(item, p).and_then(split), want) {
                    (Some((ty, _)), Some(w)) => ty == w,
                    _ => false,
                }
            }
            Condition::BeginsWith(a, b) => {
                let (Some(a), Some(b)) = (operand_value(a, item), operand_value(b, item)) else {
                    return false;
                };
                match (split(&a), split(&b)) {
                    (Some(("S", x)), Some(("S", y))) => match (x.as_str(), y.as_str()) {
                        (Some(x), Some(y)) => x.starts_with(y),
                        _ => false,
                    },
                    (Some(("B", x)), Some(("B", y))) => {
                        match (value::decode_binary(x), value::decode_binary(y)) {
                            (Ok(x), Ok(y)) => x.starts_with(&y),
                            _ => false,
                        }
                    }
                    _ => false,
                }
            }
            Condition::Contains(a, b) => {
                let (Some(a), Some(b)) = (operand_value(a, item), operand_value(b, item)) else {
                    return false;
                };
                contains(&a, &b)
            }
            Condition::And(a, b) => a.eval(item) && b.eval(item),
            Condition::Or(a, b) => a.eval(item) || b.eval(item),
            Condition::Not(a) => !a.eval(item),
        }
    }
}

fn contains(haystack: &Value, needle: &Value) -> bool {
    let (Some((ta, va)), Some((tb, vb))) = (split(haystack), split(needle)) else {
        return false;
    };
    match (ta, tb) {
        ("S", "S") => match (va.as_str(), vb.as_str()) {
            (Some(x), Some(y)) => x.contains(y),
            _ => false,
        },
        ("SS", "S") | ("NS", "N") | ("BS", "B") => va.as_array().is_some_and(|list| {
            list.iter().any(|e| {
                let mut m = Map::with_capacity(1);
                m.insert(tb.to_owned(), e.clone());
                av_eq(&Value::Object(m), needle)
            })
        }),
        ("L", _) => va
            .as_array()
            .is_some_and(|list| list.iter().any(|e| av_eq(e, needle))),
        _ => false,
    }
}

fn wrong_type() -> DynamoError {
    DynamoError::validation("An operand in the update expression has an incorrect data type")
}

fn eval_update_value(v: &UpdateValue, item: &Item) -> DynamoResult<Value> {
    match v {
        UpdateValue::Path(p) => get_path(item, p).cloned().ok_or_else(|| {
            DynamoError::validation(
                "The provided expression refers to an attribute that does not exist in the item",
            )
        }),
        UpdateValue::Value(v) => Ok(v.clone()),
        UpdateValue::IfNotExists(p, d) => match get_path(item, p) {
            Some(v) => Ok(v.clone()),
            None => eval_update_value(d, item),
        },
        UpdateValue::ListAppend(a, b) => {
            let (a, b) = (eval_update_value(a, item)?, eval_update_value(b, item)?);
            match (split(&a), split(&b)) {
                (Some(("L", x)), Some(("L", y))) => {
                    let mut list = x.as_array().cloned().unwrap_or_default();
                    list.extend(y.as_array().cloned().unwrap_or_default());
                    let mut m = Map::with_capacity(1);
                    m.insert("L".into(), Value::Array(list));
                    Ok(Value::Object(m))
                }
                _ => Err(wrong_type()),
            }
        }
        UpdateValue::Plus(a, b) | UpdateValue::Minus(a, b) => {
            let (a, b) = (eval_update_value(a, item)?, eval_update_value(b, item)?);
            let num = |v: &Value| -> DynamoResult<Number> {
                match split(v) {
                    Some(("N", n)) => Number::parse(n.as_str().unwrap_or("")),
                    _ => Err(wrong_type()),
                }
            };
            let (x, y) = (num(&a)?, num(&b)?);
            let r = if matches!(v, UpdateValue::Plus(..)) {
                x.add(&y)?
            } else {
                x.add(&y.negate())?
            };
            Ok(value::number(&r))
        }
    }
}

/// Apply an UpdateExpression. Right-hand sides are evaluated against `old` (the item before
/// the update, or just its key when it did not exist), as DynamoDB does. Returns the top-level
/// attributes touched.
pub fn apply_update(
    actions: &[UpdateAction],
    old: &Item,
    new: &mut Item,
    key_names: &[&str],
) -> DynamoResult<Vec<String>> {
    let mut touched = Vec::with_capacity(actions.len());
    // Evaluate every SET first so `SET a = b, b = a` swaps.
    let mut set_values = Vec::new();
    for a in actions {
        if let UpdateAction::Set(_, v) = a {
            set_values.push(eval_update_value(v, old)?);
        }
    }
    let mut set_values = set_values.into_iter();
    for a in actions {
        let path = action_path(a);
        let root = path_root(path);
        if key_names.contains(&root) {
            return Err(DynamoError::validation(format!(
                "One or more parameter values were invalid: Cannot update attribute {root}. This attribute is part of the key"
            )));
        }
        touched.push(root.to_owned());
        match a {
            UpdateAction::Set(p, _) => {
                let v = set_values.next().ok_or_else(invalid_path)?;
                set_path(new, p, v)?;
            }
            UpdateAction::Remove(p) => remove_path(new, p)?,
            UpdateAction::Add(p, v) => {
                let current = get_path(new, p).cloned();
                let result = match (current.as_ref().and_then(split), split(v)) {
                    (None, Some(("N" | "SS" | "NS" | "BS", _))) => v.clone(),
                    (Some(("N", c)), Some(("N", d))) => {
                        let sum = Number::parse(c.as_str().unwrap_or(""))?
                            .add(&Number::parse(d.as_str().unwrap_or(""))?)?;
                        value::number(&sum)
                    }
                    (Some((tc, c)), Some((td, d)))
                        if tc == td && matches!(tc, "SS" | "NS" | "BS") =>
                    {
                        let mut list = c.as_array().cloned().unwrap_or_default();
                        for e in d.as_array().into_iter().flatten() {
                            if !set_contains(tc, &list, e) {
                                list.push(e.clone());
                            }
                        }
                        let mut m = Map::with_capacity(1);
                        m.insert(tc.to_owned(), Value::Array(list));
                        Value::Object(m)
                    }
                    _ => return Err(wrong_type()),
                };
                set_path(new, p, result)?;
            }
            UpdateAction::Delete(p, v) => {
                let current = get_path(new, p).cloned();
                match (current.as_ref().and_then(split), split(v)) {
                    (None, Some(("SS" | "NS" | "BS", _))) => {}
                    (Some((tc, c)), Some((td, d)))
                        if tc == td && matches!(tc, "SS" | "NS" | "BS") =>
                    {
                        let remove: Vec<Value> = d.as_array().cloned().unwrap_or_default();
                        let list: Vec<Value> = c
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|e| !set_contains(tc, &remove, e))
                            .collect();
                        if list.is_empty() {
                            remove_path(new, p)?;
                        } else {
                            let mut m = Map::with_capacity(1);
                            m.insert(tc.to_owned(), Value::Array(list));
                            set_path(new, p, Value::Object(m))?;
                        }
                    }
                    _ => return Err(wrong_type()),
                }
            }
        }
    }
    Ok(touched)
}

fn set_contains(set_type: &str, list: &[Value], e: &Value) -> bool {
    let scalar = &set_type[..1];
    let wrap = |v: &Value| {
        let mut m = Map::with_capacity(1);
        m.insert(scalar.to_owned(), v.clone());
        Value::Object(m)
    };
    let we = wrap(e);
    list.iter().any(|x| av_eq(&wrap(x), &we))
}

/// Keep only the projected paths of an item (nested paths keep their enclosing structure).
pub fn project(item: &Item, paths: &[Path]) -> Item {
    let mut out = Item::new();
    for p in paths {
        let Some(v) = get_path(item, p) else {
            continue;
        };
        if p.len() == 1 {
            if let PathElem::Name(n) = &p[0] {
                out.insert(n.clone(), v.clone());
            }
            continue;
        }
        insert_projected(&mut out, p, v.clone());
    }
    out
}

fn insert_projected(out: &mut Item, path: &[PathElem], v: Value) {
    let Some(PathElem::Name(root)) = path.first() else {
        return;
    };
    let mut cur = out
        .entry(root.clone())
        .or_insert_with(|| empty_container(&path[1]));
    for (i, e) in path[1..].iter().enumerate() {
        let last = i + 2 == path.len();
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        let Some((_, inner)) = obj.iter_mut().next() else {
            return;
        };
        let next = if last {
            v.clone()
        } else {
            empty_container(&path[i + 2])
        };
        cur = match (e, inner) {
            (PathElem::Name(n), Value::Object(m)) => m.entry(n.clone()).or_insert(next),
            (PathElem::Index(_), Value::Array(list)) => {
                list.push(next);
                match list.last_mut() {
                    Some(x) => x,
                    None => return,
                }
            }
            _ => return,
        };
    }
}

fn empty_container(next: &PathElem) -> Value {
    let mut m = Map::with_capacity(1);
    match next {
        PathElem::Name(_) => m.insert("M".into(), Value::Object(Map::new())),
        PathElem::Index(_) => m.insert("L".into(), Value::Array(Vec::new())),
    };
    Value::Object(m)
}

// ---- key conditions ----

/// A sort-key condition of a Query.
#[derive(Debug, Clone)]
pub enum RangeCondition {
    Cmp(CmpOp, KeyValue),
    Between(KeyValue, KeyValue),
    BeginsWith(Value),
}

impl RangeCondition {
    pub fn matches(&self, av: &Value) -> bool {
        match self {
            RangeCondition::Cmp(op, v) => KeyValue::from_av(av)
                .is_some_and(|k| k.type_name() == v.type_name() && op.holds(k.cmp(v))),
            RangeCondition::Between(lo, hi) => KeyValue::from_av(av)
                .is_some_and(|k| k.type_name() == lo.type_name() && k >= *lo && k <= *hi),
            RangeCondition::BeginsWith(prefix) => {
                Condition::BeginsWith(Operand::Value(av.clone()), Operand::Value(prefix.clone()))
                    .eval(&Item::new())
            }
        }
    }
}

/// A parsed KeyConditionExpression: the hash key value and an optional sort-key condition.
#[derive(Debug, Clone)]
pub struct KeyCondition {
    pub hash: Value,
    pub range: Option<RangeCondition>,
}

fn conjuncts(c: Condition, out: &mut Vec<Condition>) -> DynamoResult<()> {
    match c {
        Condition::And(a, b) => {
            conjuncts(*a, out)?;
            conjuncts(*b, out)
        }
        Condition::Or(..) => Err(DynamoError::validation(
            "Invalid operator used in KeyConditionExpression: OR",
        )),
        Condition::Not(..) => Err(DynamoError::validation(
            "Invalid operator used in KeyConditionExpression: NOT",
        )),
        other => {
            out.push(other);
            Ok(())
        }
    }
}

fn single_name(p: &Path) -> Option<&str> {
    match p.as_slice() {
        [PathElem::Name(n)] => Some(n),
        _ => None,
    }
}

fn key_value_of(v: &Value, want_type: &str, attr: &str) -> DynamoResult<KeyValue> {
    match KeyValue::from_av(v) {
        Some(k) if k.type_name() == want_type => Ok(k),
        _ => Err(DynamoError::validation(format!(
            "One or more parameter values were invalid: Condition parameter type does not match schema type for key {attr}"
        ))),
    }
}

/// Split a KeyConditionExpression into the hash-key equality and the sort-key condition.
pub fn analyze_key_condition(
    cond: Condition,
    hash: (&str, &str),
    range: Option<(&str, &str)>,
) -> DynamoResult<KeyCondition> {
    let mut parts = Vec::new();
    conjuncts(cond, &mut parts)?;
    if parts.len() > 2 {
        return Err(DynamoError::validation(
            "Conditions can be of length 1 or 2 only",
        ));
    }
    let unsupported = || DynamoError::validation("Query key condition not supported");
    let missed = |name: &str| {
        DynamoError::validation(format!("Query condition missed key schema element: {name}"))
    };
    let mut hash_value = None;
    let mut range_cond = None;
    for part in parts {
        // Which attribute the part constrains, in a normal form (`:v < a` becomes `a > :v`).
        let (path, part) = match part {
            Condition::Cmp(Operand::Path(p), op, v @ Operand::Value(_)) => {
                (p.clone(), Condition::Cmp(Operand::Path(p), op, v))
            }
            Condition::Cmp(v @ Operand::Value(_), op, Operand::Path(p)) => {
                (p.clone(), Condition::Cmp(Operand::Path(p), op.flipped(), v))
            }
            Condition::Between(Operand::Path(p), lo, hi) => {
                (p.clone(), Condition::Between(Operand::Path(p), lo, hi))
            }
            Condition::BeginsWith(Operand::Path(p), v) => {
                (p.clone(), Condition::BeginsWith(Operand::Path(p), v))
            }
            _ => return Err(unsupported()),
        };
        let name = single_name(&path).ok_or_else(unsupported)?;
        if name == hash.0 {
            let Condition::Cmp(_, CmpOp::Eq, Operand::Value(v)) = part else {
                return Err(unsupported());
            };
            if hash_value.is_some() {
                return Err(unsupported());
            }
            key_value_of(&v, hash.1, name)?;
            hash_value = Some(v);
            continue;
        }
        let Some((range_name, range_type)) = range.filter(|r| r.0 == name) else {
            return Err(missed(range.map_or(hash.0, |r| r.0)));
        };
        if range_cond.is_some() {
            return Err(unsupported());
        }
        range_cond = Some(match part {
            Condition::Cmp(_, CmpOp::Ne, _) => {
                return Err(DynamoError::validation(
                    "Unsupported operator in KeyConditionExpression: <>",
                ))
            }
            Condition::Cmp(_, op, Operand::Value(v)) => {
                RangeCondition::Cmp(op, key_value_of(&v, range_type, range_name)?)
            }
            Condition::Between(_, Operand::Value(lo), Operand::Value(hi)) => {
                let lo = key_value_of(&lo, range_type, range_name)?;
                let hi = key_value_of(&hi, range_type, range_name)?;
                if lo > hi {
                    return Err(DynamoError::validation(
                        "Invalid KeyConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound",
                    ));
                }
                RangeCondition::Between(lo, hi)
            }
            Condition::BeginsWith(_, Operand::Value(v)) => {
                if !matches!(split(&v), Some(("S" | "B", _))) {
                    return Err(DynamoError::validation(
                        "Invalid KeyConditionExpression: Incorrect operand type for operator or function; operator or function: begins_with",
                    ));
                }
                RangeCondition::BeginsWith(v)
            }
            _ => return Err(unsupported()),
        });
    }
    Ok(KeyCondition {
        hash: hash_value.ok_or_else(|| missed(hash.0))?,
        range: range_cond,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(v: Value) -> Item {
        v.as_object().cloned().unwrap_or_default()
    }

    fn cond(text: &str, req: &Value) -> DynamoResult<Condition> {
        ExprContext::from_request(req).parse_condition("ConditionExpression", text)
    }

    fn holds(text: &str, values: Value, it: &Item) -> bool {
        let req = json!({"ExpressionAttributeValues": values, "ExpressionAttributeNames": {"#s": "status"}});
        match cond(text, &req) {
            Ok(c) => c.eval(it),
            Err(e) => panic!("{text}: {}", e.message),
        }
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        let it = item(json!({"a": {"N": "1"}, "b": {"N": "2"}}));
        let v = json!({":1": {"N": "1"}, ":2": {"N": "2"}, ":3": {"N": "3"}});
        // OR binds looser than AND: true OR (false AND false).
        assert!(holds("a = :1 OR b = :3 AND a = :3", v.clone(), &it));
        assert!(!holds("(a = :1 OR b = :3) AND a = :3", v.clone(), &it));
        assert!(holds("NOT a = :2 AND b = :2", v.clone(), &it));
        assert!(holds("a IN (:3, :1)", v.clone(), &it));
        assert!(holds("b BETWEEN :1 AND :3", v.clone(), &it));
        assert!(holds("a < b AND NOT b <= a", v.clone(), &it));
        // Missing attributes: only <> holds.
        assert!(holds("missing <> :1", v.clone(), &it));
        assert!(!holds(
            "missing = :1 OR missing < :1 OR missing >= :1",
            v,
            &it
        ));
    }

    #[test]
    fn functions_and_nested_paths() {
        let it = item(json!({
            "status": {"S": "active"},
            "m": {"M": {"list": {"L": [{"S": "x"}, {"N": "7"}]}}},
            "tags": {"SS": ["red", "blue"]},
        }));
        let v = json!({":p": {"S": "act"}, ":red": {"S": "red"}, ":seven": {"N": "7"}, ":two": {"N": "2"}, ":t": {"S": "SS"}});
        assert!(holds("begins_with(#s, :p)", v.clone(), &it));
        assert!(holds(
            "contains(tags, :red) AND attribute_type(tags, :t)",
            v.clone(),
            &it
        ));
        assert!(holds(
            "m.list[1] = :seven AND size(m.list) = :two",
            v.clone(),
            &it
        ));
        assert!(holds(
            "attribute_exists(m.list[0]) AND attribute_not_exists(m.list[5])",
            v,
            &it
        ));
    }

    #[test]
    fn parse_errors_are_validation_errors() {
        let req = json!({"ExpressionAttributeValues": {":v": {"S": "x"}}});
        for bad in [
            "a =",
            "a = :missing",
            "#undefined = :v",
            "(a = :v",
            "a == :v",
            "nofunc(a)",
            "",
        ] {
            assert!(cond(bad, &req).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn updates_evaluate_against_the_old_item() {
        let old = item(json!({"a": {"N": "1"}, "b": {"N": "2"}, "l": {"L": [{"N": "0"}]}}));
        let req = json!({"ExpressionAttributeValues": {":x": {"L": [{"N": "9"}]}}});
        let mut ctx = ExprContext::from_request(&req);
        let actions = ctx
            .parse_update("SET a = b, b = a, l = list_append(:x, l)")
            .unwrap_or_else(|e| panic!("{}", e.message));
        let mut new = old.clone();
        let touched = apply_update(&actions, &old, &mut new, &["pk"])
            .unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(new["a"], json!({"N": "2"}));
        assert_eq!(new["b"], json!({"N": "1"}));
        assert_eq!(new["l"], json!({"L": [{"N": "9"}, {"N": "0"}]}));
        assert_eq!(touched, ["a", "b", "l"]);
        let mut ctx = ExprContext::from_request(&req);
        assert!(
            ctx.parse_update("SET a = :x, a = :x").is_err(),
            "overlapping paths"
        );
    }

    #[test]
    fn key_conditions_need_the_hash_key_by_equality() {
        let req = json!({"ExpressionAttributeValues": {":h": {"S": "h"}, ":n": {"N": "1"}, ":m": {"N": "5"}}});
        let analyze = |text: &str| {
            let c =
                ExprContext::from_request(&req).parse_condition("KeyConditionExpression", text)?;
            analyze_key_condition(c, ("pk", "S"), Some(("sk", "N")))
        };
        assert!(analyze("pk = :h").is_ok());
        assert!(analyze(":n < sk AND pk = :h").is_ok());
        assert!(analyze("pk = :h AND sk BETWEEN :n AND :m").is_ok());
        assert!(
            analyze("pk = :h AND sk BETWEEN :m AND :n").is_err(),
            "bounds reversed"
        );
        assert!(analyze("sk = :n").is_err(), "hash key missing");
        assert!(analyze("pk = :h OR sk = :n").is_err());
        assert!(analyze("pk = :h AND other = :n").is_err());
        assert!(analyze("pk = :n").is_err(), "type mismatch");
        let kc = analyze("pk = :h AND sk > :n").unwrap_or_else(|e| panic!("{}", e.message));
        assert!(kc
            .range
            .as_ref()
            .is_some_and(|r| r.matches(&json!({"N": "2"}))));
        assert!(kc
            .range
            .as_ref()
            .is_some_and(|r| !r.matches(&json!({"N": "1"}))));
    }
}
