# The shapes that cross the NIF boundary, typed once: each struct here is mirrored by a
# Rust type with rustler's derives in native/snakebridge_nif/src/types.rs, so a NIF takes
# one struct instead of positional arguments, and a key this module does not define
# cannot reach it. Users never build these: the public modules do.

defmodule SnakeBridge.Native.Encoding do
  @moduledoc false
  # How a call's values are encoded.

  @type codec :: :msgpack | :json
  @type t :: %__MODULE__{args: codec(), result: codec(), tensors_as_lists: boolean()}

  defstruct args: :msgpack, result: :msgpack, tensors_as_lists: false
end

defmodule SnakeBridge.Native.Call do
  @moduledoc false
  # One call, stream or broadcast to make.

  @type op :: :call | :call_method | :get_attr | :set_attr
  @type t :: %__MODULE__{
          pool_name: atom(),
          op: op(),
          target: String.t(),
          args: list(),
          kwargs: keyword() | map(),
          timeout_ms: pos_integer() | nil,
          as_ref: boolean(),
          session: reference() | nil,
          cache: {String.t(), non_neg_integer()} | nil,
          encoding: SnakeBridge.Native.Encoding.t()
        }

  @enforce_keys [:pool_name, :op, :target, :args, :kwargs, :timeout_ms]
  defstruct [
    :pool_name,
    :op,
    :target,
    :args,
    :kwargs,
    :timeout_ms,
    as_ref: false,
    session: nil,
    cache: nil,
    encoding: %SnakeBridge.Native.Encoding{}
  ]
end

defmodule SnakeBridge.Native.PoolOptions do
  @moduledoc false
  # A pool to start, as `SnakeBridge.Pool` resolved and validated its options.

  @type t :: %__MODULE__{
          name: atom(),
          python: String.t(),
          priv_dir: String.t(),
          strict: boolean(),
          start_hint: String.t() | nil,
          size: pos_integer(),
          threads: pos_integer(),
          startup_timeout_ms: pos_integer(),
          max_message_size: pos_integer(),
          max_payload_size: pos_integer(),
          max_result_size: pos_integer(),
          max_elements: pos_integer(),
          carrier: String.t(),
          shared_memory: pos_integer() | nil,
          allowed_modules: [String.t()] | nil,
          secrets: [String.t()],
          max_queue: non_neg_integer(),
          hang_grace_ms: pos_integer(),
          on_hang: :replace | :keep,
          env: [{String.t(), String.t()}],
          python_path: [String.t()],
          init: [{String.t(), list(), keyword() | map()}]
        }

  @enforce_keys [
    :name,
    :python,
    :priv_dir,
    :strict,
    :start_hint,
    :size,
    :threads,
    :startup_timeout_ms,
    :max_message_size,
    :max_payload_size,
    :max_result_size,
    :max_elements,
    :carrier,
    :shared_memory,
    :allowed_modules,
    :secrets,
    :max_queue,
    :hang_grace_ms,
    :on_hang,
    :env,
    :python_path,
    :init
  ]
  defstruct @enforce_keys
end

defmodule SnakeBridge.Native.Describe do
  @moduledoc false
  # A library to introspect, and where its descriptor is cached.

  @type t :: %__MODULE__{
          dir: String.t(),
          integration: String.t(),
          module_path: String.t(),
          submodules: [String.t()],
          depth: non_neg_integer(),
          exclude_patterns: [String.t()],
          config: binary(),
          force: boolean(),
          timeout_ms: pos_integer()
        }

  @enforce_keys [:dir, :integration, :module_path, :config, :timeout_ms]
  defstruct [
    :dir,
    :integration,
    :module_path,
    :config,
    :timeout_ms,
    submodules: [],
    depth: 0,
    exclude_patterns: [],
    force: false
  ]
end
