//! Values ⇄ Python objects.
//!
//! [`to_python`] turns a decoded [`Value`] into the Python object a callee receives;
//! [`from_python`] turns what Python returned into a [`Value`] the codec can encode. Both
//! walk the value recursively, keep a [`Path`] to the part being converted and refuse
//! nesting deeper than [`MAX_DEPTH`], so every failure names exactly which part of the
//! value could not cross (`result[2]["x"]: cannot send an object of type ...`).

use num_bigint::BigInt;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDate, PyDateAccess, PyDateTime, PyDelta, PyDict, PyFloat,
    PyFrozenSet, PyInt, PyList, PyMemoryView, PySet, PyString, PyTime, PyTimeAccess, PyTuple,
    PyTzInfo, PyTzInfoAccess,
};
use snakebridge_core::codec::{Budget, CodecError};
use snakebridge_core::value::{Date, ObjectRef, Path, Segment, Time, Value, MAX_DEPTH};

use std::sync::Arc;

use crate::callback::{ElixirFunction, Link};
use crate::registry;
use crate::tensor::{self, Numpy};

/// Longest `repr()` carried with an object reference, in characters.
const REPR_LIMIT: usize = 200;

/// A value that could not be converted; the message starts with the path of the part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    /// What went wrong, starting with the path of the part.
    pub message: String,
    /// The value referred to an object this worker does not hold.
    pub unknown_ref: bool,
    /// The value holds more than its budget allows (see [`from_python`]).
    pub too_large: bool,
}

impl ConvertError {
    fn at(path: &Path, what: impl std::fmt::Display) -> Self {
        ConvertError {
            message: format!("{path}: {what}"),
            unknown_ref: false,
            too_large: false,
        }
    }

    #[cold]
    fn over_budget(path: &Path, err: CodecError) -> Self {
        ConvertError {
            too_large: err.is_too_large(),
            ..ConvertError::at(path, err)
        }
    }

    fn too_deep(path: &Path) -> Self {
        ConvertError::at(
            path,
            format!("value is nested more than {MAX_DEPTH} levels deep"),
        )
    }
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

type Converted<T> = Result<T, ConvertError>;

// ---------------------------------------------------------------------------------------
// Value -> Python

/// Converts `value` into a Python object; `path` names it in errors (`args[0]`).
///
/// `crossing` says how the call's values cross (see [`Crossing`]).
pub fn to_python<'py>(
    py: Python<'py>,
    value: &Value,
    path: &mut Path,
    crossing: &Crossing,
) -> Converted<Bound<'py, PyAny>> {
    to_python_at(py, value, path, 0, crossing)
}

