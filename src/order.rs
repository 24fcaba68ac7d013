//! BSON values as mongod compares them: equality keys for `_id`s, and the sort order.
//!
//! **Equality** ([`key`]). Replay orders the operations on one document, spreads different
//! documents over writer lanes, and coalesces a document's writes; all of that keys on the
//! document's `_id`. The key must follow mongod's equality, not the bytes: `NumberInt(1)`,
//! `NumberLong(1)`, `1.0` and `NumberDecimal("1")` are one `_id` (numbers compare by value), and
//! so are a string and a symbol with the same text. A source may delete `{_id: NumberInt(1)}` and
//! insert `{_id: 1.0}`; keyed by bytes, the two could run in either order. [`key`] gives the same
//! bytes for equal values and different bytes for different ones: numbers become a normalized
//! decimal (coefficient without trailing zeros, and exponent), which is exact for every integer
//! and double, and compares decimals as mongod does (a double is rounded to 34 significant
//! digits first). Documents and arrays are keyed element by element. Strings are keyed by their
//! bytes: a collection whose default collation makes `"a"` and `"A"` one `_id` has its writes
//! sent through a single ordered lane instead ([`crate::oplog`]).
//!
//! **Order** ([`compare`]). Verification streams both deployments in `_id` order and merges
//! them, so it must order `_id`s exactly as the servers' `_id` index does under the simple
//! collation: type brackets first (MinKey, null, numbers, strings, documents, arrays, binary,
//! ObjectId, booleans, dates, timestamps, regular expressions, …, MaxKey), then values.

use std::cmp::Ordering;

use mongodb::bson::raw::{RawBsonRef, RawDocumentBuf};

/// The key of an `_id` value under mongod's equality.
pub fn key(id: RawBsonRef<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    push(id, &mut out);
    out
}

/// The exact bytes of an `_id` value, type included: two forms of one `_id` differ here.
pub fn form(id: RawBsonRef<'_>) -> Vec<u8> {
    let mut d = RawDocumentBuf::new();
    d.append_ref("", id);
    d.into_bytes()
}

