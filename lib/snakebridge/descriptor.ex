defmodule SnakeBridge.Descriptor do
  @moduledoc """
  What introspection learned about a Python library: its public classes and functions,
  with their parameters, types and docstrings (the proto's `DescribeLibraryResponse`, as
  the Rust core keeps it).

  `SnakeBridge.Introspection.describe/2` and `load/2` return it inside a
  `SnakeBridge.Descriptor.Entry`, which records what it was made for.
  """

  alias SnakeBridge.Descriptor.{Class, Function}

  @type t :: %__MODULE__{
          version: String.t(),
          classes: %{String.t() => Class.t()},
          functions: %{String.t() => Function.t()},
          warnings: [String.t()]
        }

  @enforce_keys [:version, :classes, :functions, :warnings]
  defstruct @enforce_keys
end

defmodule SnakeBridge.Descriptor.Entry do
  @moduledoc """
  A cached descriptor with what identifies it: the integration it belongs to, hashes of
  the config and of the request that made it (`config_hash`, `request_key`), the library
  and Python versions, `cache_key` (a hash of the config and both versions), and the hash
  of the descriptor itself (hexadecimal SHA-256).
  """

  @type t :: %__MODULE__{
          schema_version: pos_integer(),
          integration: String.t(),
          config_hash: String.t(),
          request_key: String.t(),
          cache_key: String.t(),
          library_version: String.t(),
          python_version: String.t(),
          descriptor_hash: String.t(),
          descriptor: SnakeBridge.Descriptor.t()
        }

  @enforce_keys [
    :schema_version,
    :integration,
    :config_hash,
    :request_key,
    :cache_key,
    :library_version,
    :python_version,
    :descriptor_hash,
    :descriptor
  ]
  defstruct @enforce_keys
end

defmodule SnakeBridge.Descriptor.Class do
  @moduledoc "A Python class: its constructor, methods, properties, bases and docstring."

  alias SnakeBridge.Descriptor.{Function, Property}

  @type t :: %__MODULE__{
          name: String.t(),
          python_path: String.t(),
          docstring: String.t(),
          bases: [String.t()],
          constructor: Function.t() | nil,
          methods: %{String.t() => Function.t()},
          properties: [Property.t()]
        }

  @enforce_keys [:name, :python_path, :docstring, :bases, :constructor, :methods, :properties]
  defstruct @enforce_keys
end

defmodule SnakeBridge.Descriptor.Function do
  @moduledoc """
  A Python function or method: its parameters, return type, kind
  (`:function`, `:method`, `:classmethod`, `:staticmethod`), generator and async flags,
  signature (as Python prints it) and docstring.
  """

  alias SnakeBridge.Descriptor.{Parameter, Type}

  @type kind :: :function | :method | :classmethod | :staticmethod
  @type t :: %__MODULE__{
          name: String.t(),
          python_path: String.t(),
          docstring: String.t(),
          parameters: [Parameter.t()],
          return_type: Type.t() | nil,
          is_generator: boolean(),
          is_async: boolean(),
          is_async_generator: boolean(),
          kind: kind(),
          signature: String.t()
        }

  @enforce_keys [
    :name,
    :python_path,
    :docstring,
    :parameters,
    :return_type,
    :is_generator,
    :is_async,
    :is_async_generator,
    :kind,
    :signature
  ]
  defstruct @enforce_keys
end

defmodule SnakeBridge.Descriptor.Parameter do
  @moduledoc """
  A parameter: its kind (`:positional_only`, `:positional_or_keyword`, `:var_positional`,
  `:keyword_only`, `:var_keyword`), whether it is required, the `repr()` of its default
  (nil without one) and its annotation.
  """

  @type kind ::
          :positional_only
          | :positional_or_keyword
          | :var_positional
          | :keyword_only
          | :var_keyword
  @type t :: %__MODULE__{
          name: String.t(),
          kind: kind(),
          required: boolean(),
          default_repr: String.t() | nil,
          annotation: SnakeBridge.Descriptor.Type.t() | nil
        }

  @enforce_keys [:name, :kind, :required, :default_repr, :annotation]
  defstruct @enforce_keys
end

defmodule SnakeBridge.Descriptor.Property do
  @moduledoc "A property of a class: whether it is read-only, its type and docstring."

  @type t :: %__MODULE__{
          name: String.t(),
          readonly: boolean(),
          type: SnakeBridge.Descriptor.Type.t() | nil,
          docstring: String.t()
        }

  @enforce_keys [:name, :readonly, :type, :docstring]
  defstruct @enforce_keys
end

defmodule SnakeBridge.Descriptor.Type do
  @moduledoc """
  A type as an annotation says it: its kind (`:any`, `:primitive`, `:list`, `:dict`,
  `:tuple`, `:set`, `:optional`, `:union`, `:literal`, `:class`), its name (a primitive's,
  or a class path), its arguments and, for a `Literal`, its values' `repr()`s.
  """

  @type kind ::
          :any
          | :primitive
          | :list
          | :dict
          | :tuple
          | :set
          | :optional
          | :union
          | :literal
          | :class
  @type t :: %__MODULE__{
          kind: kind(),
          name: String.t(),
          args: [t()],
          literals: [String.t()]
        }

  @enforce_keys [:kind, :name, :args, :literals]
  defstruct @enforce_keys
end
