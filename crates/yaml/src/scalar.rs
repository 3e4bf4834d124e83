//! Scalars as go-yaml v2 resolves them, then as kubectl's round trip through JSON leaves them.

use serde_json::{Number, Value};
use yaml_rust2::parser::Tag;
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::YamlError;

/// The message for a `~`/`null` mapping key (kubectl refuses it too).
pub(crate) const NULL_KEY: &str = "a null mapping key cannot be represented in JSON";

/// go-yaml v2's tag prefix for `!!x`.
const YAML_TAG: &str = "tag:yaml.org,2002:";

/// A scalar as go-yaml v2 resolves it, before the JSON round trip.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    /// Above `i64::MAX`: Go keeps a `uint64`, JSON turns it into a float.
    Uint(u64),
    Float(f64),
    /// Looks like a YAML timestamp (stays its text).
    Timestamp(String),
    Str(String),
}

/// The `!!x` name of a tag, when it is one of the YAML types (`None` for local tags such as
/// `!foo` or `!`).
fn yaml_tag(tag: &Tag) -> Option<&str> {
    if tag.handle == YAML_TAG {
        return Some(tag.suffix.as_str());
    }
    if tag.handle.is_empty() || tag.handle == "!" {
        return tag.suffix.strip_prefix(YAML_TAG);
    }
    None
}

/// Resolves a scalar as go-yaml v2 does (tag first, then style, then the plain rules).
fn resolve_raw(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    mark: Marker,
) -> Result<Scalar, YamlError> {
    let Some(tag) = tag else {
        if style != TScalarStyle::Plain {
            return Ok(Scalar::Str(text));
        }
        return Ok(resolve_plain(text));
    };
    let Some(name) = yaml_tag(tag) else {
        // A local tag: go-yaml cannot resolve it and keeps the text.
        return Ok(Scalar::Str(text));
    };
    let bad = || YamlError::at(mark, format!("value does not fit its !!{name} tag"));
    match name {
        "str" => Ok(Scalar::Str(text)),
        "binary" => decode_base64(&text)
            .map(|bytes| Scalar::Str(String::from_utf8_lossy(&bytes).into_owned()))
            .ok_or_else(|| YamlError::at(mark, "!!binary value is not valid base64")),
        "null" | "bool" | "int" | "float" | "timestamp" => {
            let resolved = resolve_plain(text);
            match (name, resolved) {
                ("null", Scalar::Null) => Ok(Scalar::Null),
                ("bool", b @ Scalar::Bool(_)) => Ok(b),
                ("int", i @ (Scalar::Int(_) | Scalar::Uint(_))) => Ok(i),
                ("float", f @ Scalar::Float(_)) => Ok(f),
                // An integer tagged `!!float` becomes a float.
                ("float", Scalar::Int(i)) => Ok(Scalar::Float(i as f64)),
                ("timestamp", Scalar::Timestamp(t)) if is_go_timestamp(&t) => Ok(Scalar::Str(t)),
                _ => Err(bad()),
            }
        }
        // Other YAML tags (`!!map` on a scalar, …) are not resolvable: the text is kept.
        _ => Ok(Scalar::Str(text)),
    }
}

/// go-yaml v2's `resolve` for an untagged plain scalar.
pub(crate) fn resolve_plain(text: String) -> Scalar {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Scalar::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Scalar::Bool(false);
        }
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        _ => {}
    }
    match text.as_bytes().first() {
        // Go's ParseFloat on the text itself (underscores are not dropped here).
        Some(b'.') => match parse_float(&text) {
            Some(f) => Scalar::Float(f),
            None => Scalar::Str(text),
        },
        Some(b'+' | b'-' | b'0'..=b'9') => {
            if looks_like_timestamp(&text) {
                return Scalar::Timestamp(text);
            }
            let plain: String = text.chars().filter(|c| *c != '_').collect();
            if let Some(i) = go_parse_int(&plain) {
                return Scalar::Int(i);
            }
            if let Some(u) = go_parse_uint(&plain) {
                return Scalar::Uint(u);
            }
            match parse_float(&plain) {
                Some(f) => Scalar::Float(f),
                None => Scalar::Str(text),
            }
        }
        _ => Scalar::Str(text),
    }
}