fn to_python_at<'py>(
    py: Python<'py>,
    value: &Value,
    path: &mut Path,
    depth: usize,
    crossing: &Crossing,
) -> Converted<Bound<'py, PyAny>> {
    if depth > MAX_DEPTH {
        return Err(ConvertError::too_deep(path));
    }
    let python_error = |path: &Path, err: PyErr| ConvertError::at(path, err);
    Ok(match value {
        Value::Nil => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(n) => PyInt::new(py, *n).into_any(),
        Value::BigInt(n) => n
            .into_pyobject(py)
            .map_err(|e| python_error(path, e))?
            .into_any(),
        Value::Float(f) => PyFloat::new(py, *f).into_any(),
        Value::Str(s) => PyString::new(py, s).into_any(),
        Value::Bytes(b) => PyBytes::new(py, b).into_any(),
        Value::List(items) => {
            let converted = sequence_to_python(py, items, path, depth, crossing)?;
            PyList::new(py, converted)
                .map_err(|e| python_error(path, e))?
                .into_any()
        }
        Value::Tuple(items) => {
            let converted = sequence_to_python(py, items, path, depth, crossing)?;
            PyTuple::new(py, converted)
                .map_err(|e| python_error(path, e))?
                .into_any()
        }
        Value::Set(items) => {
            let set = PySet::empty(py).map_err(|e| python_error(path, e))?;
            for (index, item) in items.iter().enumerate() {
                path.push(Segment::Index(index));
                let element = to_python_at(py, item, path, depth + 1, crossing)?;
                set.add(&element)
                    .map_err(|e| unhashable(py, path, &element, e))?;
                path.pop();
            }
            set.into_any()
        }
        Value::Map(entries) => map_to_python(py, entries, path, depth, crossing)?.into_any(),
        Value::Date(d) => date_to_python(py, d).map_err(|e| python_error(path, e))?,
        Value::Time(t) => PyTime::new(py, t.hour, t.minute, t.second, t.microsecond, None)
            .map_err(|e| python_error(path, e))?
            .into_any(),
        Value::NaiveDateTime(d, t) => {
            datetime_to_python(py, d, t, None).map_err(|e| python_error(path, e))?
        }
        Value::DateTime(d, t, offset) => {
            let tz = timezone(py, *offset).map_err(|e| python_error(path, e))?;
            datetime_to_python(py, d, t, Some(&tz)).map_err(|e| python_error(path, e))?
        }
        Value::Ref(r) => registry::get(py, r.id).ok_or_else(|| ConvertError {
            unknown_ref: true,
            too_large: false,
            ..ConvertError::at(
                path,
                format!(
                    "this worker holds no object {} (it was released, or belongs to another worker)",
                    r.id
                ),
            )
        })?,
        Value::Callback(id) => Bound::new(py, ElixirFunction::new(*id, crossing.clone()))
            .map_err(|e| python_error(path, e))?
            .into_any(),
        Value::Tensor(t) => {
            let array = tensor::to_numpy(py, t).map_err(|e| python_error(path, e))?;
            if crossing.tensors_as_lists {
                array
                    .call_method0(pyo3::intern!(py, "tolist"))
                    .map_err(|e| python_error(path, e))?
            } else {
                array
            }
        }
    })
}

/// How one call's values cross: the connection Elixir functions call back through,
/// whether tensors cross as nested lists (`serialization.tensor_passthrough: false`: tensor
/// arguments reach Python as lists, numpy arrays in results come back as lists), and the
/// session the objects it registers belong to. Passed along explicitly, never kept per
/// thread: an Elixir function that crosses keeps the crossing of the call it came with.
#[derive(Debug, Clone)]
pub struct Crossing {
    /// The connection Elixir functions call back through.
    pub link: Arc<Link>,
    /// Whether tensors cross as nested lists.
    pub tensors_as_lists: bool,
    /// The session objects registered during the call belong to, if any.
    pub session: Option<Arc<str>>,
}

/// Stores `obj` in the registry (in the crossing's session) and returns the reference
/// that stands for it.
pub fn to_ref(obj: &Bound<'_, PyAny>, crossing: &Crossing) -> Value {
    let repr = match obj.repr() {
        Ok(repr) => shorten(&repr.to_string_lossy()),
        Err(_) => format!("<{} object>", type_name(obj)),
    };
    Value::Ref(ObjectRef {
        id: registry::register(obj, crossing.session.clone()),
        type_name: type_name(obj),
        repr,
    })
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(REPR_LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn sequence_to_python<'py>(
    py: Python<'py>,
    items: &[Value],
    path: &mut Path,
    depth: usize,
    crossing: &Crossing,
) -> Converted<Vec<Bound<'py, PyAny>>> {
    let mut converted = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        path.push(Segment::Index(index));
        converted.push(to_python_at(py, item, path, depth + 1, crossing)?);
        path.pop();
    }
    Ok(converted)
}

/// Converts a map; also used for keyword arguments.
pub fn map_to_python<'py>(
    py: Python<'py>,
    entries: &[(Value, Value)],
    path: &mut Path,
    depth: usize,
    crossing: &Crossing,
) -> Converted<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (key, value) in entries {
        path.push(Segment::Key(render_value_key(key)));
        let py_key = to_python_at(py, key, path, depth + 1, crossing)?;
        let py_value = to_python_at(py, value, path, depth + 1, crossing)?;
        dict.set_item(&py_key, py_value)
            .map_err(|e| unhashable(py, path, &py_key, e))?;
        path.pop();
    }
    Ok(dict)
}

