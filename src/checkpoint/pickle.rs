//! A restricted pickle reader for `torch.save` files holding plain tensors.
//!
//! It interprets only the opcodes a protocol-2 pickle of a list (or dict) of tensors uses
//! (trajectory-attention.md §3) and only three kinds of globals — `torch._utils._rebuild_tensor_v2`,
//! `collections.OrderedDict` and the `torch.{Float,Half,BFloat16}Storage` type markers — none of which is
//! ever *called*: they are recognised by name and their effect is reproduced here as data. Any other
//! opcode, global, persistent id or `REDUCE` target is an error naming it.

use std::collections::HashMap;

use super::DiskDType;

/// Why a pickle was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    /// Content outside the allowed subset (opcode, global or callable): possibly malicious.
    #[error("{0}")]
    Unsafe(String),
    /// Structurally broken or truncated pickle.
    #[error("malformed pickle: {0}")]
    Malformed(String),
}

/// A storage referenced through a persistent id `('storage', <T>Storage, key, device, numel)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    pub key: String,
    pub dtype: DiskDType,
    pub numel: u64,
}

/// A tensor view rebuilt by `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
}

/// Recognised globals (never called).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Global {
    RebuildTensorV2,
    OrderedDict,
    StorageType(DiskDType),
}

/// Values the restricted machine can produce.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Bool(bool),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Bool(_) => "bool",
            Value::Str(_) => "str",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
    /// Node count, used to bound memory when memoised values are duplicated.
    fn weight(&self) -> usize {
        match self {
            Value::Tuple(v) | Value::List(v) => 1 + v.iter().map(Value::weight).sum::<usize>(),
            Value::Dict(v) => 1 + v.iter().map(|(a, b)| a.weight() + b.weight()).sum::<usize>(),
            Value::Tensor(t) => 1 + t.size.len() + t.stride.len(),
            _ => 1,
        }
    }
}

enum Slot {
    Mark,
    V(Value),
}

/// Upper bound on value nodes created by `BINGET` copies (defeats "billion laughs" inputs).
const MAX_NODES: usize = 10_000_000;

fn global_from(module: &str, name: &str) -> Result<Global, PickleError> {
    match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Ok(Global::RebuildTensorV2),
        ("collections", "OrderedDict") => Ok(Global::OrderedDict),
        ("torch", "FloatStorage") => Ok(Global::StorageType(DiskDType::F32)),
        ("torch", "HalfStorage") => Ok(Global::StorageType(DiskDType::F16)),
        ("torch", "BFloat16Storage") => Ok(Global::StorageType(DiskDType::BF16)),
        ("torch", other) if other.ends_with("Storage") => Err(PickleError::Malformed(format!(
            "storage type `torch.{other}` is not supported (weights must be float32, float16 or bfloat16)"
        ))),
        _ => Err(PickleError::Unsafe(format!("global `{module}.{name}` is not allowed"))),
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| {
            PickleError::Malformed(format!("unexpected end of data at byte {} (needed {n} more)", self.pos))
        })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let nl = rest
            .iter()
            .take(256)
            .position(|&b| b == b'\n')
            .ok_or_else(|| PickleError::Malformed("unterminated GLOBAL name".into()))?;
        let s = std::str::from_utf8(&rest[..nl])
            .map_err(|_| PickleError::Malformed("GLOBAL name is not UTF-8".into()))?;
        self.pos += nl + 1;
        Ok(s)
    }
}

struct Machine {
    stack: Vec<Slot>,
    memo: HashMap<u32, Value>,
    nodes: usize,
}

impl Machine {
    fn pop(&mut self, op: &str) -> Result<Value, PickleError> {
        match self.stack.pop() {
            Some(Slot::V(v)) => Ok(v),
            Some(Slot::Mark) => Err(PickleError::Malformed(format!("{op}: unexpected MARK on the stack"))),
            None => Err(PickleError::Malformed(format!("{op}: stack underflow"))),
        }
    }
    fn top(&mut self, op: &str) -> Result<&mut Value, PickleError> {
        match self.stack.last_mut() {
            Some(Slot::V(v)) => Ok(v),
            _ => Err(PickleError::Malformed(format!("{op}: no value on the stack"))),
        }
    }
    fn pop_mark(&mut self, op: &str) -> Result<Vec<Value>, PickleError> {
        let mark = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or_else(|| PickleError::Malformed(format!("{op}: no MARK")))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .map(|s| match s {
                Slot::V(v) => v,
                Slot::Mark => unreachable_mark(),
            })
            .collect())
    }
    fn push(&mut self, v: Value) {
        self.stack.push(Slot::V(v));
    }
    fn put(&mut self, idx: u32) -> Result<(), PickleError> {
        let v = self.top("PUT")?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }
    fn get(&mut self, idx: u32) -> Result<(), PickleError> {
        let v = self
            .memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| PickleError::Malformed(format!("GET of unknown memo index {idx}")))?;
        self.nodes = self.nodes.saturating_add(v.weight());
        if self.nodes > MAX_NODES {
            return Err(PickleError::Unsafe("pickle expands to too many objects".into()));
        }
        self.push(v);
        Ok(())
    }
}

