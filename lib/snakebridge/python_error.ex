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
