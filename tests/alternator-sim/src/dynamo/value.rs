//! AttributeValues as they travel on the wire (`{"S": "x"}`, `{"N": "1.5"}`, ...), DynamoDB
//! numbers (decimal, 38 significant digits) and the scalar key values tables are indexed by.

use std::cmp::Ordering;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::error::{DynamoError, DynamoResult};

/// An item: attribute name → AttributeValue JSON.
pub type Item = Map<String, Value>;

/// The type tag and payload of an AttributeValue, if it is well formed enough to have one.
pub fn split(av: &Value) -> Option<(&str, &Value)> {
    let obj = av.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    obj.iter().next().map(|(k, v)| (k.as_str(), v))
}

pub fn number(n: &Number) -> Value {
    let mut m = Map::with_capacity(1);
    m.insert("N".into(), Value::String(n.to_string()));
    Value::Object(m)
}

/// Check an AttributeValue the way DynamoDB does on input.
pub fn validate(av: &Value) -> DynamoResult<()> {
    let Some((ty, v)) = split(av) else {
        return Err(DynamoError::validation(
            "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes",
        ));
    };
    let bad = || {
        DynamoError::validation(format!(
            "One or more parameter values were invalid: invalid {ty} AttributeValue"
        ))
    };
    match ty {
        "S" => v.as_str().map(|_| ()).ok_or_else(bad),
        "N" => Number::parse(v.as_str().ok_or_else(bad)?).map(|_| ()),
        "B" => decode_binary(v).map(|_| ()),
        "BOOL" => v.as_bool().map(|_| ()).ok_or_else(bad),
        "NULL" => match v.as_bool() {
            Some(true) => Ok(()),
            _ => Err(DynamoError::validation(
                "One or more parameter values were invalid: Null attribute value types must have the value of true",
            )),
        },
        "SS" | "NS" | "BS" => {
            let list = v.as_array().ok_or_else(bad)?;
            if list.is_empty() {
                return Err(DynamoError::validation(
                    "One or more parameter values were invalid: An string set  may not be empty",
                ));
            }
            let mut seen: Vec<KeyValue> = Vec::with_capacity(list.len());
            for e in list {
                let k = match ty {
                    "SS" => KeyValue::S(e.as_str().ok_or_else(bad)?.to_owned()),
                    "NS" => KeyValue::N(Number::parse(e.as_str().ok_or_else(bad)?)?),
                    _ => KeyValue::B(decode_binary(e)?),
                };
                if seen.contains(&k) {
                    return Err(DynamoError::validation(format!(
                        "One or more parameter values were invalid: Input collection {v} contains duplicates."
                    )));
                }
                seen.push(k);
            }
            Ok(())
        }
        "L" => {
            for e in v.as_array().ok_or_else(bad)? {
                validate(e)?;
            }
            Ok(())
        }
        "M" => {
            for e in v.as_object().ok_or_else(bad)?.values() {
                validate(e)?;
            }
            Ok(())
        }
        _ => Err(DynamoError::validation(format!(
            "Supplied AttributeValue has an unknown datatype: {ty}"
        ))),
    }
}

pub fn validate_item(item: &Item) -> DynamoResult<()> {
    for (name, v) in item {
        if name.is_empty() {
            return Err(DynamoError::validation(
                "One or more parameter values were invalid: An AttributeValue may not contain an empty attribute name",
            ));
        }
        validate(v)?;
    }
    Ok(())
}

pub fn decode_binary(v: &Value) -> DynamoResult<Vec<u8>> {
    let s = v
        .as_str()
        .ok_or_else(|| DynamoError::validation("Binary values must be base64 strings"))?;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| {
            DynamoError::new(
                super::error::ErrorKind::Serialization,
                "Base64 decoding failed",
            )
        })
}

/// A scalar value a table key can hold, ordered as DynamoDB orders sort keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyValue {
    S(String),
    N(Number),
    B(Vec<u8>),
}

impl KeyValue {
    pub fn from_av(av: &Value) -> Option<KeyValue> {
        let (ty, v) = split(av)?;
        match ty {
            "S" => Some(KeyValue::S(v.as_str()?.to_owned())),
            "N" => Number::parse(v.as_str()?).ok().map(KeyValue::N),
            "B" => decode_binary(v).ok().map(KeyValue::B),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            KeyValue::S(_) => "S",
            KeyValue::N(_) => "N",
            KeyValue::B(_) => "B",
        }
    }
}

/// A DynamoDB number: sign, significant digits (no leading or trailing zeros) and the decimal
/// exponent such that the value is `0.d1d2d3... × 10^exp`. Zero has no digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Number {
    negative: bool,
    digits: Vec<u8>,
    exp: i32,
}

