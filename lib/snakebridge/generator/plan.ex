defmodule SnakeBridge.Generator.ModulePlan do
  @moduledoc false
  # One module the generator writes, as the core planned it (mirrored by the NIF's
  # `types.rs` from `snakebridge_core::plan::ModulePlan`).

  @type t :: %__MODULE__{
          name: module(),
          moduledoc: String.t(),
          kind: :functions | :class,
          python: String.t(),
          integration: String.t(),
          functions: [SnakeBridge.Generator.FunctionPlan.t()]
        }

  @enforce_keys [:name, :moduledoc, :kind, :python, :integration, :functions]
  defstruct @enforce_keys
end

defmodule SnakeBridge.Generator.FunctionPlan do
  @moduledoc false
  # One function (and its bang variant, unless it streams) the generator writes.

  @type t :: %__MODULE__{
          name: atom(),
          kind: :function | :constructor | :instance | :method | :getter | :setter,
          target: String.t(),
          args: [atom()],
          arg_types: [String.t()],
          varargs: atom() | nil,
          return_type: String.t(),
          doc: String.t(),
          streaming: boolean(),
          timeout: {:ms, pos_integer()} | :infinity | nil,
          idempotent: boolean(),
          cache: :forever | {:ttl_ms, pos_integer()} | nil
        }

  @enforce_keys [
    :name,
    :kind,
    :target,
    :args,
    :arg_types,
    :varargs,
    :return_type,
    :doc,
    :streaming,
    :timeout,
    :idempotent,
    :cache
  ]
  defstruct @enforce_keys
end