/// Whether two `_id` values have the same exact bytes, type included ([`form`]), without
/// building them.
pub fn same_form(a: RawBsonRef<'_>, b: RawBsonRef<'_>) -> bool {
    match (a, b) {
        // -0.0 and 0.0 are two forms; `==` on floats would call them one.
        (RawBsonRef::Double(x), RawBsonRef::Double(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

fn push(value: RawBsonRef<'_>, out: &mut Vec<u8>) {
    match value {
        RawBsonRef::String(s) | RawBsonRef::Symbol(s) => {
            out.push(b'S');
            sized(s.as_bytes(), out);
        }
        RawBsonRef::Document(d) => {
            out.push(b'{');
            for (name, v) in d.iter().flatten() {
                sized(name.as_bytes(), out);
                push(v, out);
            }
            out.push(b'}');
        }
        RawBsonRef::Array(a) => {
            out.push(b'[');
            for v in a.into_iter().flatten() {
                push(v, out);
            }
            out.push(b']');
        }
        other => match Number::of(other) {
            Some(n) => number(n, out),
            None => {
                out.push(b'=');
                sized(&form(other), out);
            }
        },
    }
}

fn sized(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A number's value, normalized so that equal values are equal here.
#[derive(Debug, PartialEq, Eq)]
enum Number {
    Zero,
    NaN,
    Infinity {
        negative: bool,
    },
    /// `±coefficient × 10^exponent`, the coefficient's digits without leading or trailing zeros.
    Finite {
        negative: bool,
        digits: String,
        exponent: i64,
    },
}

impl Number {
    fn integer(n: i128) -> Number {
        Number::finite(n < 0, n.unsigned_abs().to_string(), 0)
    }

    /// mongod compares a double with a decimal after rounding the double to 34 significant
    /// digits; between doubles and integers that rounding is exact enough (a double has at most
    /// 17 significant digits, an integer of 64 bits at most 20).
    fn double(f: f64) -> Number {
        if f.is_nan() {
            return Number::NaN;
        }
        if f.is_infinite() {
            return Number::Infinity { negative: f < 0.0 };
        }
        // `d.ddd…e<exp>` with 34 significant digits, correctly rounded.
        let text = format!("{:.33e}", f.abs());
        let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
        let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
        let exp: i64 = exp.parse().unwrap_or(0);
        Number::finite(f < 0.0, digits, exp - 33)
    }

    /// A decimal from its canonical text (`123`, `-0.001`, `1.5E+7`, `NaN`, `-Infinity`).
    fn decimal(text: &str) -> Number {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        match unsigned {
            "NaN" => return Number::NaN,
            "Infinity" => return Number::Infinity { negative },
            _ => {}
        }
        let (mantissa, exp) = unsigned.split_once(['E', 'e']).unwrap_or((unsigned, "0"));
        let exp: i64 = exp.trim_start_matches('+').parse().unwrap_or(0);
        let fraction = mantissa.split_once('.').map_or(0, |(_, f)| f.len() as i64);
        let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
        Number::finite(negative, digits, exp - fraction)
    }

    fn finite(negative: bool, digits: String, exponent: i64) -> Number {
        let digits = digits.trim_start_matches('0');
        let trimmed = digits.trim_end_matches('0');
        if trimmed.is_empty() {
            return Number::Zero;
        }
        Number::Finite {
            negative,
            exponent: exponent + (digits.len() - trimmed.len()) as i64,
            digits: trimmed.to_string(),
        }
    }
}

impl Number {
    fn of(value: RawBsonRef<'_>) -> Option<Number> {
        Some(match value {
            RawBsonRef::Int32(n) => Number::integer(i128::from(n)),
            RawBsonRef::Int64(n) => Number::integer(i128::from(n)),
            RawBsonRef::Double(f) => Number::double(f),
            RawBsonRef::Decimal128(d) => Number::decimal(&d.to_string()),
            _ => return None,
        })
    }

    /// NaN sorts below every number, then -Infinity, negative values, zero, positive values,
    /// Infinity: mongod's order.
    fn rank(&self) -> i8 {
        match self {
            Number::NaN => 0,
            Number::Infinity { negative: true } => 1,
            Number::Finite { negative: true, .. } => 2,
            Number::Zero => 3,
            Number::Finite {
                negative: false, ..
            } => 4,
            Number::Infinity { negative: false } => 5,
        }
    }
}

impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        let by_rank = self.rank().cmp(&other.rank());
        let (
            Number::Finite {
                negative,
                digits: a,
                exponent: ea,
            },
            Number::Finite {
                digits: b,
                exponent: eb,
                ..
            },
        ) = (self, other)
        else {
            return by_rank;
        };
        if by_rank != Ordering::Equal {
            return by_rank;
        }
        // Same sign: compare magnitudes, `0.digits × 10^(len + exponent)`.
        let magnitude = (a.len() as i64 + ea)
            .cmp(&(b.len() as i64 + eb))
            .then_with(|| a.as_bytes().cmp(b.as_bytes()));
        if *negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// mongod's canonical type order: values of different brackets compare by bracket alone.
fn bracket(value: RawBsonRef<'_>) -> u8 {
    match value {
        RawBsonRef::MinKey => 0,
        RawBsonRef::Undefined => 1,
        RawBsonRef::Null => 2,
        RawBsonRef::Int32(_)
        | RawBsonRef::Int64(_)
        | RawBsonRef::Double(_)
        | RawBsonRef::Decimal128(_) => 3,
        RawBsonRef::String(_) | RawBsonRef::Symbol(_) => 4,
        RawBsonRef::Document(_) => 5,
        RawBsonRef::Array(_) => 6,
        RawBsonRef::Binary(_) => 7,
        RawBsonRef::ObjectId(_) => 8,
        RawBsonRef::Boolean(_) => 9,
        RawBsonRef::DateTime(_) => 10,
        RawBsonRef::Timestamp(_) => 11,
        RawBsonRef::RegularExpression(_) => 12,
        RawBsonRef::DbPointer(_) => 13,
        RawBsonRef::JavaScriptCode(_) => 14,
        RawBsonRef::JavaScriptCodeWithScope(_) => 15,
        RawBsonRef::MaxKey => 16,
    }
}

/// Orders two values as a mongod `_id` index does under the simple collation.
pub fn compare(a: RawBsonRef<'_>, b: RawBsonRef<'_>) -> Ordering {
    let by_bracket = bracket(a).cmp(&bracket(b));
    if by_bracket != Ordering::Equal {
        return by_bracket;
    }
    match (a, b) {
        (
            RawBsonRef::String(x) | RawBsonRef::Symbol(x),
            RawBsonRef::String(y) | RawBsonRef::Symbol(y),
        ) => x.as_bytes().cmp(y.as_bytes()),
        (RawBsonRef::Document(x), RawBsonRef::Document(y)) => elements(x.iter(), y.iter()),
        // An array's field names are its positions, equal pair by pair.
        (RawBsonRef::Array(x), RawBsonRef::Array(y)) => elements(
            x.into_iter().map(|v| v.map(|v| ("", v))),
            y.into_iter().map(|v| v.map(|v| ("", v))),
        ),
        (RawBsonRef::Binary(x), RawBsonRef::Binary(y)) => x
            .bytes
            .len()
            .cmp(&y.bytes.len())
            .then_with(|| u8::from(x.subtype).cmp(&u8::from(y.subtype)))
            .then_with(|| x.bytes.cmp(y.bytes)),
        (RawBsonRef::ObjectId(x), RawBsonRef::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (RawBsonRef::Boolean(x), RawBsonRef::Boolean(y)) => x.cmp(&y),
        (RawBsonRef::DateTime(x), RawBsonRef::DateTime(y)) => {
            x.timestamp_millis().cmp(&y.timestamp_millis())
        }
        (RawBsonRef::Timestamp(x), RawBsonRef::Timestamp(y)) => {
            (x.time, x.increment).cmp(&(y.time, y.increment))
        }
        (RawBsonRef::RegularExpression(x), RawBsonRef::RegularExpression(y)) => x
            .pattern
            .as_bytes()
            .cmp(y.pattern.as_bytes())
            .then_with(|| x.options.as_bytes().cmp(y.options.as_bytes())),
        (RawBsonRef::JavaScriptCode(x), RawBsonRef::JavaScriptCode(y)) => {
            x.as_bytes().cmp(y.as_bytes())
        }
        (RawBsonRef::JavaScriptCodeWithScope(x), RawBsonRef::JavaScriptCodeWithScope(y)) => x
            .code
            .as_bytes()
            .cmp(y.code.as_bytes())
            .then_with(|| elements(x.scope.iter(), y.scope.iter())),
        _ => match (Number::of(a), Number::of(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            // MinKey, MaxKey, null, undefined: one value each. DBPointer: by bytes.
            _ => form(a).cmp(&form(b)),
        },
    }
}

/// Documents and arrays: element by element (bracket, then field name, then value); a prefix
/// sorts first.
fn elements<'a, 'b>(
    mut x: impl Iterator<Item = mongodb::bson::raw::Result<(&'a str, RawBsonRef<'a>)>>,
    mut y: impl Iterator<Item = mongodb::bson::raw::Result<(&'b str, RawBsonRef<'b>)>>,
) -> Ordering {
    loop {
        match (x.next().and_then(Result::ok), y.next().and_then(Result::ok)) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((kx, vx)), Some((ky, vy))) => {
                let order = bracket(vx)
                    .cmp(&bracket(vy))
                    .then_with(|| kx.as_bytes().cmp(ky.as_bytes()))
                    .then_with(|| compare(vx, vy));
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

fn number(n: Number, out: &mut Vec<u8>) {
    out.push(b'N');
    match n {
        Number::Zero => out.push(b'0'),
        Number::NaN => out.push(b'n'),
        Number::Infinity { negative } => out.push(if negative { b'-' } else { b'+' }),
        Number::Finite {
            negative,
            digits,
            exponent,
        } => {
            out.push(if negative { b'<' } else { b'>' });
            out.extend_from_slice(&exponent.to_le_bytes());
            sized(digits.as_bytes(), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{doc, Bson, Decimal128};

    use super::*;

    fn k(value: Bson) -> Vec<u8> {
        let d = RawDocumentBuf::from_document(&doc! { "_id": value }).unwrap();
        key(d.get("_id").unwrap().unwrap())
    }

    fn dec(text: &str) -> Bson {
        Bson::Decimal128(text.parse::<Decimal128>().unwrap())
    }

    #[test]
    fn numbers_are_equal_by_value_whatever_their_type() {
        let one = k(Bson::Int32(1));
        for same in [
            Bson::Int64(1),
            Bson::Double(1.0),
            dec("1"),
            dec("1.000"),
            dec("0.1E+1"),
        ] {
            assert_eq!(k(same.clone()), one, "{same:?}");
        }
        assert_eq!(k(Bson::Double(0.5)), k(dec("0.50")));
        assert_eq!(k(Bson::Int64(-1_500)), k(dec("-1.5E+3")));
        assert_eq!(k(Bson::Double(1e20)), k(dec("1E+20")));
        for zero in [Bson::Int64(0), Bson::Double(-0.0), dec("-0"), dec("0E-10")] {
            assert_eq!(k(zero.clone()), k(Bson::Int32(0)), "{zero:?}");
        }
        assert_eq!(k(Bson::Double(f64::NAN)), k(dec("NaN")));
        assert_eq!(k(Bson::Double(f64::NEG_INFINITY)), k(dec("-Infinity")));
    }

    #[test]
    fn different_numbers_stay_different() {
        assert_ne!(k(Bson::Int32(1)), k(Bson::Int32(-1)));
        assert_ne!(k(Bson::Int32(1)), k(Bson::Int32(10)));
        assert_ne!(k(Bson::Double(1.5)), k(Bson::Int32(1)));
        // A double's exact value: 0.1 is not the decimal 0.1 for mongod either.
        assert_ne!(k(Bson::Double(0.1)), k(dec("0.1")));
        // 2^63 as a double is not i64::MAX.
        assert_ne!(
            k(Bson::Double(9_223_372_036_854_775_807.0)),
            k(Bson::Int64(i64::MAX))
        );
        assert_ne!(
            k(Bson::Double(f64::INFINITY)),
            k(Bson::Double(f64::NEG_INFINITY))
        );
        assert_ne!(k(Bson::Int32(0)), k(Bson::Double(f64::NAN)));
    }

    #[test]
    fn documents_and_arrays_compare_element_by_element() {
        let a = k(Bson::Document(doc! { "a": 1, "b": [1, "x"] }));
        assert_eq!(
            a,
            k(Bson::Document(
                doc! { "a": 1.0, "b": [Bson::Int64(1), "x"] }
            ))
        );
        assert_ne!(
            a,
            k(Bson::Document(doc! { "b": [1, "x"], "a": 1 })),
            "field order counts"
        );
        assert_ne!(a, k(Bson::Document(doc! { "a": 1, "b": [1, "y"] })));
        assert_ne!(k(Bson::Document(doc! {})), k(Bson::Array(vec![])));
    }

    #[test]
    fn strings_equal_symbols_and_other_types_compare_by_bytes() {
        assert_eq!(k(Bson::String("a".into())), k(Bson::Symbol("a".into())));
        assert_ne!(k(Bson::String("a".into())), k(Bson::String("A".into())));
        assert_ne!(k(Bson::String("1".into())), k(Bson::Int32(1)));
        let oid = mongodb::bson::oid::ObjectId::new();
        assert_eq!(k(Bson::ObjectId(oid)), k(Bson::ObjectId(oid)));
        assert_ne!(k(Bson::Boolean(true)), k(Bson::Int32(1)));
        assert_ne!(k(Bson::Null), k(Bson::Int32(0)));
    }

    fn cmp(a: Bson, b: Bson) -> Ordering {
        let x = RawDocumentBuf::from_document(&doc! { "v": a }).unwrap();
        let y = RawDocumentBuf::from_document(&doc! { "v": b }).unwrap();
        compare(x.get("v").unwrap().unwrap(), y.get("v").unwrap().unwrap())
    }

    #[test]
    fn values_sort_as_an_id_index_does() {
        use mongodb::bson::{oid::ObjectId, spec::BinarySubtype, Binary, DateTime, Timestamp};
        // Ascending, one value per line; equal neighbours are marked by the test below.
        let ascending = [
            Bson::MinKey,
            Bson::Null,
            Bson::Double(f64::NAN),
            Bson::Double(f64::NEG_INFINITY),
            Bson::Int64(-1_000_000),
            dec("-1.5"),
            Bson::Int32(-1),
            Bson::Double(0.0),
            // The double nearest 0.1 is 0.1000000000000000055…
            dec("0.1"),
            Bson::Double(0.1),
            Bson::Int32(1),
            Bson::Double(1.5),
            Bson::Int64(1 << 60),
            Bson::Double(f64::INFINITY),
            Bson::String("".into()),
            Bson::String("A".into()),
            Bson::String("a".into()),
            Bson::String("ab".into()),
            Bson::Document(doc! {}),
            Bson::Document(doc! { "a": 1 }),
            Bson::Document(doc! { "a": 1, "b": 1 }),
            // A field's type bracket counts before its name.
            Bson::Document(doc! { "b": 0 }),
            Bson::Document(doc! { "a": "x" }),
            Bson::Array(vec![]),
            Bson::Array(vec![Bson::Int32(1)]),
            Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes: vec![9],
            }),
            Bson::Binary(Binary {
                subtype: BinarySubtype::Uuid,
                bytes: vec![0],
            }),
            Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes: vec![0, 0],
            }),
            Bson::ObjectId(ObjectId::from_bytes([0; 12])),
            Bson::ObjectId(ObjectId::from_bytes([1; 12])),
            Bson::Boolean(false),
            Bson::Boolean(true),
            Bson::DateTime(DateTime::from_millis(-5)),
            Bson::DateTime(DateTime::from_millis(5)),
            Bson::Timestamp(Timestamp {
                time: 1,
                increment: 9,
            }),
            Bson::Timestamp(Timestamp {
                time: 2,
                increment: 0,
            }),
            Bson::MaxKey,
        ];
        for pair in ascending.windows(2) {
            assert_eq!(
                cmp(pair[0].clone(), pair[1].clone()),
                Ordering::Less,
                "{:?} < {:?}",
                pair[0],
                pair[1]
            );
            assert_eq!(cmp(pair[1].clone(), pair[0].clone()), Ordering::Greater);
        }
        assert_eq!(cmp(Bson::Int32(1), Bson::Double(1.0)), Ordering::Equal);
        assert_eq!(
            cmp(Bson::String("s".into()), Bson::Symbol("s".into())),
            Ordering::Equal
        );
        assert_eq!(cmp(Bson::Int64(-3), dec("-3.00")), Ordering::Equal);
    }

    #[test]
    fn forms_tell_the_byte_forms_apart() {
        let form_of = |v: Bson| {
            let d = RawDocumentBuf::from_document(&doc! { "_id": v }).unwrap();
            form(d.get("_id").unwrap().unwrap())
        };
        assert_ne!(form_of(Bson::Int32(1)), form_of(Bson::Double(1.0)));
        assert_eq!(form_of(Bson::Int32(1)), form_of(Bson::Int32(1)));
    }

    /// `same_form` agrees with comparing `form`s, on values where `==` would not.
    #[test]
    fn same_form_agrees_with_the_forms() {
        let values = [
            Bson::Int32(1),
            Bson::Int64(1),
            Bson::Double(1.0),
            Bson::Double(0.0),
            Bson::Double(-0.0),
            Bson::Double(f64::NAN),
            Bson::String("a".into()),
            Bson::Symbol("a".into()),
            Bson::Document(doc! { "a": 1 }),
            Bson::Document(doc! { "a": 1.0 }),
            Bson::Array(vec![Bson::Int32(1)]),
        ];
        let docs: Vec<RawDocumentBuf> = values
            .iter()
            .map(|v| RawDocumentBuf::from_document(&doc! { "_id": v.clone() }).unwrap())
            .collect();
        for a in &docs {
            for b in &docs {
                let (a, b) = (
                    a.get("_id").unwrap().unwrap(),
                    b.get("_id").unwrap().unwrap(),
                );
                assert_eq!(same_form(a, b), form(a) == form(b), "{a:?} {b:?}");
            }
        }
    }
}