/// go-yaml v2's quick timestamp check: four digits and a dash, then one of its layouts. The
/// layouts are not checked further: a timestamp and a string are the same text to kubectl.
fn looks_like_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

/// Whether Go's `time.Parse` reads `text` with one of go-yaml v2's timestamp layouts:
/// `2006-1-2`, `2006-1-2 15:4:5.999999999` or `2006-1-2T15:4:5.999999999Z07:00` (`T` or `t`).
fn is_go_timestamp(text: &str) -> bool {
    fn number(text: &str, min: usize, max: usize) -> Option<(u32, &str)> {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        if digits < min || digits > max {
            return None;
        }
        Some((text[..digits].parse().ok()?, &text[digits..]))
    }
    fn field(text: &str, sep: char, min: usize, high: u32) -> Option<(u32, &str)> {
        let (value, rest) = number(text.strip_prefix(sep)?, min, 2)?;
        (value <= high).then_some((value, rest))
    }
    let date = || -> Option<&str> {
        let (year, rest) = number(text, 4, 4)?;
        let (month, rest) = field(rest, '-', 1, 12)?;
        let (day, rest) = field(rest, '-', 1, 31)?;
        let leap =
            year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
        let days = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        (month >= 1 && day >= 1 && day <= days).then_some(rest)
    };
    let Some(rest) = date() else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let zoned = rest.starts_with(['T', 't']);
    if !zoned && !rest.starts_with(' ') {
        return false;
    }
    let time = || -> Option<&str> {
        let (_, rest) = number(&rest[1..], 1, 2).filter(|(h, _)| *h < 24)?;
        let (_, rest) = field(rest, ':', 1, 59)?;
        let (_, mut rest) = field(rest, ':', 1, 59)?;
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 9 {
                return None;
            }
            rest = &fraction[digits..];
        }
        Some(rest)
    };
    let Some(rest) = time() else {
        return false;
    };
    if !zoned {
        return rest.is_empty();
    }
    if rest == "Z" {
        return true;
    }
    let Some(offset) = rest.strip_prefix(['+', '-']) else {
        return false;
    };
    let b = offset.as_bytes();
    b.len() == 5
        && b[2] == b':'
        && [b[0], b[1], b[3], b[4]].iter().all(u8::is_ascii_digit)
        && offset[..2].parse::<u32>().is_ok_and(|h| h < 24)
        && offset[3..].parse::<u32>().is_ok_and(|m| m < 60)
}

