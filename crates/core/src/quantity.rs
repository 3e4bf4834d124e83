//! Kubernetes resource quantities (`500m`, `1Gi`, `129e6`, `0.5`) compared by exact value.
//!
//! A quantity is parsed into an integer mantissa and a power of ten, with binary suffixes
//! multiplied out, so `1Gi` == `1024Mi`, `1000m` == `1` and `0.5` == `500m` hold exactly —
//! no floating point is involved.

use serde_json::Value;

/// Largest decimal exponent accepted; beyond this the text is compared as text.
const MAX_EXPONENT: i32 = 1000;

/// The exact value of a quantity: `mantissa × 10^exp10`, in canonical form (the mantissa is not
/// divisible by ten, and zero is `0 × 10^0`), so two quantities are equal exactly when their
/// values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quantity {
    mantissa: i128,
    exp10: i32,
}

// === impl Quantity ===

impl Quantity {
    /// Parses the Kubernetes quantity syntax: an optional sign, a decimal number, and an optional
    /// suffix — binary (`Ki` … `Ei`), decimal SI (`n`, `u`, `m`, `k`, `M`, `G`, `T`, `P`, `E`)
    /// or a decimal exponent (`e3`, `E-2`). `None` when the text is not a quantity or its value
    /// does not fit the exact representation.
    pub fn parse(text: &str) -> Option<Quantity> {
        let text = text.trim();
        let bytes = text.as_bytes();
        let negative = bytes.first() == Some(&b'-');
        let sign_len = usize::from(matches!(bytes.first(), Some(b'-' | b'+')));
        let mut pos = sign_len;
        let mut mantissa: i128 = 0;
        let mut exp10: i32 = 0;
        let mut digits = 0usize;
        let mut seen_point = false;
        while let Some(&b) = bytes.get(pos) {
            match b {
                b'0'..=b'9' => {
                    // Leading zeros never overflow; cap significant digits well inside i128.
                    if mantissa != 0 || b != b'0' {
                        digits += 1;
                    }
                    if digits > 30 {
                        return None;
                    }
                    mantissa = mantissa * 10 + i128::from(b - b'0');
                    if seen_point {
                        exp10 -= 1;
                    }
                }
                b'.' if !seen_point => seen_point = true,
                _ => break,
            }
            pos += 1;
        }
        let number_len = pos - sign_len;
        if number_len == 0 || (seen_point && number_len == 1) {
            return None;
        }
        let suffix = &text[pos..];
        let (binary_pow, decimal_exp) = match suffix {
            "" => (0, 0),
            "Ki" => (10, 0),
            "Mi" => (20, 0),
            "Gi" => (30, 0),
            "Ti" => (40, 0),
            "Pi" => (50, 0),
            "Ei" => (60, 0),
            "n" => (0, -9),
            "u" => (0, -6),
            "m" => (0, -3),
            "k" => (0, 3),
            "M" => (0, 6),
            "G" => (0, 9),
            "T" => (0, 12),
            "P" => (0, 15),
            "E" => (0, 18),
            other => {
                let rest = other.strip_prefix(['e', 'E'])?;
                let digits_part = rest.strip_prefix(['+', '-']).unwrap_or(rest);
                if digits_part.is_empty() || !digits_part.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let exp: i32 = rest.parse().ok()?;
                if exp.unsigned_abs() > MAX_EXPONENT.unsigned_abs() {
                    return None;
                }
                (0, exp)
            }
        };
        if binary_pow > 0 {
            mantissa = mantissa.checked_mul(1i128 << binary_pow)?;
        }
        exp10 += decimal_exp;
        if negative {
            mantissa = -mantissa;
        }
        Some(Self::canonical(mantissa, exp10))
    }

    /// Reads a quantity from JSON: a string in quantity syntax or a number (`cpu: 0.5`).
    pub fn from_json(value: &Value) -> Option<Quantity> {
        match value {
            Value::String(text) => Self::parse(text),
            Value::Number(n) => Self::parse(&n.to_string()),
            _ => None,
        }
    }

    fn canonical(mut mantissa: i128, mut exp10: i32) -> Self {
        if mantissa == 0 {
            return Self {
                mantissa: 0,
                exp10: 0,
            };
        }
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exp10 += 1;
        }
        Self { mantissa, exp10 }
    }
}

/// True when both values are quantities of the same value.
pub fn quantities_equal(a: &Value, b: &Value) -> bool {
    match (Quantity::from_json(a), Quantity::from_json(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    #[test]
    fn equal_values_compare_equal() {
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("0.5"), q("500m"));
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_eq!(q("129e6"), q("129M"));
        assert_eq!(q("1.5Gi"), q("1536Mi"));
        assert_eq!(q("0"), q("0m"));
        assert_eq!(q("100Mi"), q("104857600"));
        assert_eq!(q("1E3"), q("1k"));
        assert_eq!(q("+2"), q("2"));
    }

    #[test]
    fn different_values_differ() {
        assert_ne!(q("128974848"), q("129e6"));
        assert_ne!(q("1G"), q("1Gi"));
        assert_ne!(q("0.1"), q("0.10000001"));
        assert_ne!(q("-1"), q("1"));
    }

    #[test]
    fn json_numbers_are_quantities() {
        assert!(quantities_equal(&json!(1), &json!("1000m")));
        assert!(quantities_equal(&json!(0.25), &json!("250m")));
        assert!(!quantities_equal(&json!("abc"), &json!("abc")));
    }

    #[test]
    fn rejects_non_quantities() {
        for bad in [
            "", "m", "Gi", ".", "1x", "1e", "1e+", "abc", "1..2", "--1", "1e99999",
        ] {
            assert!(Quantity::parse(bad).is_none(), "{bad}");
        }
    }
}