fn unhashable(py: Python<'_>, path: &Path, key: &Bound<'_, PyAny>, err: PyErr) -> ConvertError {
    if err.is_instance_of::<pyo3::exceptions::PyTypeError>(py) {
        ConvertError::at(
            path,
            format!(
                "a value of type {} cannot be a Python dict key or set element (unhashable)",
                type_name(key)
            ),
        )
    } else {
        ConvertError::at(path, err)
    }
}

fn date_to_python<'py>(py: Python<'py>, d: &Date) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyDate::new(py, d.year, d.month, d.day)?.into_any())
}

fn datetime_to_python<'py>(
    py: Python<'py>,
    d: &Date,
    t: &Time,
    tz: Option<&Bound<'py, PyTzInfo>>,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyDateTime::new(
        py,
        d.year,
        d.month,
        d.day,
        t.hour,
        t.minute,
        t.second,
        t.microsecond,
        tz,
    )?
    .into_any())
}

/// `timezone.utc` for a zero offset, else `timezone(timedelta(seconds=offset))`.
fn timezone(py: Python<'_>, offset_seconds: i32) -> PyResult<Bound<'_, PyTzInfo>> {
    if offset_seconds == 0 {
        return Ok(PyTzInfo::utc(py)?.to_owned());
    }
    let delta = PyDelta::new(py, 0, offset_seconds, 0, true)?;
    PyTzInfo::fixed_offset(py, delta)
}

/// A map key as it appears in a path, close to how Elixir would show it.
fn render_value_key(key: &Value) -> String {
    match key {
        Value::Str(s) => format!("{s:?}"),
        Value::Int(n) => n.to_string(),
        Value::BigInt(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Nil => "nil".to_owned(),
        Value::Float(f) => f.to_string(),
        other => format!("<{}>", other.kind()),
    }
}

// ---------------------------------------------------------------------------------------
// Python -> Value

/// Converts a Python object into a value; `path` names it in errors (`result`). Each
/// list, tuple, set and dict spends its elements from `budget` before any of them is
/// converted, so that a result of 100 million elements is refused at once (with
/// [`ConvertError::too_large`]) instead of being built.
pub fn from_python(
    obj: &Bound<'_, PyAny>,
    path: &mut Path,
    crossing: &Crossing,
    budget: &mut Budget,
) -> Converted<Value> {
    from_python_at(obj, path, 0, crossing, budget)
}

fn from_python_at(
    obj: &Bound<'_, PyAny>,
    path: &mut Path,
    depth: usize,
    crossing: &Crossing,
    budget: &mut Budget,
) -> Converted<Value> {
    if depth > MAX_DEPTH {
        return Err(ConvertError::too_deep(path));
    }
    let python_error = |path: &Path, err: PyErr| ConvertError::at(path, err);
    // The most common types first; `bool` before `int` (bool is a subclass of int) and
    // `datetime` before `date` (likewise).
    if obj.is_none() {
        return Ok(Value::Nil);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let text = s.to_str().map_err(|e| python_error(path, e))?;
        return Ok(Value::Str(text.to_owned()));
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return match obj.extract::<i64>() {
            Ok(n) => Ok(Value::Int(n)),
            Err(_) => obj
                .extract::<BigInt>()
                .map(Value::integer)
                .map_err(|e| python_error(path, e)),
        };
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        spend(budget, list.len(), path)?;
        let mut items = Vec::with_capacity(list.len());
        for (index, item) in list.iter().enumerate() {
            path.push(Segment::Index(index));
            items.push(from_python_at(&item, path, depth + 1, crossing, budget)?);
            path.pop();
        }
        return Ok(Value::List(items));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        spend(budget, dict.len().saturating_mul(2), path)?;
        let mut entries = Vec::with_capacity(dict.len());
        for (key, value) in dict.iter() {
            path.push(Segment::Key(render_python_key(&key)));
            let key_value = from_python_at(&key, path, depth + 1, crossing, budget)?;
            let value_value = from_python_at(&value, path, depth + 1, crossing, budget)?;
            path.pop();
            entries.push((key_value, value_value));
        }
        return Ok(Value::Map(entries));
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        spend(budget, tuple.len(), path)?;
        let mut items = Vec::with_capacity(tuple.len());
        for (index, item) in tuple.iter().enumerate() {
            path.push(Segment::Index(index));
            items.push(from_python_at(&item, path, depth + 1, crossing, budget)?);
            path.pop();
        }
        return Ok(Value::Tuple(items));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Value::Bytes(bytes_value(b)));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Value::Bytes(b.to_vec().into()));
    }
    if obj.is_instance_of::<PyMemoryView>() {
        let bytes = obj
            .py()
            .get_type::<PyBytes>()
            .call1((obj,))
            .map_err(|e| python_error(path, e))?;
        let bytes = bytes
            .cast::<PyBytes>()
            .map_err(|e| python_error(path, e.into()))?;
        return Ok(Value::Bytes(bytes_value(bytes)));
    }
    if let Ok(set) = obj.cast::<PySet>() {
        return set_items(set.iter(), set.len(), path, depth, crossing, budget).map(Value::Set);
    }
    if let Ok(set) = obj.cast::<PyFrozenSet>() {
        return set_items(set.iter(), set.len(), path, depth, crossing, budget).map(Value::Set);
    }
    if let Ok(dt) = obj.cast::<PyDateTime>() {
        return datetime_from_python(dt).map_err(|e| python_error(path, e));
    }
    if let Ok(d) = obj.cast::<PyDate>() {
        return Ok(Value::Date(date_fields(d)));
    }
    if let Ok(t) = obj.cast::<PyTime>() {
        return Ok(Value::Time(time_fields(t)));
    }
    match tensor::from_numpy(obj).map_err(|e| python_error(path, e))? {
        Numpy::Tensor(_) if crossing.tensors_as_lists => {
            let list = obj
                .call_method0(pyo3::intern!(obj.py(), "tolist"))
                .map_err(|e| python_error(path, e))?;
            return from_python_at(&list, path, depth, crossing, budget);
        }
        Numpy::Tensor(t) => return Ok(Value::Tensor(t)),
        Numpy::Scalar(item) => {
            // A numpy scalar whose item is not a plain value (complex) stays in Python.
            if item.is(obj) || item.is_instance_of::<pyo3::types::PyComplex>() {
                return Ok(to_ref(obj, crossing));
            }
            return from_python_at(&item, path, depth + 1, crossing, budget);
        }
        // An array of objects, strings or records stays in Python.
        Numpy::Unsupported => return Ok(to_ref(obj, crossing)),
        Numpy::No => {}
    }
    // Other buffer-protocol objects (array.array, mmap, ...) cross as their bytes: a
    // memoryview of them is made only for objects that have a buffer (the stable ABI of
    // 3.10 has no cheaper check than trying).
    if !obj.is_instance_of::<tensor::TensorBuffer>() {
        if let Some(bytes) = buffer_bytes(obj) {
            return Ok(Value::Bytes(bytes_value(&bytes)));
        }
    }
    // Anything else stays in this worker and crosses as a reference to it.
    Ok(to_ref(obj, crossing))
}