// `pop_mark` splits right after the last MARK, so no MARK can follow it.
fn unreachable_mark() -> Value {
    Value::Tuple(Vec::new())
}

fn as_int(v: &Value, what: &str) -> Result<i64, PickleError> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(PickleError::Malformed(format!("{what}: expected int, got {}", other.kind()))),
    }
}

fn as_u64_tuple(v: &Value, what: &str) -> Result<Vec<u64>, PickleError> {
    match v {
        Value::Tuple(items) => items
            .iter()
            .map(|x| {
                let i = as_int(x, what)?;
                u64::try_from(i).map_err(|_| PickleError::Malformed(format!("{what}: negative value {i}")))
            })
            .collect(),
        other => Err(PickleError::Malformed(format!("{what}: expected tuple, got {}", other.kind()))),
    }
}

fn persistent_load(pid: Value) -> Result<Value, PickleError> {
    let items = match pid {
        Value::Tuple(items) => items,
        other => {
            return Err(PickleError::Unsafe(format!("persistent id of type {} is not allowed", other.kind())))
        }
    };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(Global::StorageType(dtype)), Value::Str(key), Value::Str(_device), Value::Int(numel)]
            if tag == "storage" =>
        {
            let numel = u64::try_from(*numel)
                .map_err(|_| PickleError::Malformed(format!("storage {key}: negative size {numel}")))?;
            Ok(Value::Storage(StorageRef { key: key.clone(), dtype: *dtype, numel }))
        }
        _ => Err(PickleError::Unsafe(
            "persistent id is not ('storage', <Float|Half|BFloat16>Storage, key, device, numel)".into(),
        )),
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value, PickleError> {
    let args = match args {
        Value::Tuple(a) => a,
        other => return Err(PickleError::Malformed(format!("REDUCE arguments are a {}", other.kind()))),
    };
    match callable {
        Value::Global(Global::RebuildTensorV2) => {
            if !(args.len() == 6 || args.len() == 7) {
                return Err(PickleError::Malformed(format!(
                    "_rebuild_tensor_v2 with {} arguments (expected 6 or 7)",
                    args.len()
                )));
            }
            let storage = match &args[0] {
                Value::Storage(s) => s.clone(),
                other => {
                    return Err(PickleError::Malformed(format!(
                        "_rebuild_tensor_v2: first argument is a {}, not a storage",
                        other.kind()
                    )))
                }
            };
            let offset = as_int(&args[1], "storage_offset")?;
            let offset = u64::try_from(offset)
                .map_err(|_| PickleError::Malformed(format!("negative storage offset {offset}")))?;
            let size = as_u64_tuple(&args[2], "size")?;
            let stride = as_u64_tuple(&args[3], "stride")?;
            if size.len() != stride.len() {
                return Err(PickleError::Malformed(format!(
                    "size {size:?} and stride {stride:?} differ in rank"
                )));
            }
            if !matches!(args[4], Value::Bool(_)) {
                return Err(PickleError::Malformed("requires_grad is not a bool".into()));
            }
            for extra in &args[5..] {
                match extra {
                    Value::Dict(d) if d.is_empty() => {}
                    other => {
                        return Err(PickleError::Unsafe(format!(
                            "_rebuild_tensor_v2 with non-empty hooks/metadata ({})",
                            other.kind()
                        )))
                    }
                }
            }
            Ok(Value::Tensor(TensorRef { storage, offset, size, stride }))
        }
        Value::Global(Global::OrderedDict) if args.is_empty() => Ok(Value::Dict(Vec::new())),
        Value::Global(g) => {
            Err(PickleError::Unsafe(format!("REDUCE of {g:?} with these arguments is not allowed")))
        }
        other => Err(PickleError::Unsafe(format!("REDUCE of a {} is not allowed", other.kind()))),
    }
}

