//! Tensors ⇄ numpy arrays without copying their data.
//!
//! A tensor's bytes arrive as a slice of the received gRPC message; [`to_numpy`] wraps them
//! in a [`TensorBuffer`] (a read-only buffer-protocol object) and `np.frombuffer` views
//! it, so the array Python gets is the message's memory. [`from_numpy`] turns an ndarray
//! into a tensor whose data is the array's own buffer (made C-contiguous and native-endian
//! first, by `snakebridge_agent.tensors`), held until it is sent. numpy scalars become
//! plain values. numpy is never imported here: an object can only be an array once the
//! program imported numpy itself.

use std::ffi::{c_int, c_void};

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use snakebridge_core::bytes::Bytes;
use snakebridge_core::value::{DType, Tensor};

/// A read-only buffer over a tensor's bytes, for `np.frombuffer`.
#[pyclass(frozen, module = "snakebridge_agent._native")]
pub struct TensorBuffer {
    data: Bytes,
}

#[pymethods]
impl TensorBuffer {
    /// The buffer protocol: one read-only, contiguous run of bytes (format `B`).
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let data = &slf.get().data;
        let len = ffi::Py_ssize_t::try_from(data.len())
            .map_err(|_| PyTypeError::new_err("tensor data is too large for a buffer"))?;
        // SAFETY: `view` comes from the interpreter; FillInfo keeps a reference to `slf`,
        // which owns the bytes, for as long as the view lives.
        let status = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                data.as_ptr() as *mut c_void,
                len,
                1,
                flags,
            )
        };
        if status == -1 {
            Err(PyErr::fetch(slf.py()))
        } else {
            Ok(())
        }
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
        let (dtype, shape, flat): (String, Vec<u64>, Bound<'py, PyAny>) = parts.extract()?;
        let dtype = DType::from_name(&dtype)
            .ok_or_else(|| PyTypeError::new_err(format!("unsupported dtype {dtype}")))?;
        let buffer = PyBuffer::<u8>::get(&flat)?;
        let data = Bytes::from_owner(ArrayBytes(buffer));
        return Tensor::new(dtype, shape, data)
            .map(Numpy::Tensor)
            .map_err(PyTypeError::new_err);
    }
    if obj.is_instance(generic.bind(py))? {
        return Ok(Numpy::Scalar(obj.call_method0(pyo3::intern!(py, "item"))?));
    }
    Ok(Numpy::No)
}

/// An array's buffer, held (and the array with it) until the bytes were sent.
struct ArrayBytes(PyBuffer<u8>);

impl AsRef<[u8]> for ArrayBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: a C-contiguous uint8 buffer of `len_bytes` bytes at `buf_ptr`, kept valid
        // by the buffer (which holds the array) for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.0.buf_ptr() as *const u8, self.0.len_bytes()) }
    }
}
