defmodule SnakeBridge do
  @moduledoc """
  Use any Python library from Elixir.

  SnakeBridge runs a supervised pool of Python worker processes (started by the
  `:snakebridge` application, see `SnakeBridge.Pool`) and calls into them through a Rust
  core. Values convert both ways:

  | Elixir | Python |
  |---|---|
  | integer (any size) | `int` |
  | float, `:nan`, `:infinity`, `:neg_infinity` | `float` |
  | `nil`, `true`, `false` | `None`, `True`, `False` |
  | other atom | `str` |
  | UTF-8 binary | `str` |
  | `%SnakeBridge.Bytes{}`, non-UTF-8 binary | `bytes` (Python `bytes` come back as binaries) |
  | list / tuple / map / `MapSet` | `list` / `tuple` / `dict` / `set` (map keys keep their types) |
  | `Date`, `Time`, `NaiveDateTime`, `DateTime` | `datetime.date`, `time`, naive / aware `datetime` |
  | `%SnakeBridge.Tensor{}`, `Nx.Tensor` | `numpy.ndarray` (raw bytes, no per-element work) |
  | function, `{module, function, arity}` | a Python callable that runs it in the BEAM |
  | `%SnakeBridge.Ref{}` | the live object it stands for; any other Python object comes back as one |

  Aware Python datetimes come back as UTC `DateTime`s. Pids, ports and references cannot
  cross: passing one raises `ArgumentError` naming where it is (`args[1][:opts]`). So does
  a map whose keys Python would hold as one key (`%{:a => 1, "a" => 2}`, or `1` and `1.0`,
  or `true` and `1`), a `MapSet` whose members would be one, and a keyword argument given
  twice: nothing is dropped silently.

  ## Examples

      {:ok, 3.0} = SnakeBridge.call("math", "sqrt", [9])
      {:ok, "a,b"} = SnakeBridge.call("builtins", "str.join", [",", ["a", "b"]])
      {:ok, ~s({"a": 1})} = SnakeBridge.call("json", "dumps", [%{"a" => 1}])
      {:ok, "[1,2]"} = SnakeBridge.call("json", "dumps", [[1, 2]], separators: {",", ":"})

      {:ok, path} = SnakeBridge.call("pathlib", "Path", ["/tmp/data.csv"])
      path                                   #=> #SnakeBridge.Ref<pathlib.PosixPath PosixPath('/tmp/data.csv')>
      {:ok, ".csv"} = SnakeBridge.get_attr(path, :suffix)
      {:ok, parent} = SnakeBridge.call_method(path, :with_suffix, [".json"])
  """

  alias SnakeBridge.Runtime

  @doc """
  Calls `module.function(*args, **kwargs)` in a Python worker.

  `module` is a Python module path (`"os.path"`, or an atom) and `function` a name inside
  it, which may itself be dotted (`"str.join"`). `kwargs` is a keyword list or a map with
  atom or string keys.

  ## Options

    * `:timeout` - milliseconds to wait, or `:infinity` (default: the pool's `:timeout`,
      30 seconds unless configured). On timeout the call is cancelled and
      `{:error, %SnakeBridge.Error{reason: :timeout}}` returned.
    * `:pool` - name of the pool to use (default `SnakeBridge.Pool`).

  Returns `{:ok, result}` or `{:error, %SnakeBridge.Error{}}`; a Python exception is
  `{:error, %SnakeBridge.Error{reason: :python_exception, python: %SnakeBridge.PythonError{}}}`.
  Raises `ArgumentError` when an argument cannot be sent to Python.
  """
  @spec call(Runtime.module_name(), Runtime.function_name(), list(), keyword() | map(), keyword()) ::
          {:ok, term()} | {:error, SnakeBridge.Error.t()}
  defdelegate call(module, function, args \\ [], kwargs \\ [], opts \\ []), to: Runtime

  @doc """
  Like `call/5` but returns the result directly, raising `SnakeBridge.PythonError` when
  Python raised and `SnakeBridge.Error` for any other failure.
  """
  @spec call!(Runtime.module_name(), Runtime.function_name(), list(), keyword() | map(), keyword()) ::
          term()
  defdelegate call!(module, function, args \\ [], kwargs \\ [], opts \\ []), to: Runtime

  @doc """
  Calls `module.function(*args, **kwargs)` and returns what it yields (a generator,
  iterator, async generator or any iterable) as a lazy `Stream`, element by element.

  Nothing runs until the stream is enumerated. At most `:window` elements (default 16)
  are produced ahead of the consumer; halting early (`Enum.take/2`) closes the Python
  generator; a Python exception mid-stream raises `SnakeBridge.PythonError` at the point
  of consumption. `:timeout` bounds the wait for each element; `:pool` as in `call/5`.

      SnakeBridge.stream("itertools", "count", [1]) |> Enum.take(3)
      #=> [1, 2, 3]
  """
  @spec stream(Runtime.module_name(), Runtime.function_name(), list(), keyword() | map(), keyword()) ::
          Enumerable.t()
  defdelegate stream(module, function, args \\ [], kwargs \\ [], opts \\ []), to: Runtime

  @doc """
  Calls method `name` of the Python object behind `ref` (`obj.name(*args, **kwargs)`),
  on the worker that holds it. Options as for `call/5`.
  """
  @spec call_method(
          SnakeBridge.Ref.t(),
          Runtime.function_name(),
          list(),
          keyword() | map(),
          keyword()
        ) ::
          {:ok, term()} | {:error, SnakeBridge.Error.t()}
  defdelegate call_method(ref, name, args \\ [], kwargs \\ [], opts \\ []), to: Runtime

  @doc "Like `call_method/5`, but returns the value or raises."
  @spec call_method!(
          SnakeBridge.Ref.t(),
          Runtime.function_name(),
          list(),
          keyword() | map(),
          keyword()
        ) ::
          term()
  defdelegate call_method!(ref, name, args \\ [], kwargs \\ [], opts \\ []), to: Runtime

  @doc "Reads attribute `name` of the Python object behind `ref`."
  @spec get_attr(SnakeBridge.Ref.t(), Runtime.function_name(), keyword()) ::
          {:ok, term()} | {:error, SnakeBridge.Error.t()}
  defdelegate get_attr(ref, name, opts \\ []), to: Runtime

  @doc "Like `get_attr/3`, but returns the value or raises."
  @spec get_attr!(SnakeBridge.Ref.t(), Runtime.function_name(), keyword()) :: term()
  defdelegate get_attr!(ref, name, opts \\ []), to: Runtime

  @doc "Sets attribute `name` of the Python object behind `ref` to `value`."
  @spec set_attr(SnakeBridge.Ref.t(), Runtime.function_name(), term(), keyword()) ::
          :ok | {:error, SnakeBridge.Error.t()}
  defdelegate set_attr(ref, name, value, opts \\ []), to: Runtime

  @doc """
  Runs `module.function(*args, **kwargs)` on every live worker of the pool (for global
  state such as `dspy.configure`). See `SnakeBridge.Runtime.broadcast/5`.
  """
  @spec broadcast(
          Runtime.module_name(),
          Runtime.function_name(),
          list(),
          keyword() | map(),
          keyword()
        ) ::
          {:ok, %{pos_integer() => term()}} | {:error, SnakeBridge.Error.t()}
  defdelegate broadcast(module, function, args \\ [], kwargs \\ [], opts \\ []), to: Runtime

  @doc "The pool's counters (calls, errors, latency histogram, cache, sessions, workers)."
  @spec stats(atom()) :: map() | {:error, SnakeBridge.Error.t()}
  defdelegate stats(pool \\ SnakeBridge.Pool), to: Runtime

  @doc """
  Releases the Python object behind `ref` now rather than when the reference is
  garbage-collected; using it afterwards gives `{:error, %SnakeBridge.Error{reason: :stale_ref}}`.
  """
  @spec release(SnakeBridge.Ref.t()) :: :ok
  defdelegate release(ref), to: Runtime
end