impl Number {
    pub fn parse(text: &str) -> DynamoResult<Number> {
        let bad = || {
            DynamoError::validation(format!(
                "A value provided cannot be converted into a number: {text}"
            ))
        };
        let t = text.trim();
        let (negative, rest) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().map_err(|_| bad())?),
            None => (rest, 0),
        };
        let (int_part, frac_part) = match mantissa.find('.') {
            Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
            None => (mantissa, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad());
        }
        if !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let mut digits: Vec<u8> = int_part
            .bytes()
            .chain(frac_part.bytes())
            .map(|b| b - b'0')
            .collect();
        let mut exp = i32::try_from(int_part.len())
            .map_err(|_| bad())?
            .saturating_add(exponent);
        let lead = digits.iter().take_while(|d| **d == 0).count();
        digits.drain(..lead);
        exp = exp.saturating_sub(i32::try_from(lead).map_err(|_| bad())?);
        while digits.last() == Some(&0) {
            digits.pop();
        }
        let n = if digits.is_empty() {
            Number::zero()
        } else {
            Number {
                negative,
                digits,
                exp,
            }
        };
        n.check_range()?;
        Ok(n)
    }

    pub fn zero() -> Number {
        Number {
            negative: false,
            digits: Vec::new(),
            exp: 0,
        }
    }

    pub fn from_u64(v: u64) -> Number {
        // Infallible for integers; fall back to zero rather than panic.
        Number::parse(&v.to_string()).unwrap_or_else(|_| Number::zero())
    }

    fn check_range(&self) -> DynamoResult<()> {
        if self.digits.is_empty() {
            return Ok(());
        }
        if self.digits.len() > 38 {
            return Err(DynamoError::validation(
                "Attempting to store more than 38 significant digits in a Number",
            ));
        }
        if self.exp > 126 {
            return Err(DynamoError::validation(
                "Number overflow. Attempting to store a number with magnitude larger than supported range",
            ));
        }
        if self.exp < -129 {
            return Err(DynamoError::validation(
                "Number underflow. Attempting to store a number with magnitude smaller than supported range",
            ));
        }
        Ok(())
    }

    fn cmp_magnitude(&self, other: &Number) -> Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        self.exp
            .cmp(&other.exp)
            .then_with(|| self.digits.cmp(&other.digits))
    }

    /// Digits of |self| as an integer scaled so the last digit has weight 10^`low`.
    fn scaled_digits(&self, low: i32) -> Vec<u8> {
        let own_low = self.exp - self.digits.len() as i32;
        let mut d = self.digits.clone();
        d.extend(std::iter::repeat_n(0, (own_low - low).max(0) as usize));
        d
    }

    pub fn add(&self, other: &Number) -> DynamoResult<Number> {
        if self.digits.is_empty() {
            return Ok(other.clone());
        }
        if other.digits.is_empty() {
            return Ok(self.clone());
        }
        let low = (self.exp - self.digits.len() as i32).min(other.exp - other.digits.len() as i32);
        let a = self.scaled_digits(low);
        let b = other.scaled_digits(low);
        let (negative, digits) = if self.negative == other.negative {
            (self.negative, add_digits(&a, &b))
        } else {
            match self.cmp_magnitude(other) {
                Ordering::Equal => return Ok(Number::zero()),
                Ordering::Greater => (self.negative, sub_digits(&a, &b)),
                Ordering::Less => (other.negative, sub_digits(&b, &a)),
            }
        };
        // digits is an integer with weight 10^low on its last digit.
        let mut n = Number {
            negative,
            exp: low + digits.len() as i32,
            digits,
        };
        let lead = n.digits.iter().take_while(|d| **d == 0).count();
        n.digits.drain(..lead);
        n.exp -= lead as i32;
        while n.digits.last() == Some(&0) {
            n.digits.pop();
        }
        if n.digits.is_empty() {
            return Ok(Number::zero());
        }
        n.check_range()?;
        Ok(n)
    }

    pub fn negate(&self) -> Number {
        let mut n = self.clone();
        if !n.digits.is_empty() {
            n.negative = !n.negative;
        }
        n
    }
}

fn add_digits(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
    let (mut i, mut j, mut carry) = (a.len(), b.len(), 0u8);
    while i > 0 || j > 0 || carry > 0 {
        let x = if i > 0 {
            i -= 1;
            a[i]
        } else {
            0
        };
        let y = if j > 0 {
            j -= 1;
            b[j]
        } else {
            0
        };
        let s = x + y + carry;
        out.push(s % 10);
        carry = s / 10;
    }
    out.reverse();
    out
}

/// a - b for a ≥ b (as integers of equal scale).
fn sub_digits(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len());
    let (mut i, mut j, mut borrow) = (a.len(), b.len(), 0i8);
    while i > 0 {
        i -= 1;
        let y = if j > 0 {
            j -= 1;
            b[j] as i8
        } else {
            0
        };
        let mut d = a[i] as i8 - y - borrow;
        if d < 0 {
            d += 10;
            borrow = 1;
        } else {
            borrow = 0;
        }
        out.push(d as u8);
    }
    out.reverse();
    out
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        let sign = |n: &Number| {
            if n.digits.is_empty() {
                0
            } else if n.negative {
                -1
            } else {
                1
            }
        };
        match sign(self).cmp(&sign(other)) {
            Ordering::Equal => {}
            o => return o,
        }
        let m = self.cmp_magnitude(other);
        if self.negative {
            m.reverse()
        } else {
            m
        }
    }
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.digits.is_empty() {
            return f.write_str("0");
        }
        if self.negative {
            f.write_str("-")?;
        }
        let digits: String = self.digits.iter().map(|d| char::from(b'0' + d)).collect();
        let len = self.digits.len() as i32;
        if self.exp > 40 || self.exp < -20 {
            // Scientific notation for very large or small magnitudes.
            let (first, rest) = digits.split_at(1);
            f.write_str(first)?;
            if !rest.is_empty() {
                write!(f, ".{rest}")?;
            }
            return write!(f, "E{:+}", self.exp - 1);
        }
        if self.exp <= 0 {
            write!(f, "0.{}{}", "0".repeat((-self.exp) as usize), digits)
        } else if self.exp >= len {
            write!(f, "{}{}", digits, "0".repeat((self.exp - len) as usize))
        } else {
            let (int, frac) = digits.split_at(self.exp as usize);
            write!(f, "{int}.{frac}")
        }
    }
}

