//! Metadata filters: a MongoDB / Qdrant-style language, parsed once per query and
//! evaluated per segment into a [`Bitset`] from the record store's typed columns.
//!
//! ```text
//! {"year": 2020}                         equality (shorthand for {"$eq": 2020})
//! {"lang": {"$in": ["zh", "en"]}}        membership; "$nin" is its negation
//! {"year": {"$gte": 2018, "$lt": 2022}}  ranges: $gt $gte $lt $lte (numbers only)
//! {"source": {"$ne": "wiki"}}            not equal (also true when the field is missing)
//! {"tags": "law"}                        on a list-valued field: any element matches
//! {"meta.author": "Li"}                  dotted paths reach into nested dicts
//! {"draft": {"$exists": false}}
//! {"$and": [...]}, {"$or": [...]}, {"$not": {...}}
//! ```
//!
//! Several keys in one map are ANDed. Equality is by value, so 1 == 1.0 (numbers compare
//! as f64) and true is not 1 (booleans only equal booleans); null equals null; NaN equals
//! nothing. Ranges compare numbers only (booleans excluded): a document whose field is
//! missing or not a number never satisfies one. These are the semantics of the Python
//! `FilterEvaluator` this replaces.
//!
//! Evaluation: equality on strings reads the keyword postings; on numbers it scans the
//! int and float columns once for all wanted values; booleans and nulls are doc lists;
//! ranges scan the numeric columns; lists holding anything but strings are parsed from
//! their JSON.

use serde_json::Value;

use super::bitset::Bitset;
use super::records::{DocList, Field, RecordStore};
use crate::error::Error;

/// A filter spec as given by a caller (Python dict, JSON): what [`Filter::parse`] reads.
/// Unlike JSON it keeps NaN and tells ints from floats.
#[derive(Clone, Debug, PartialEq)]
pub enum SpecValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<SpecValue>),
    Map(Vec<(String, SpecValue)>),
}

impl From<&Value> for SpecValue {
    fn from(v: &Value) -> Self {
        match v {
            Value::Null => SpecValue::Null,
            Value::Bool(b) => SpecValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => SpecValue::Int(i),
                None => SpecValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => SpecValue::Str(s.clone()),
            Value::Array(a) => SpecValue::List(a.iter().map(SpecValue::from).collect()),
            Value::Object(m) => SpecValue::Map(m.iter().map(|(k, v)| (k.clone(), SpecValue::from(v))).collect()),
        }
    }
}

