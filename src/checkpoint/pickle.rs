//! A restricted pickle reader for `torch.save` files holding plain tensors.
//!
//! It interprets only the opcodes a protocol-2 pickle of a list (or dict) of tensors uses
//! (docs/reference/trajectory-attention.md §3) and only three kinds of globals — `torch._utils._rebuild_tensor_v2`,
//! `collections.OrderedDict` and the `torch.{Float,Half,BFloat16}Storage` type markers — none of which is
//! ever *called*: they are recognised by name and their effect is reproduced here as data. `BUILD` is accepted
//! only to drop the `_metadata` attribute of a `state_dict()` OrderedDict. Any other opcode, global,
//! persistent id or `REDUCE` target is an error naming it.
//!
//! Hostile input is bounded: the machine is iterative, every value records its nesting depth (more than
//! [`MAX_DEPTH`] levels is an error, so dropping, cloning or printing a value never recurses deeply), and the
//! number of value nodes created — `GET`/`PUT` copies included — is capped by [`MAX_NODES`].

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
    /// The value's Python type, for error messages.
    pub fn kind(&self) -> &'static str {
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
    /// Node count (a string counts one node per 64 bytes as well), used to bound memory when memoised
    /// values are duplicated.
    fn weight(&self) -> usize {
        match self {
            Value::Str(s) => 1 + s.len() / 64,
            Value::Tuple(v) | Value::List(v) => 1 + v.iter().map(Value::weight).sum::<usize>(),
            Value::Dict(v) => 1 + v.iter().map(|(a, b)| a.weight() + b.weight()).sum::<usize>(),
            Value::Tensor(t) => 1 + t.size.len() + t.stride.len(),
            _ => 1,
        }
    }
}

/// A stack entry: a MARK, or a value with its nesting depth (0 for scalars, 1 + the deepest element for
/// containers).
enum Slot {
    Mark,
    V(Value, u32),
}

/// Upper bound on value nodes the machine creates, `GET`/`PUT` copies included (defeats "billion laughs"
/// and memory exhaustion: a `torch.save` of a few thousand tensors needs well under 10⁵).
pub const MAX_NODES: usize = 2_000_000;

/// Highest tensor rank accepted.
pub const MAX_RANK: usize = 16;

/// Deepest nesting accepted (a `torch.save` of a dict of tensors nests 4 levels).
pub const MAX_DEPTH: u32 = 100;

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
    /// Memoised values with their depth.
    memo: HashMap<u32, (Value, u32)>,
    nodes: usize,
}

fn too_deep(op: &str) -> PickleError {
    PickleError::Malformed(format!("{op}: objects nested more than {MAX_DEPTH} levels deep"))
}