/// DynamoDB equality of two AttributeValues (numbers by value, sets regardless of order).
pub fn av_eq(a: &Value, b: &Value) -> bool {
    let (Some((ta, va)), Some((tb, vb))) = (split(a), split(b)) else {
        return false;
    };
    if ta != tb {
        return false;
    }
    match ta {
        "N" => match (va.as_str(), vb.as_str()) {
            (Some(x), Some(y)) => match (Number::parse(x), Number::parse(y)) {
                (Ok(x), Ok(y)) => x == y,
                _ => x == y,
            },
            _ => false,
        },
        "SS" | "NS" | "BS" => {
            let (Some(xa), Some(xb)) = (va.as_array(), vb.as_array()) else {
                return false;
            };
            let as_keys = |list: &Vec<Value>| -> Vec<KeyValue> {
                let scalar = match ta {
                    "SS" => "S",
                    "NS" => "N",
                    _ => "B",
                };
                let mut keys: Vec<KeyValue> = list
                    .iter()
                    .filter_map(|e| {
                        let mut m = Map::with_capacity(1);
                        m.insert(scalar.into(), e.clone());
                        KeyValue::from_av(&Value::Object(m))
                    })
                    .collect();
                keys.sort();
                keys
            };
            xa.len() == xb.len() && as_keys(xa) == as_keys(xb)
        }
        "L" => match (va.as_array(), vb.as_array()) {
            (Some(x), Some(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| av_eq(p, q)),
            _ => false,
        },
        "M" => match (va.as_object(), vb.as_object()) {
            (Some(x), Some(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| av_eq(v, w)))
            }
            _ => false,
        },
        _ => va == vb,
    }
}

/// Order two AttributeValues if DynamoDB can (same scalar type N, S or B).
pub fn av_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    let (ka, kb) = (KeyValue::from_av(a)?, KeyValue::from_av(b)?);
    if ka.type_name() != kb.type_name() {
        return None;
    }
    Some(ka.cmp(&kb))
}

/// Approximate stored size of an item in bytes (names plus values), for the 400 KB limit.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(value_size).sum::<usize>() + 3,
        Value::Object(o) => {
            o.iter()
                .map(|(k, v)| k.len() + value_size(v))
                .sum::<usize>()
                + 3
        }
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Number {
        Number::parse(s).unwrap_or_else(|e| panic!("{s}: {}", e.message))
    }

    #[test]
    fn numbers_normalise_and_order() {
        assert_eq!(n("1.0"), n("1"));
        assert_eq!(n("0100"), n("1e2"));
        assert_eq!(n("-0"), n("0"));
        assert!(n("-5") < n("-4.9"));
        assert!(n("0.01") < n("0.1"));
        assert!(n("10") > n("9.999"));
        assert_eq!(n("1.50").to_string(), "1.5");
        assert_eq!(n("1500").to_string(), "1500");
        assert_eq!(n("0.0015").to_string(), "0.0015");
        assert!(Number::parse("abc").is_err());
        assert!(Number::parse("1e200").is_err());
    }

    #[test]
    fn number_addition() {
        assert_eq!(
            n("1").add(&n("1")).map(|x| x.to_string()).ok(),
            Some("2".into())
        );
        assert_eq!(
            n("9.5").add(&n("0.5")).map(|x| x.to_string()).ok(),
            Some("10".into())
        );
        assert_eq!(
            n("5").add(&n("-7.25")).map(|x| x.to_string()).ok(),
            Some("-2.25".into())
        );
        assert_eq!(
            n("3").add(&n("-3")).map(|x| x.to_string()).ok(),
            Some("0".into())
        );
        assert_eq!(
            n("100000000000000000000")
                .add(&n("1"))
                .map(|x| x.to_string())
                .ok(),
            Some("100000000000000000001".into())
        );
    }

    #[test]
    fn equality_of_sets_ignores_order() {
        let a = serde_json::json!({"SS": ["a", "b"]});
        let b = serde_json::json!({"SS": ["b", "a"]});
        assert!(av_eq(&a, &b));
        assert!(av_eq(
            &serde_json::json!({"N": "1.0"}),
            &serde_json::json!({"N": "1"})
        ));
    }
}
