defmodule SnakeBridge.PythonError do
  @moduledoc """
  A Python exception raised by a call, as raised by `SnakeBridge.call!/5`.

  Fields: `type` (class name, e.g. `"ZeroDivisionError"`), `module` (the class's module,
  e.g. `"builtins"`), `mro` (qualified names of the class and its bases, most derived
  first, so `"builtins.ArithmeticError" in e.mro` matches subclasses), `message`
  (`str(exc)`), `traceback` (formatted as Python prints it) and `target` (what was called).
  """

  defexception [:type, :module, :mro, :message, :traceback, :target]

  @type t :: %__MODULE__{
          type: String.t(),
          module: String.t(),
          mro: [String.t()],
          message: String.t(),
          traceback: String.t(),
          target: String.t() | nil
        }

  @impl true
  def message(%__MODULE__{} = e) do
    qualified = if e.module in [nil, "", "builtins"], do: e.type, else: "#{e.module}.#{e.type}"
    where = if e.target, do: " in #{e.target}", else: ""
    "#{qualified}#{where}: #{e.message}\n\n#{e.traceback}"
  end

  # Python base classes with an Elixir exception of the same meaning (the first match in
  # the exception's mro wins, so subclasses such as json.JSONDecodeError map too).
  @elixir_equivalents [
    {"builtins.KeyError", :key_error},
    {"builtins.TimeoutError", :timeout},
    {"builtins.ZeroDivisionError", :arithmetic},
    {"builtins.ArithmeticError", :arithmetic},
    {"builtins.ValueError", :argument},
    {"builtins.TypeError", :argument},
    {"builtins.RuntimeError", :runtime}
  ]

  @doc """
  The Elixir exception that means the same as this Python exception, where one fits:
  `KeyError` for `KeyError`; `ArgumentError` for `ValueError` and `TypeError`;
  `ArithmeticError` for `ZeroDivisionError` and other `ArithmeticError`s; a
  `SnakeBridge.Error` with reason `:timeout` for `TimeoutError`; `RuntimeError` for
  `RuntimeError`. Subclasses map like their base. Any other exception is returned as it
  is. The Python type and traceback stay in the message.

  `SnakeBridge.call!/5` raises the mapped exception when given `errors: :elixir`.

  ## Examples

      iex> e = %SnakeBridge.PythonError{type: "ValueError", module: "builtins",
      ...>   mro: ["builtins.ValueError", "builtins.Exception"], message: "bad", traceback: ""}
      iex> SnakeBridge.PythonError.to_elixir(e)
      %ArgumentError{message: "bad (Python ValueError)"}
  """
  @spec to_elixir(t()) :: Exception.t()
  def to_elixir(%__MODULE__{mro: mro} = e) do
    kind =
      Enum.find_value(@elixir_equivalents, fn {base, kind} -> if base in (mro || []), do: kind end)

    message = "#{e.message} (Python #{e.type})"

    case kind do
      :key_error -> %KeyError{key: e.message, message: message}
      :timeout -> SnakeBridge.Error.new(:timeout, message, e.target)
      :arithmetic -> %ArithmeticError{message: message}
      :argument -> %ArgumentError{message: message}
      :runtime -> %RuntimeError{message: message}
      nil -> e
    end
  end

  @doc false
  @spec from_native(map(), String.t() | nil) :: t()
  def from_native(map, target) do
    %__MODULE__{
      type: map.type,
      module: map.module,
      mro: map.mro,
      message: map.message,
      traceback: map.traceback,
      target: target
    }
  end
end