/// A float in go-yaml's float syntax that Go reads as a finite number (`1e400` is a string).
fn parse_float(text: &str) -> Option<f64> {
    if !is_yaml_float(text) {
        return None;
    }
    text.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Go's `strconv.ParseInt(text, 0, 64)`: optional sign, then `0x`/`0o`/`0b` (any case), a
/// leading `0` (octal) or decimal digits.
fn go_parse_int(text: &str) -> Option<i64> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let magnitude = go_parse_magnitude(body)?;
    if negative {
        if magnitude <= i64::MAX as u64 + 1 {
            Some((magnitude as i64).wrapping_neg())
        } else {
            None
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Go's `strconv.ParseUint(text, 0, 64)` (no sign).
fn go_parse_uint(text: &str) -> Option<u64> {
    go_parse_magnitude(text)
}

fn go_parse_magnitude(body: &str) -> Option<u64> {
    let lower = body.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits) = match lower.as_deref() {
        Some("0x") => (16, &body[2..]),
        Some("0o") => (8, &body[2..]),
        Some("0b") => (2, &body[2..]),
        _ if body.len() > 1 && body.starts_with('0') => (8, &body[1..]),
        _ => (10, body),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_yaml_float(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if int_digits == 0 && i == frac_start {
            return false;
        }
    } else if int_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len()
}

/// Go's `base64.StdEncoding.DecodeString` (padding required; `\r` and `\n` ignored).
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let symbols: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b'\n' && *b != b'\r')
        .collect();
    if !symbols.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(symbols.len() / 4 * 3);
    for (n, chunk) in symbols.chunks(4).enumerate() {
        let last = n + 1 == symbols.len() / 4;
        let pad = chunk.iter().rev().take_while(|b| **b == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut word = 0u32;
        for &c in &chunk[..4 - pad] {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            };
            word = (word << 6) | u32::from(v);
        }
        word <<= 6 * pad as u32;
        let bytes = word.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

/// A resolved scalar as JSON, after kubectl's round trip through Go's `encoding/json` and back
/// into an unstructured object (integers that fit `i64` stay integers, everything else is a
/// float; a float Go prints without a fraction or exponent is read back as an integer).
/// `None` for infinities and NaN, which JSON cannot hold (kubectl refuses them too).
pub(crate) fn scalar_json(scalar: Scalar) -> Option<Value> {
    Some(match scalar {
        Scalar::Null => Value::Null,
        Scalar::Bool(b) => Value::Bool(b),
        Scalar::Int(i) => Value::from(i),
        Scalar::Uint(u) => json_float(u as f64)?,
        Scalar::Float(f) => json_float(f)?,
        Scalar::Timestamp(s) | Scalar::Str(s) => Value::String(s),
    })
}

fn json_float(f: f64) -> Option<Value> {
    // Go prints |f| < 1e21 in plain notation with the shortest digits that read back as f (as
    // Rust's `Display` does); such a text without a fraction is an integer to kubectl.
    if f.is_finite()
        && f.fract() == 0.0
        && f.abs() < 1e21
        && let Ok(i) = format!("{f}").parse::<i64>()
    {
        return Some(Value::from(i));
    }
    Number::from_f64(f).map(Value::Number)
}

pub(crate) fn resolve_scalar(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    mark: Marker,
) -> Result<Value, YamlError> {
    scalar_json(resolve_raw(text, style, tag, mark)?).ok_or_else(|| {
        YamlError::at(
            mark,
            "infinite or NaN numbers cannot be represented in JSON",
        )
    })
}

/// A mapping key as kubectl writes it in JSON: resolved like a value, then turned into text
/// (sigs.k8s.io/yaml's `convertToJSONableObject`).
pub(crate) fn resolve_key(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    mark: Marker,
) -> Result<String, YamlError> {
    Ok(match resolve_raw(text, style, tag, mark)? {
        Scalar::Str(s) | Scalar::Timestamp(s) => s,
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => go_float_key(f),
        Scalar::Null => return Err(YamlError::at(mark, NULL_KEY)),
        Scalar::Uint(_) => {
            return Err(YamlError::at(
                mark,
                "an integer mapping key above 9223372036854775807 cannot be represented in JSON",
            ));
        }
    })
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)` with go-yaml's names for infinities and NaN:
/// how sigs.k8s.io/yaml writes a float mapping key (`1.5`, `1e+06`, `1e-05`).
pub(crate) fn go_float_key(f: f64) -> String {
    if f.is_nan() {
        return ".nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.to_owned();
    }
    let narrow = f as f32;
    if narrow.is_infinite() {
        // Too wide for 32 bits: Go writes "+Inf", which sigs.k8s.io/yaml renames.
        return if narrow > 0.0 { ".inf" } else { "-.inf" }.to_owned();
    }
    // Shortest digits of the 32-bit value: "d.ddde±x" from Rust's LowerExp.
    let exp_form = format!("{:e}", narrow.abs());
    let (mantissa, exponent) = exp_form.split_once('e').unwrap_or((&exp_form, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if narrow.is_sign_negative() { "-" } else { "" };
    if narrow == 0.0 {
        return format!("{sign}0");
    }
    // %e when the exponent is below -4 or at least 6 (Go's rule for the shortest precision).
    if !(-4..6).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!(
            "{sign}{first}{dot}{rest}e{exp_sign}{:02}",
            exponent.unsigned_abs()
        );
    }
    let point = exponent + 1; // digits before the decimal point
    let text = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else {
        let point = point as usize;
        if digits.len() <= point {
            format!("{digits}{}", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    format!("{sign}{text}")
}