/// Run the restricted machine over `data` and return the unpickled top-level value.
pub fn load(data: &[u8]) -> Result<Value, PickleError> {
    let mut r = Reader { data, pos: 0 };
    let mut m = Machine { stack: Vec::new(), memo: HashMap::new(), nodes: 0 };
    loop {
        let at = r.pos;
        let op = r.u8()?;
        match op {
            0x80 => {
                // PROTO
                let p = r.u8()?;
                if p > 5 {
                    return Err(PickleError::Malformed(format!("unsupported protocol {p}")));
                }
            }
            b']' => m.push(Value::List(Vec::new())),
            b'}' => m.push(Value::Dict(Vec::new())),
            b')' => m.push(Value::Tuple(Vec::new())),
            b'(' => m.stack.push(Slot::Mark),
            b'e' => {
                // APPENDS
                let items = m.pop_mark("APPENDS")?;
                match m.top("APPENDS")? {
                    Value::List(l) => l.extend(items),
                    other => return Err(PickleError::Malformed(format!("APPENDS to a {}", other.kind()))),
                }
            }
            b'a' => {
                // APPEND (a one-element list)
                let item = m.pop("APPEND")?;
                match m.top("APPEND")? {
                    Value::List(l) => l.push(item),
                    other => return Err(PickleError::Malformed(format!("APPEND to a {}", other.kind()))),
                }
            }
            b's' => {
                // SETITEM (a one-entry dict)
                let v = m.pop("SETITEM")?;
                let k = m.pop("SETITEM")?;
                match m.top("SETITEM")? {
                    Value::Dict(d) => d.push((k, v)),
                    other => return Err(PickleError::Malformed(format!("SETITEM on a {}", other.kind()))),
                }
            }
            b'u' => {
                // SETITEMS
                let items = m.pop_mark("SETITEMS")?;
                if items.len() % 2 != 0 {
                    return Err(PickleError::Malformed("SETITEMS with an odd number of items".into()));
                }
                match m.top("SETITEMS")? {
                    Value::Dict(d) => {
                        let mut it = items.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            d.push((k, v));
                        }
                    }
                    other => return Err(PickleError::Malformed(format!("SETITEMS on a {}", other.kind()))),
                }
            }
            b'c' => {
                // GLOBAL
                let module = r.line()?;
                let name = r.line()?;
                m.push(Value::Global(global_from(module, name)?));
            }
            b'Q' => {
                // BINPERSID
                let pid = m.pop("BINPERSID")?;
                m.push(persistent_load(pid)?);
            }
            b'X' => {
                // BINUNICODE
                let n = r.u32()? as usize;
                let s = std::str::from_utf8(r.take(n)?)
                    .map_err(|_| PickleError::Malformed("BINUNICODE is not UTF-8".into()))?;
                m.push(Value::Str(s.to_string()));
            }
            b'K' => {
                let v = r.u8()?;
                m.push(Value::Int(v as i64));
            }
            b'M' => {
                let v = r.u16()?;
                m.push(Value::Int(v as i64));
            }
            b'J' => {
                let v = r.u32()? as i32;
                m.push(Value::Int(v as i64));
            }
            b't' => {
                let items = m.pop_mark("TUPLE")?;
                m.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(m.pop("TUPLEn")?);
                }
                items.reverse();
                m.push(Value::Tuple(items));
            }
            0x88 => m.push(Value::Bool(true)),
            0x89 => m.push(Value::Bool(false)),
            b'R' => {
                let args = m.pop("REDUCE")?;
                let callable = m.pop("REDUCE")?;
                m.push(reduce(callable, args)?);
            }
            b'q' => {
                let i = r.u8()? as u32;
                m.put(i)?;
            }
            b'r' => {
                let i = r.u32()?;
                m.put(i)?;
            }
            b'h' => {
                let i = r.u8()? as u32;
                m.get(i)?;
            }
            b'j' => {
                let i = r.u32()?;
                m.get(i)?;
            }
            b'.' => {
                // STOP
                let v = m.pop("STOP")?;
                return Ok(v);
            }
            other => {
                return Err(PickleError::Unsafe(format!(
                    "opcode 0x{other:02x} ({}) at byte {at} is not allowed",
                    opcode_name(other)
                )))
            }
        }
    }
}

/// Python's name for an opcode byte (for error messages).
pub fn opcode_name(op: u8) -> &'static str {
    match op {
        b'R' => "REDUCE",
        b'b' => "BUILD",
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x8c => "SHORT_BINUNICODE",
        0x95 => "FRAME",
        0x94 => "MEMOIZE",
        b'N' => "NONE",
        b'G' => "BINFLOAT",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'L' => "LONG",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        b'P' => "PERSID",
        b'p' => "PUT",
        b'g' => "GET",
        b'a' => "APPEND",
        b's' => "SETITEM",
        b'l' => "LIST",
        b'd' => "DICT",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        _ => "unknown",
    }
}