/// A copy of the bytes of an object with the buffer protocol; `None` for any other object.
fn buffer_bytes<'py>(obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyBytes>> {
    let py = obj.py();
    // SAFETY: `PyMemoryView_FromObject` takes a borrowed object and returns a new
    // reference or NULL with an exception set.
    let view = unsafe { pyo3::ffi::PyMemoryView_FromObject(obj.as_ptr()) };
    if view.is_null() {
        // Not a buffer: forget the TypeError.
        drop(PyErr::take(py));
        return None;
    }
    // SAFETY: a new, non-null reference, now owned.
    let view = unsafe { Bound::from_owned_ptr(py, view) };
    py.get_type::<PyBytes>()
        .call1((view,))
        .ok()?
        .cast_into::<PyBytes>()
        .ok()
}

/// The bytes of a Python `bytes` object: large ones are sent from the object itself
/// (held until sent), small ones copied.
fn bytes_value(bytes: &Bound<'_, PyBytes>) -> snakebridge_core::bytes::Bytes {
    let data = bytes.as_bytes();
    if data.len() < snakebridge_core::codec::msgpack::OUT_OF_BAND_MIN {
        return snakebridge_core::bytes::Bytes::copy_from_slice(data);
    }
    snakebridge_core::bytes::Bytes::from_owner(HeldBytes {
        ptr: data.as_ptr(),
        len: data.len(),
        _object: bytes.clone().unbind(),
    })
}

