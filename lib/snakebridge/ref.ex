defmodule SnakeBridge.Ref do
  @moduledoc """
  A live Python object that stays in its worker.

  A call whose result is not plain data (see `SnakeBridge`) returns a `%SnakeBridge.Ref{}`
  instead: `type` is the object's `module.qualname`, `repr` its (shortened) `repr()`.
  Use it with `SnakeBridge.call_method/5`, `SnakeBridge.get_attr/3`,
  `SnakeBridge.set_attr/4`, or pass it back as an argument of any call.

  The object lives as long as the BEAM holds the reference: when the last copy of the
  term is garbage-collected, the object is released in Python (in batches).
  `SnakeBridge.release/1` releases it at once. A reference whose worker died, or that was
  released, gives `{:error, %SnakeBridge.Error{reason: :stale_ref}}`.

  The object is pinned to the worker that holds it: calls using it run there.
  """

  @enforce_keys [:resource, :type, :repr, :worker_pid, :pool]
  defstruct [:resource, :type, :repr, :worker_pid, :pool]

  @type t :: %__MODULE__{
          resource: reference(),
          type: String.t(),
          repr: String.t(),
          worker_pid: pos_integer(),
          pool: atom()
        }

  @doc "Whether the object can still be used (not released, and its worker is alive)."
  @spec alive?(t()) :: boolean()
  def alive?(%__MODULE__{resource: resource}), do: SnakeBridge.Native.ref_alive(resource)

  defimpl Inspect do
    def inspect(%SnakeBridge.Ref{type: type, repr: repr}, _opts) do
      "#SnakeBridge.Ref<#{type} #{repr}>"
    end
  end
end