impl SpecValue {
    fn type_name(&self) -> &'static str {
        match self {
            SpecValue::Null => "NoneType",
            SpecValue::Bool(_) => "bool",
            SpecValue::Int(_) => "int",
            SpecValue::Float(_) => "float",
            SpecValue::Str(_) => "str",
            SpecValue::List(_) => "list",
            SpecValue::Map(_) => "dict",
        }
    }

    fn repr(&self) -> String {
        match self {
            SpecValue::Null => "None".into(),
            SpecValue::Bool(b) => if *b { "True" } else { "False" }.into(),
            SpecValue::Int(i) => i.to_string(),
            SpecValue::Float(f) => format!("{f:?}"),
            SpecValue::Str(s) => format!("'{s}'"),
            SpecValue::List(l) => format!("[{}]", l.iter().map(SpecValue::repr).collect::<Vec<_>>().join(", ")),
            SpecValue::Map(m) => format!(
                "{{{}}}",
                m.iter()
                    .map(|(k, v)| format!("'{k}': {}", v.repr()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// A malformed filter: `Type` for a value of the wrong type (Python TypeError), `Value`
/// for an unknown operator or a bad shape (ValueError).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("{0}")]
    Type(String),
    #[error("{0}")]
    Value(String),
}

/// A value equality compares with.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl RangeOp {
    #[inline]
    fn test(self, x: f64, bound: f64) -> bool {
        match self {
            RangeOp::Gt => x > bound,
            RangeOp::Gte => x >= bound,
            RangeOp::Lt => x < bound,
            RangeOp::Lte => x <= bound,
        }
    }
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Every document (the empty spec).
    All,
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// The field equals one of the values (any element, for a list).
    In {
        path: String,
        values: Vec<Scalar>,
    },
    Exists {
        path: String,
        exists: bool,
    },
    Range {
        path: String,
        op: RangeOp,
        bound: f64,
    },
}

fn scalar(v: &SpecValue) -> Result<Scalar, SpecError> {
    Ok(match v {
        SpecValue::Null => Scalar::Null,
        SpecValue::Bool(b) => Scalar::Bool(*b),
        SpecValue::Int(i) => Scalar::Num(*i as f64),
        SpecValue::Float(f) => Scalar::Num(*f),
        SpecValue::Str(s) => Scalar::Str(s.clone()),
        _ => {
            return Err(SpecError::Type(format!(
                "cannot filter on a value of type {}: {}",
                v.type_name(),
                v.repr()
            )))
        }
    })
}

fn and(mut parts: Vec<Filter>) -> Filter {
    match parts.len() {
        0 => Filter::All,
        1 => parts.pop().unwrap(),
        _ => Filter::And(parts),
    }
}

impl Filter {
    /// Parse and validate a spec (a map); errors name the operator or field at fault.
    pub fn parse(spec: &SpecValue) -> Result<Filter, SpecError> {
        let SpecValue::Map(entries) = spec else {
            return Err(SpecError::Type(format!(
                "filter must be a dict, not {}",
                spec.type_name()
            )));
        };
        let mut parts = Vec::with_capacity(entries.len());
        for (key, cond) in entries {
            match key.as_str() {
                "$and" | "$or" => {
                    let items = match cond {
                        SpecValue::List(items) if !items.is_empty() => items,
                        _ => return Err(SpecError::Value(format!("{key} needs a non-empty list of filters"))),
                    };
                    let subs = items.iter().map(Filter::parse).collect::<Result<Vec<_>, _>>()?;
                    parts.push(if key == "$and" { and(subs) } else { Filter::Or(subs) });
                }
                "$not" => parts.push(Filter::Not(Box::new(Filter::parse(cond)?))),
                k if k.starts_with('$') => {
                    return Err(SpecError::Value(format!("unknown filter operator '{k}'")));
                }
                path => match cond {
                    SpecValue::Map(ops) if ops.iter().any(|(k, _)| k.starts_with('$')) => {
                        for (op, arg) in ops {
                            parts.push(Self::field_op(path, op, arg)?);
                        }
                    }
                    _ => parts.push(Filter::In {
                        path: path.to_string(),
                        values: vec![scalar(cond)?],
                    }),
                },
            }
        }
        Ok(and(parts))
    }

    /// Parse a spec given as JSON text (for callers without Python).
    pub fn from_json(text: &str) -> Result<Filter, SpecError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| SpecError::Value(format!("filter is not valid JSON: {e}")))?;
        Filter::parse(&SpecValue::from(&v))
    }

    fn field_op(path: &str, op: &str, arg: &SpecValue) -> Result<Filter, SpecError> {
        let path_s = path.to_string();
        let range = |kind: RangeOp| -> Result<Filter, SpecError> {
            let bound = match arg {
                SpecValue::Int(i) => *i as f64,
                SpecValue::Float(f) if !f.is_nan() => *f,
                _ => {
                    return Err(SpecError::Type(format!(
                        "{op} on '{path}' needs a number, not {}",
                        arg.repr()
                    )))
                }
            };
            Ok(Filter::Range {
                path: path_s.clone(),
                op: kind,
                bound,
            })
        };
        let list = || -> Result<Vec<Scalar>, SpecError> {
            match arg {
                SpecValue::List(items) => items.iter().map(scalar).collect(),
                _ => Err(SpecError::Type(format!("{op} on '{path}' needs a list"))),
            }
        };
        Ok(match op {
            "$eq" => Filter::In {
                path: path_s,
                values: vec![scalar(arg)?],
            },
            "$ne" => Filter::Not(Box::new(Filter::In {
                path: path_s,
                values: vec![scalar(arg)?],
            })),
            "$in" => Filter::In {
                path: path_s,
                values: list()?,
            },
            "$nin" => Filter::Not(Box::new(Filter::In {
                path: path_s,
                values: list()?,
            })),
            "$exists" => match arg {
                SpecValue::Bool(b) => Filter::Exists {
                    path: path_s,
                    exists: *b,
                },
                _ => return Err(SpecError::Type(format!("$exists on '{path}' needs True or False"))),
            },
            "$gt" => range(RangeOp::Gt)?,
            "$gte" => range(RangeOp::Gte)?,
            "$lt" => range(RangeOp::Lt)?,
            "$lte" => range(RangeOp::Lte)?,
            _ => return Err(SpecError::Value(format!("unknown operator '{op}' on field '{path}'"))),
        })
    }

    /// The documents of `store` that match. Errors only for a corrupt store.
    pub fn eval(&self, store: &RecordStore) -> crate::Result<Bitset> {
        let n = store.n_docs();
        Ok(match self {
            Filter::All => Bitset::ones(n),
            Filter::And(parts) => {
                let mut out = Bitset::ones(n);
                for p in parts {
                    out.and_with(&p.eval(store)?);
                }
                out
            }
            Filter::Or(parts) => {
                let mut out = Bitset::zeros(n);
                for p in parts {
                    out.or_with(&p.eval(store)?);
                }
                out
            }
            Filter::Not(p) => {
                let mut out = p.eval(store)?;
                out.negate();
                out
            }
            Filter::In { path, values } => match store.field(path)? {
                Some(f) => equals_any(store, &f, values)?,
                None => Bitset::zeros(n),
            },
            Filter::Exists { path, exists } => {
                let mut out = Bitset::zeros(n);
                if let Some(f) = store.field(path)? {
                    set_all(store, &mut out, f.present()?)?;
                }
                if !exists {
                    out.negate();
                }
                out
            }
            Filter::Range { path, op, bound } => match store.field(path)? {
                Some(f) => compare(store, &f, *op, *bound)?,
                None => Bitset::zeros(n),
            },
        })
    }
}

fn doc_error(store: &RecordStore) -> Error {
    Error::corrupt(store.path(), "a metadata column names a document out of range")
}

fn set_all(store: &RecordStore, out: &mut Bitset, docs: DocList<'_>) -> crate::Result<()> {
    for d in docs.iter() {
        let d = d as usize;
        if d >= out.len() {
            return Err(doc_error(store));
        }
        out.set(d);
    }
    Ok(())
}

/// Equality of a stored JSON list element with a wanted value, as Python's `_key`.
fn element_equals(x: &Value, v: &Scalar) -> bool {
    match (x, v) {
        (Value::Null, Scalar::Null) => true,
        (Value::Bool(a), Scalar::Bool(b)) => a == b,
        (Value::Number(a), Scalar::Num(b)) => a.as_f64() == Some(*b),
        (Value::String(a), Scalar::Str(b)) => a == b,
        _ => false,
    }
}

fn equals_any(store: &RecordStore, f: &Field<'_>, values: &[Scalar]) -> crate::Result<Bitset> {
    let mut out = Bitset::zeros(store.n_docs());
    let mut nums: Vec<f64> = Vec::new();
    let mut done = [false; 3]; // null, false, true already added
    for v in values {
        match v {
            Scalar::Null if !done[0] => {
                done[0] = true;
                set_all(store, &mut out, f.nulls()?)?;
            }
            Scalar::Bool(b) if !done[1 + *b as usize] => {
                done[1 + *b as usize] = true;
                set_all(store, &mut out, f.bools(*b)?)?;
            }
            Scalar::Num(x) if !x.is_nan() => nums.push(*x),
            Scalar::Str(s) => {
                if let Some(docs) = f.keyword(s)? {
                    set_all(store, &mut out, docs)?;
                }
            }
            _ => {}
        }
    }
    if !nums.is_empty() {
        nums.sort_unstable_by(f64::total_cmp);
        nums.dedup();
        // -0.0 == 0.0 but they differ under total_cmp: compare by value, not bits.
        let hit = |x: f64| {
            if nums.len() <= 8 {
                nums.contains(&x)
            } else {
                let i = nums.partition_point(|&y| y < x);
                (i < nums.len() && nums[i] == x) || (i > 0 && nums[i - 1] == x)
            }
        };
        let (docs, ints) = f.ints()?;
        for (d, i) in docs.iter().zip(ints) {
            if hit(i as f64) {
                let d = d as usize;
                if d >= out.len() {
                    return Err(doc_error(store));
                }
                out.set(d);
            }
        }
        let (docs, flts) = f.floats()?;
        for (d, x) in docs.iter().zip(flts) {
            if hit(x) {
                let d = d as usize;
                if d >= out.len() {
                    return Err(doc_error(store));
                }
                out.set(d);
            }
        }
    }
    for (d, v) in f.json_values()? {
        let d = d as usize;
        if d >= out.len() {
            return Err(doc_error(store));
        }
        if let Value::Array(items) = &v {
            if items.iter().any(|x| values.iter().any(|w| element_equals(x, w))) {
                out.set(d);
            }
        }
    }
    Ok(out)
}

fn compare(store: &RecordStore, f: &Field<'_>, op: RangeOp, bound: f64) -> crate::Result<Bitset> {
    let mut out = Bitset::zeros(store.n_docs());
    let mut put = |d: u32, ok: bool| -> crate::Result<()> {
        if ok {
            let d = d as usize;
            if d >= out.len() {
                return Err(doc_error(store));
            }
            out.set(d);
        }
        Ok(())
    };
    let (docs, ints) = f.ints()?;
    for (d, i) in docs.iter().zip(ints) {
        put(d, op.test(i as f64, bound))?;
    }
    let (docs, flts) = f.floats()?;
    for (d, x) in docs.iter().zip(flts) {
        put(d, op.test(x, bound))?;
    }
    for (d, v) in f.json_values()? {
        let ok = match &v {
            Value::Array(items) => items
                .iter()
                .any(|x| matches!(x, Value::Number(_)) && x.as_f64().is_some_and(|y| op.test(y, bound))),
            _ => false,
        };
        put(d, ok)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::records::{Record, RecordStoreWriter};
    use serde_json::json;

    fn store(metas: &[Value]) -> RecordStore {
        let mut w = RecordStoreWriter::new();
        for (i, m) in metas.iter().enumerate() {
            w.add(&Record {
                id: format!("d{i}"),
                metadata: m.as_object().cloned().unwrap(),
                ..Default::default()
            })
            .unwrap();
        }
        w.finish().unwrap()
    }

    fn run(s: &RecordStore, spec: Value) -> Vec<usize> {
        Filter::parse(&SpecValue::from(&spec))
            .unwrap()
            .eval(s)
            .unwrap()
            .ones_iter()
            .collect()
    }

    #[test]
    fn operators() {
        let s = store(&[
            json!({"year": 2020, "lang": "en", "tags": ["a", "b"]}),
            json!({"year": 2021.0, "lang": "zh", "tags": [1, "a", true, null]}),
            json!({"year": true, "lang": null, "meta": {"author": "Li"}}),
            json!({"year": "2020", "nested": [[1]]}),
            json!({}),
        ]);
        assert_eq!(run(&s, json!({})), [0, 1, 2, 3, 4]);
        assert_eq!(run(&s, json!({"year": 2020})), [0]);
        assert_eq!(run(&s, json!({"year": 2021})), [1]);
        assert_eq!(run(&s, json!({"year": true})), [2]);
        assert_eq!(run(&s, json!({"year": 1})), Vec::<usize>::new());
        assert_eq!(run(&s, json!({"year": "2020"})), [3]);
        assert_eq!(run(&s, json!({"year": {"$gte": 2020}})), [0, 1]);
        assert_eq!(run(&s, json!({"year": {"$gt": 2020, "$lte": 2021}})), [1]);
        assert_eq!(run(&s, json!({"year": {"$ne": 2020}})), [1, 2, 3, 4]);
        assert_eq!(run(&s, json!({"lang": null})), [2]);
        assert_eq!(run(&s, json!({"lang": {"$in": ["en", "zh"]}})), [0, 1]);
        assert_eq!(run(&s, json!({"lang": {"$nin": ["en"]}})), [1, 2, 3, 4]);
        assert_eq!(run(&s, json!({"tags": "a"})), [0, 1]);
        assert_eq!(run(&s, json!({"tags": 1.0})), [1]);
        assert_eq!(run(&s, json!({"tags": true})), [1]);
        assert_eq!(run(&s, json!({"tags": null})), [1]);
        assert_eq!(run(&s, json!({"tags": {"$gte": 1}})), [1]);
        assert_eq!(run(&s, json!({"nested": 1})), Vec::<usize>::new());
        assert_eq!(run(&s, json!({"meta.author": "Li"})), [2]);
        assert_eq!(run(&s, json!({"meta": {"$exists": true}})), [2]);
        assert_eq!(run(&s, json!({"meta": {"$ne": "x"}})), [0, 1, 2, 3, 4]);
        assert_eq!(run(&s, json!({"tags": {"$exists": false}})), [2, 3, 4]);
        assert_eq!(run(&s, json!({"$or": [{"year": 2020}, {"lang": "zh"}]})), [0, 1]);
        assert_eq!(run(&s, json!({"$and": [{"tags": "a"}, {"lang": "zh"}]})), [1]);
        assert_eq!(
            run(&s, json!({"$not": {"tags": "a"}, "year": {"$exists": true}})),
            [2, 3]
        );
        assert_eq!(run(&s, json!({"missing": {"$in": []}})), Vec::<usize>::new());
        let f = Filter::from_json(r#"{"lang": {"$in": ["en", "zh"]}, "year": {"$lt": 2021}}"#).unwrap();
        assert_eq!(f.eval(&s).unwrap().ones_iter().collect::<Vec<_>>(), [0]);
        assert!(matches!(Filter::from_json("{"), Err(SpecError::Value(_))));
    }

    #[test]
    fn bad_specs() {
        let parse = |v: Value| Filter::parse(&SpecValue::from(&v));
        assert!(
            matches!(parse(json!({"year": {"$between": [1, 2]}})), Err(SpecError::Value(m)) if m.contains("unknown operator"))
        );
        assert!(
            matches!(parse(json!({"year": {"$gt": "2001"}})), Err(SpecError::Type(m)) if m.contains("needs a number"))
        );
        assert!(
            matches!(parse(json!({"$xor": []})), Err(SpecError::Value(m)) if m.contains("unknown filter operator"))
        );
        assert!(matches!(parse(json!([["year", 1]])), Err(SpecError::Type(_))));
        assert!(matches!(parse(json!({"$and": []})), Err(SpecError::Value(_))));
        assert!(matches!(parse(json!({"x": [1]})), Err(SpecError::Type(_))));
        assert!(matches!(parse(json!({"x": {"$in": "a"}})), Err(SpecError::Type(_))));
        assert!(matches!(parse(json!({"x": {"$exists": 1}})), Err(SpecError::Type(_))));
        assert!(matches!(parse(json!({"x": {"$gt": true}})), Err(SpecError::Type(_))));
        assert!(matches!(
            Filter::parse(&SpecValue::Map(vec![(
                "x".into(),
                SpecValue::Map(vec![("$lt".into(), SpecValue::Float(f64::NAN))])
            )])),
            Err(SpecError::Type(_))
        ));
        // NaN equals nothing, and its negation everything
        let s = store(&[json!({"x": 1.5})]);
        let nan_eq = Filter::parse(&SpecValue::Map(vec![("x".into(), SpecValue::Float(f64::NAN))])).unwrap();
        assert_eq!(nan_eq.eval(&s).unwrap().count(), 0);
    }
}