impl Machine {
    /// Count `n` new value nodes against [`MAX_NODES`].
    fn count(&mut self, n: usize) -> Result<(), PickleError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(PickleError::Unsafe(format!("pickle expands to more than {MAX_NODES} objects")));
        }
        Ok(())
    }
    fn pop(&mut self, op: &str) -> Result<(Value, u32), PickleError> {
        match self.stack.pop() {
            Some(Slot::V(v, d)) => Ok((v, d)),
            Some(Slot::Mark) => Err(PickleError::Malformed(format!("{op}: unexpected MARK on the stack"))),
            None => Err(PickleError::Malformed(format!("{op}: stack underflow"))),
        }
    }
    fn top(&mut self, op: &str) -> Result<(&mut Value, &mut u32), PickleError> {
        match self.stack.last_mut() {
            Some(Slot::V(v, d)) => Ok((v, d)),
            _ => Err(PickleError::Malformed(format!("{op}: no value on the stack"))),
        }
    }
    /// Pop everything above the last MARK (and the MARK); also returns the deepest item's depth.
    fn pop_mark(&mut self, op: &str) -> Result<(Vec<Value>, u32), PickleError> {
        let mark = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or_else(|| PickleError::Malformed(format!("{op}: no MARK")))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        let mut depth = 0;
        let values = items
            .into_iter()
            .filter_map(|s| match s {
                Slot::V(v, d) => {
                    depth = depth.max(d);
                    Some(v)
                }
                // `rposition` found the last MARK, so none follows it.
                Slot::Mark => None,
            })
            .collect();
        Ok((values, depth))
    }
    /// Push a new value of the given depth (counted as one node).
    fn push(&mut self, v: Value, depth: u32) -> Result<(), PickleError> {
        self.count(1)?;
        self.stack.push(Slot::V(v, depth));
        Ok(())
    }
    /// Push a new container holding items of depth at most `inner`.
    fn push_container(&mut self, op: &str, v: Value, inner: u32) -> Result<(), PickleError> {
        let depth = inner + 1;
        if depth > MAX_DEPTH {
            return Err(too_deep(op));
        }
        self.push(v, depth)
    }
    /// Adds items of depth at most `inner` to the container on top of the stack.
    fn grow_top(&mut self, op: &str, inner: u32) -> Result<&mut Value, PickleError> {
        let (v, d) = self.top(op)?;
        let depth = (*d).max(inner + 1);
        if depth > MAX_DEPTH {
            return Err(too_deep(op));
        }
        *d = depth;
        Ok(v)
    }
    // Depth is bounded, so `weight` and `clone` below recurse at most MAX_DEPTH levels.
    fn put(&mut self, idx: u32) -> Result<(), PickleError> {
        let w = self.top("PUT")?.0.weight();
        self.count(w)?;
        let (v, d) = self.top("PUT")?;
        let copy = (v.clone(), *d);
        self.memo.insert(idx, copy);
        Ok(())
    }
    fn get(&mut self, idx: u32) -> Result<(), PickleError> {
        let unknown = || PickleError::Malformed(format!("GET of unknown memo index {idx}"));
        let w = self.memo.get(&idx).ok_or_else(unknown)?.0.weight();
        self.count(w)?;
        let (v, d) = self.memo.get(&idx).cloned().ok_or_else(unknown)?;
        self.stack.push(Slot::V(v, d));
        Ok(())
    }
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
            if size.len() > MAX_RANK {
                return Err(PickleError::Malformed(format!(
                    "tensor of rank {} (at most {MAX_RANK} supported)",
                    size.len()
                )));
            }
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
            b']' => m.push(Value::List(Vec::new()), 1)?,
            b'}' => m.push(Value::Dict(Vec::new()), 1)?,
            b')' => m.push(Value::Tuple(Vec::new()), 1)?,
            b'(' => {
                // MARKs count as nodes too: a pickle of nothing but MARKs must not fill memory.
                m.count(1)?;
                m.stack.push(Slot::Mark);
            }
            b'e' => {
                // APPENDS
                let (items, inner) = m.pop_mark("APPENDS")?;
                match m.grow_top("APPENDS", inner)? {
                    Value::List(l) => l.extend(items),
                    other => return Err(PickleError::Malformed(format!("APPENDS to a {}", other.kind()))),
                }
            }
            b'a' => {
                // APPEND (a one-element list)
                let (item, inner) = m.pop("APPEND")?;
                match m.grow_top("APPEND", inner)? {
                    Value::List(l) => l.push(item),
                    other => return Err(PickleError::Malformed(format!("APPEND to a {}", other.kind()))),
                }
            }
            b's' => {
                // SETITEM (a one-entry dict)
                let (v, dv) = m.pop("SETITEM")?;
                let (k, dk) = m.pop("SETITEM")?;
                match m.grow_top("SETITEM", dv.max(dk))? {
                    Value::Dict(d) => d.push((k, v)),
                    other => return Err(PickleError::Malformed(format!("SETITEM on a {}", other.kind()))),
                }
            }
            b'u' => {
                // SETITEMS
                let (items, inner) = m.pop_mark("SETITEMS")?;
                if items.len() % 2 != 0 {
                    return Err(PickleError::Malformed("SETITEMS with an odd number of items".into()));
                }
                match m.grow_top("SETITEMS", inner)? {
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
                m.push(Value::Global(global_from(module, name)?), 0)?;
            }
            b'Q' => {
                // BINPERSID
                let (pid, _) = m.pop("BINPERSID")?;
                m.push(persistent_load(pid)?, 0)?;
            }
            b'X' => {
                // BINUNICODE
                let n = r.u32()? as usize;
                let s = std::str::from_utf8(r.take(n)?)
                    .map_err(|_| PickleError::Malformed("BINUNICODE is not UTF-8".into()))?;
                m.count(n / 64)?;
                m.push(Value::Str(s.to_string()), 0)?;
            }
            b'K' => {
                let v = r.u8()?;
                m.push(Value::Int(v as i64), 0)?;
            }
            b'M' => {
                let v = r.u16()?;
                m.push(Value::Int(v as i64), 0)?;
            }
            b'J' => {
                let v = r.u32()? as i32;
                m.push(Value::Int(v as i64), 0)?;
            }
            b't' => {
                let (items, inner) = m.pop_mark("TUPLE")?;
                m.push_container("TUPLE", Value::Tuple(items), inner)?;
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                let mut inner = 0;
                for _ in 0..n {
                    let (v, d) = m.pop("TUPLEn")?;
                    inner = inner.max(d);
                    items.push(v);
                }
                items.reverse();
                m.push_container("TUPLEn", Value::Tuple(items), inner)?;
            }
            0x88 => m.push(Value::Bool(true), 0)?,
            0x89 => m.push(Value::Bool(false), 0)?,
            b'R' => {
                let (args, _) = m.pop("REDUCE")?;
                let (callable, _) = m.pop("REDUCE")?;
                let v = reduce(callable, args)?;
                // A rebuilt tensor or an empty OrderedDict.
                let depth = u32::from(matches!(v, Value::Dict(_) | Value::Tensor(_)));
                m.push(v, depth)?;
            }
            b'b' => {
                // BUILD: only the instance dict `nn.Module.state_dict()` attaches to its OrderedDict (a
                // `_metadata` attribute of per-module versions) is accepted, and dropped; no object is built.
                let (state, _) = m.pop("BUILD")?;
                let metadata_only = matches!(&state, Value::Dict(items)
                    if items.iter().all(|(k, _)| matches!(k, Value::Str(s) if s == "_metadata")));
                match m.top("BUILD")?.0 {
                    Value::Dict(_) if metadata_only => {}
                    other => {
                        return Err(PickleError::Unsafe(format!(
                            "BUILD at byte {at} sets the state of a {} (only a state dict's `_metadata` is \
                             accepted)",
                            other.kind()
                        )))
                    }
                }
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
                let (v, _) = m.pop("STOP")?;
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
