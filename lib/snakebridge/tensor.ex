defmodule SnakeBridge.Tensor do
  @moduledoc """
  A dense array that crosses to Python as a `numpy.ndarray` of the same dtype and shape,
  and back, without per-element work.

  The data is a binary in Nx's layout: row-major, native byte order, elements of the
  `type`'s size back to back. It travels beside the encoded call as an out-of-band buffer:
  a large binary is not copied on its way out of the BEAM, Python gets a read-only
  `np.frombuffer` view of the received bytes, and an array coming back becomes a binary
  over the received memory. `Nx.Tensor`s on the binary backend are accepted wherever a
  `%SnakeBridge.Tensor{}` is, and `to_nx/1`/`from_nx/1` convert when Nx is loaded (there
  is no compile-time dependency on Nx).

  ## Types

  `{:u, 8 | 16 | 32 | 64}`, `{:s, 8 | 16 | 32 | 64}`, `{:f, 16 | 32 | 64}`, `{:bf, 16}`
  (numpy needs the `ml_dtypes` package for it), `{:c, 64 | 128}` and `{:bool, 8}` (numpy's
  `bool`; Nx has no boolean type, so `to_nx/1` makes it `{:u, 8}`).

  Arrays Python returns are made C-contiguous and native-endian first (a copy only when
  they are not already); arrays of objects, strings or records come back as
  `%SnakeBridge.Ref{}`s. numpy scalars come back as plain numbers and booleans.

  ## Examples

      iex> t = SnakeBridge.Tensor.new(<<1.0::float-32-native, 2.0::float-32-native>>, {:f, 32}, {2})
      iex> {t.type, t.shape, SnakeBridge.Tensor.size(t)}
      {{:f, 32}, {2}, 2}

      iex> SnakeBridge.Tensor.new(<<1, 2, 3>>, {:u, 16}, {2})
      ** (ArgumentError) a {:u, 16} tensor of shape {2} needs 4 bytes of data, got 3
  """

  @enforce_keys [:type, :shape, :data]
  defstruct [:type, :shape, :data]

  @typedoc "An element type, as in Nx (plus `{:bool, 8}`)."
  @type type ::
          {:u, 8 | 16 | 32 | 64}
          | {:s, 8 | 16 | 32 | 64}
          | {:f, 16 | 32 | 64}
          | {:bf, 16}
          | {:c, 64 | 128}
          | {:bool, 8}

  @type t :: %__MODULE__{type: type(), shape: tuple(), data: binary()}

  @doc "The element types a tensor may have (the core's table of them)."
  @spec types() :: [type()]
  def types, do: for({_numpy, type} <- SnakeBridge.Contract.fetch!(:tensor_types), do: type)

  @doc """
  A tensor of `type` and `shape` over `data` (Nx's binary layout). Raises
  `ArgumentError` when the type is unknown or `data` does not hold exactly the elements
  of `shape`.
  """
  @spec new(binary(), type(), tuple()) :: t()
  def new(data, type, shape) when is_binary(data) and is_tuple(shape) do
    unless type in types() do
      raise ArgumentError, "unknown tensor type #{inspect(type)}; one of #{inspect(types())}"
    end

    {_, bits} = type
    expected = size(shape) * div(bits, 8)

    unless byte_size(data) == expected do
      raise ArgumentError,
            "a #{inspect(type)} tensor of shape #{inspect(shape)} needs #{expected} bytes of data, got #{byte_size(data)}"
    end

    %__MODULE__{type: type, shape: shape, data: data}
  end

  @doc "The number of elements of a tensor (or of a shape)."
  @spec size(t() | tuple()) :: non_neg_integer()
  def size(%__MODULE__{shape: shape}), do: size(shape)
  def size(shape) when is_tuple(shape), do: shape |> Tuple.to_list() |> Enum.product()

  @doc """
  The tensor as an `Nx.Tensor` on the binary backend (the binary is shared, not copied).
  Raises when Nx is not loaded.
  """
  @spec to_nx(t()) :: struct()
  def to_nx(%__MODULE__{type: type, shape: shape, data: data}) do
    ensure_nx!()
    type = if type == {:bool, 8}, do: {:u, 8}, else: type
    data |> nx(:from_binary, [type]) |> nx(:reshape, [shape])
  end

  @doc """
  A tensor from an `Nx.Tensor` (transferred to the binary backend first when it lives on
  another one). Raises when Nx is not loaded.
  """
  @spec from_nx(struct()) :: t()
  def from_nx(%{__struct__: Nx.Tensor} = tensor) do
    ensure_nx!()

    new(
      nx(tensor, :to_binary, []),
      nx(tensor, :type, []),
      nx(tensor, :shape, [])
    )
  end

  # Nx is optional: it is called through apply/3 so that compiling needs no Nx.
  defp nx(subject, fun, args), do: apply(Nx, fun, [subject | args])

  defp ensure_nx! do
    unless Code.ensure_loaded?(Nx) do
      raise ArgumentError, "Nx is not available: add {:nx, ...} to your dependencies"
    end
  end

  defimpl Inspect do
    import Inspect.Algebra

    def inspect(%SnakeBridge.Tensor{type: type, shape: shape, data: data}, opts) do
      concat([
        "#SnakeBridge.Tensor<",
        to_doc(type, opts),
        " ",
        to_doc(shape, opts),
        ", #{byte_size(data)} bytes>"
      ])
    end
  end
end
