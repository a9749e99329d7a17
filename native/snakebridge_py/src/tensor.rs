//! Tensors ⇄ numpy arrays without copying their data.
//!
//! A tensor's bytes arrive as a slice of the received message; [`to_numpy`] wraps them in
//! a [`TensorBuffer`] and numpy views it through the array interface
//! (`__array_interface__`, read-only), so the array Python gets is the message's memory and
//! keeps the buffer alive as its base. [`from_numpy`] turns an ndarray into a tensor whose
//! data is the array's own memory (made C-contiguous and native-endian first, by
//! `snakebridge_agent.tensors`), held with the array until it is sent. numpy scalars
//! become plain values. numpy is never imported here: an object can only be an array once
//! the program imported numpy itself.
//!
//! Both directions avoid the C buffer protocol on purpose: the extension is built for the
//! stable ABI of CPython 3.10, where neither exporting nor reading a buffer is part of it.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use snakebridge_core::bytes::Bytes;
use snakebridge_core::value::{DType, Tensor};

/// A tensor's bytes, read-only, for numpy's array interface.
#[pyclass(frozen, module = "snakebridge_agent._native")]
pub struct TensorBuffer {
    data: Bytes,
}

/// The length only, not the bytes.
impl std::fmt::Debug for TensorBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorBuffer")
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

#[pymethods]
impl TensorBuffer {
    /// numpy's array interface (version 3): one read-only, contiguous run of `uint8`. The
    /// array numpy makes from it holds this object, which owns the bytes.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let interface = PyDict::new(py);
        interface.set_item("version", 3)?;
        interface.set_item("typestr", "|u1")?;
        interface.set_item("shape", (self.data.len(),))?;
        interface.set_item("data", (self.data.as_ptr() as usize, true))?;
        Ok(interface)
    }

    fn __len__(&self) -> usize {
        self.data.len()
    }
}

/// `snakebridge_agent.tensors`, imported once.
fn tensors(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || {
            py.import("snakebridge_agent.tensors").map(Bound::unbind)
        })
        .map(|m| m.bind(py))
}

/// The numpy array for a tensor: a read-only view of its bytes.
pub fn to_numpy<'py>(py: Python<'py>, tensor: &Tensor) -> PyResult<Bound<'py, PyAny>> {
    let buffer = Bound::new(
        py,
        TensorBuffer {
            data: tensor.data.clone(),
        },
    )?;
    let shape = PyTuple::new(py, &tensor.shape)?;
    tensors(py)?.call_method1("to_numpy", (buffer, tensor.dtype.name(), shape))
}

/// numpy's `ndarray` and `generic` (scalar) types, once the program imported numpy.
fn numpy_types(py: Python<'_>) -> Option<&(Py<PyType>, Py<PyType>)> {
    static TYPES: PyOnceLock<(Py<PyType>, Py<PyType>)> = PyOnceLock::new();
    if let Some(types) = TYPES.get(py) {
        return Some(types);
    }
    let modules = py.import("sys").ok()?.getattr("modules").ok()?;
    let numpy = modules.cast::<PyDict>().ok()?.get_item("numpy").ok()??;
    let ndarray = numpy.getattr("ndarray").ok()?.cast_into::<PyType>().ok()?;
    let generic = numpy.getattr("generic").ok()?.cast_into::<PyType>().ok()?;
    Some(TYPES.get_or_init(py, || (ndarray.unbind(), generic.unbind())))
}

/// What a numpy object becomes.
pub enum Numpy<'py> {
    /// Not a numpy object (or numpy is not loaded).
    No,
    /// An array of a dtype tensors have.
    Tensor(Tensor),
    /// A numpy scalar: the Python scalar it holds (to convert as such).
    Scalar(Bound<'py, PyAny>),
    /// An array tensors cannot carry (object, strings, records): it stays in Python.
    Unsupported,
}

/// A tensor's dtype and shape, not its bytes; a scalar's variant, not its value (that
/// would run Python code).
impl std::fmt::Debug for Numpy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Numpy::No => f.write_str("No"),
            Numpy::Tensor(tensor) => f
                .debug_struct("Tensor")
                .field("dtype", &tensor.dtype)
                .field("shape", &tensor.shape)
                .finish_non_exhaustive(),
            Numpy::Scalar(_) => f.debug_tuple("Scalar").finish_non_exhaustive(),
            Numpy::Unsupported => f.write_str("Unsupported"),
        }
    }
}

/// Classifies `obj` as a numpy array or scalar.
pub fn from_numpy<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Numpy<'py>> {
    let py = obj.py();
    let Some((ndarray, generic)) = numpy_types(py) else {
        return Ok(Numpy::No);
    };
    if obj.is_instance(ndarray.bind(py))? {
        let parts = tensors(py)?.call_method1("from_numpy", (obj,))?;
        if parts.is_none() {
            return Ok(Numpy::Unsupported);
        }
        let (dtype, shape, array, address, len): (String, Vec<u64>, Py<PyAny>, usize, usize) =
            parts.extract()?;
        let dtype = DType::from_name(&dtype)
            .ok_or_else(|| PyTypeError::new_err(format!("unsupported dtype {dtype}")))?;
        let data = Bytes::from_owner(ArrayBytes {
            ptr: address as *const u8,
            len,
            _array: array,
        });
        return Tensor::new(dtype, shape, data)
            .map(Numpy::Tensor)
            .map_err(PyTypeError::new_err);
    }
    if obj.is_instance(generic.bind(py))? {
        return Ok(Numpy::Scalar(obj.call_method0(pyo3::intern!(py, "item"))?));
    }
    Ok(Numpy::No)
}

/// An array's memory, held (with the array) until the bytes were sent.
struct ArrayBytes {
    ptr: *const u8,
    len: usize,
    _array: Py<PyAny>,
}

// SAFETY: the array is C-contiguous and owns (or views) `len` bytes at `ptr`; the
// reference held here keeps that memory alive and numpy refuses to resize an array that
// others reference. Dropping a `Py` without the GIL defers the decref safely.
unsafe impl Send for ArrayBytes {}

impl AsRef<[u8]> for ArrayBytes {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: see the `Send` impl.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}