/// A Python `bytes` object kept alive while its data is sent.
struct HeldBytes {
    ptr: *const u8,
    len: usize,
    _object: Py<PyBytes>,
}

// SAFETY: `bytes` objects are immutable; the pointer stays valid while `_object` holds a
// reference, and dropping a `Py` without the GIL defers the decref safely.
unsafe impl Send for HeldBytes {}

impl AsRef<[u8]> for HeldBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see the `Send` impl.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Spends `n` values of `budget` for the container at `path`.
#[inline]
fn spend(budget: &mut Budget, n: usize, path: &Path) -> Converted<()> {
    budget
        .spend(n)
        .map_err(|err| ConvertError::over_budget(path, err))
}

fn set_items<'py>(
    iter: impl Iterator<Item = Bound<'py, PyAny>>,
    len: usize,
    path: &mut Path,
    depth: usize,
    crossing: &Crossing,
    budget: &mut Budget,
) -> Converted<Vec<Value>> {
    spend(budget, len, path)?;
    let mut items = Vec::with_capacity(len);
    for (index, item) in iter.enumerate() {
        path.push(Segment::Index(index));
        items.push(from_python_at(&item, path, depth + 1, crossing, budget)?);
        path.pop();
    }
    Ok(items)
}

fn date_fields(d: &impl PyDateAccess) -> Date {
    Date {
        year: d.get_year(),
        month: d.get_month(),
        day: d.get_day(),
    }
}

fn time_fields(t: &impl PyTimeAccess) -> Time {
    Time {
        hour: t.get_hour(),
        minute: t.get_minute(),
        second: t.get_second(),
        microsecond: t.get_microsecond(),
    }
}

/// A naive datetime as it is; an aware one converted to UTC.
fn datetime_from_python(dt: &Bound<'_, PyDateTime>) -> PyResult<Value> {
    // A tzinfo whose utcoffset() is None makes the datetime naive, as in Python.
    let aware = match dt.get_tzinfo() {
        None => false,
        Some(_) => !dt
            .call_method0(pyo3::intern!(dt.py(), "utcoffset"))?
            .is_none(),
    };
    if !aware {
        return Ok(Value::NaiveDateTime(date_fields(dt), time_fields(dt)));
    }
    let utc = PyTzInfo::utc(dt.py())?;
    let in_utc = dt.call_method1(pyo3::intern!(dt.py(), "astimezone"), (utc,))?;
    let in_utc = in_utc.cast::<PyDateTime>()?;
    Ok(Value::DateTime(date_fields(in_utc), time_fields(in_utc), 0))
}

/// A dict key as it appears in a path: `"x"` for str, `1` for int, else `repr()`.
fn render_python_key(key: &Bound<'_, PyAny>) -> String {
    if let Ok(s) = key.cast::<PyString>() {
        return format!("{:?}", s.to_string_lossy());
    }
    match key.repr() {
        Ok(repr) => repr.to_string_lossy().into_owned(),
        Err(_) => format!("<{}>", type_name(key)),
    }
}

/// `module.qualname` of the object's type, e.g. `pathlib.PosixPath`.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    let ty = obj.get_type();
    let module = ty
        .module()
        .map(|m| m.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".to_owned());
    let qualname = ty
        .qualname()
        .map(|q| q.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".to_owned());
    format!("{module}.{qualname}")
}
