//! `resource.Quantity`: parsing, comparison and the canonical form Kubernetes serialises
//! (`k8s.io/apimachinery/pkg/api/resource/quantity.go`). Values are held exactly as nano-units,
//! which is the finest precision Kubernetes keeps (smaller values are rounded up to `1n`).

use std::fmt;
use std::str::FromStr;

/// The suffix family a quantity was written in; it decides how the canonical form is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `Ki`, `Mi`, ... (powers of 1024).
    BinarySI,
    /// `m`, `k`, `M`, ... or no suffix (powers of 1000).
    DecimalSI,
    /// `1e3`, `2E-6`.
    DecimalExponent,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    FormatWrong,
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// A parsed quantity. Equality and ordering compare values, not spelling (`1k == 1000`).
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    pub fn format(&self) -> Format {
        self.format
    }

    /// The value in thousandths, rounded up (Kubernetes' `MilliValue`): `100m` → 100.
    pub fn as_millis(&self) -> i128 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// The value in whole units, rounded up (Kubernetes' `Value`): bytes for memory.
    pub fn as_bytes(&self) -> i128 {
        ceil_div(self.nanos, NANO)
    }

    pub fn as_nanos(&self) -> i128 {
        self.nanos
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) == 0 { q } else { q + 1 }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}
impl Eq for Quantity {}
impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// Multiplier of a suffix: (base, power) meaning base^power, with the format it implies.
fn suffix(s: &str) -> Result<(i128, i32, Format), QuantityError> {
    let dec = |p| Ok((10, p, Format::DecimalSI));
    let bin = |p| Ok((1024, p, Format::BinarySI));
    match s {
        "" => dec(0),
        "n" => dec(-9),
        "u" => dec(-6),
        "m" => dec(-3),
        "k" => dec(3),
        "M" => dec(6),
        "G" => dec(9),
        "T" => dec(12),
        "P" => dec(15),
        "E" => dec(18),
        "Ki" => bin(1),
        "Mi" => bin(2),
        "Gi" => bin(3),
        "Ti" => bin(4),
        "Pi" => bin(5),
        "Ei" => bin(6),
        _ => {
            let exp = s.strip_prefix(['e', 'E']).ok_or(QuantityError::Suffix)?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::Suffix);
            }
            let p: i32 = exp.parse().map_err(|_| QuantityError::Suffix)?;
            Ok((10, p, Format::DecimalExponent))
        }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(QuantityError::FormatWrong);
        }
        let (negative, rest) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let (num, suf) = rest.split_at(num_len);
        if num.is_empty()
            || num == "."
            || !suf
                .bytes()
                .all(|b| b"eEinumkKMGTP+-0123456789".contains(&b))
        {
            return Err(QuantityError::FormatWrong);
        }
        let (int_part, frac_part) = match num.split_once('.') {
            Some((i, f)) if !f.contains('.') => (i, f),
            Some(_) => return Err(QuantityError::Numeric),
            None => (num, ""),
        };
        let (base, power, format) = suffix(suf)?;
        // The value is digits × 10^-frac_len × base^power; compute it in nanos exactly,
        // rounding up anything finer than a nano.
        let digits: String = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        let mut mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| QuantityError::Numeric)?
        };
        let mut exp10: i32 = 9 - frac_part.len() as i32;
        if base == 10 {
            exp10 += power;
        } else {
            for _ in 0..power {
                mantissa = mantissa.checked_mul(1024).ok_or(QuantityError::Numeric)?;
            }
        }
        let nanos = if exp10 >= 0 {
            10i128
                .checked_pow(exp10 as u32)
                .and_then(|m| mantissa.checked_mul(m))
                .ok_or(QuantityError::Numeric)?
        } else {
            match 10i128.checked_pow((-exp10) as u32) {
                Some(d) => ceil_div(mantissa, d),
                None => i128::from(mantissa != 0),
            }
        };
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }
}

impl fmt::Display for Quantity {
    /// The canonical form: no fractional digits, the largest suffix that loses nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.unsigned_abs() as i128;
        // Small or fractional binary values print as DecimalSI, as Kubernetes does.
        if self.format == Format::BinarySI && abs >= 1024 * NANO && abs % NANO == 0 {
            let mut m = abs / NANO;
            let mut i = 0;
            while i < 6 && m % 1024 == 0 {
                m /= 1024;
                i += 1;
            }
            let suf = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][i];
            return write!(f, "{sign}{m}{suf}");
        }
        let (mut m, mut e) = (abs, -9i32);
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        while e.rem_euclid(3) != 0 {
            m *= 10;
            e -= 1;
        }
        if self.format == Format::DecimalExponent {
            return if e == 0 {
                write!(f, "{sign}{m}")
            } else {
                write!(f, "{sign}{m}e{e}")
            };
        }
        while e > 18 {
            m *= 1000;
            e -= 3;
        }
        let suf = match e {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        };
        write!(f, "{sign}{m}{suf}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        s.parse::<Quantity>().expect(s).to_string()
    }

    #[test]
    fn canonical_forms_match_kubernetes() {
        for (input, want) in [
            ("100m", "100m"),
            ("0.5", "500m"),
            ("1", "1"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("1000m", "1"),
            ("1Gi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("1024", "1024"),
            ("512Ki", "512Ki"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("2E", "2E"),
            ("0.1n", "1n"),
            ("-1.5", "-1500m"),
            ("0", "0"),
            ("0Mi", "0"),
            ("1000Ki", "1000Ki"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("129M", "129M"),
            ("123Mi", "123Mi"),
            ("+3", "3"),
        ] {
            assert_eq!(canon(input), want, "{input}");
        }
    }

    #[test]
    fn compares_values_and_converts_units() {
        let q = |s: &str| s.parse::<Quantity>().expect(s);
        assert!(q("100m") < q("1"));
        assert_eq!(q("1k"), q("1000"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("100m").as_millis(), 100);
        assert_eq!(q("1.5").as_millis(), 1500);
        assert_eq!(q("1Mi").as_bytes(), 1_048_576);
        assert_eq!(q("0.5").as_bytes(), 1);
        assert_eq!(q("1n").as_millis(), 1);
        assert!(q("-1").is_negative());
    }

    #[test]
    fn rejects_malformed_quantities_with_kubernetes_messages() {
        let err = |s: &str| s.parse::<Quantity>().expect_err(s).to_string();
        assert_eq!(
            err("abc"),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
        assert_eq!(err(""), err("abc"));
        assert_eq!(err("1Qi"), err("abc"));
        assert_eq!(err("1.2.3"), "unable to parse numeric part of quantity");
        assert_eq!(err("1ki"), "unable to parse quantity's suffix");
        assert_eq!(err("1e"), "unable to parse quantity's suffix");
    }
}
