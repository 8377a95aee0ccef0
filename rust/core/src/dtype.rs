//! How an index stores numbers: one enum for the dense vectors (float32,
//! float16, int8) and the learned-sparse weights (float32, float16, uint8).
//! Each index accepts its own subset and keeps its own file codes.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    /// Unsigned 8-bit codes with a per-term scale (sparse weights, which are >= 0).
    U8,
    /// Signed 8-bit codes with a per-row scale (dense vectors).
    I8,
}

impl Dtype {
    /// Parse a name ("float32" or "f32", ...) that must be one of `allowed`.
    pub fn parse(s: &str, allowed: &[Dtype]) -> Result<Self> {
        let d = match s {
            "float32" | "f32" => Some(Dtype::F32),
            "float16" | "f16" => Some(Dtype::F16),
            "uint8" | "u8" => Some(Dtype::U8),
            "int8" | "i8" => Some(Dtype::I8),
            _ => None,
        };
        match d {
            Some(d) if allowed.contains(&d) => Ok(d),
            _ => {
                let names: Vec<String> = allowed.iter().map(|d| format!("{:?}", d.name())).collect();
                let expected = match names.split_last() {
                    Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                    _ => names.join(""),
                };
                Err(Error::invalid(format!("unknown dtype {s:?}: expected {expected}")))
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F16 => "float16",
            Dtype::U8 => "uint8",
            Dtype::I8 => "int8",
        }
    }

    /// Bytes per stored number.
    pub fn bytes(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
            Dtype::U8 | Dtype::I8 => 1,
        }
    }

    /// This dtype's code in a file whose format numbers the dtypes of `table` 0, 1, 2, ...
    pub(crate) fn code_in(self, table: &[Dtype]) -> u32 {
        table
            .iter()
            .position(|&d| d == self)
            .expect("dtype not in the file's table") as u32
    }

    /// The dtype a file's `code` names, by the format's `table`.
    pub(crate) fn from_code_in(code: u32, table: &[Dtype]) -> Option<Self> {
        table.get(code as usize).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_the_allowed_subset() {
        let sparse = [Dtype::F32, Dtype::F16, Dtype::U8];
        assert_eq!(Dtype::parse("uint8", &sparse).unwrap(), Dtype::U8);
        assert_eq!(Dtype::parse("f16", &sparse).unwrap(), Dtype::F16);
        let e = Dtype::parse("int8", &sparse).unwrap_err().to_string();
        assert!(e.contains("\"float32\", \"float16\" or \"uint8\""), "{e}");
        assert_eq!(Dtype::from_code_in(2, &sparse), Some(Dtype::U8));
        assert_eq!(Dtype::from_code_in(3, &sparse), None);
        assert_eq!(Dtype::U8.code_in(&sparse), 2);
    }
}
