defmodule Nx.BinaryBackend do
  @moduledoc false
  # A stand-in for Nx's binary backend: Nx cannot be installed here (no Hex). The same
  # struct shape as Nx's (`state` holds the binary), so SnakeBridge's Nx support is tested
  # against the layout it reads.
  defstruct [:state]
end

defmodule Nx.Tensor do
  @moduledoc false
  defstruct [:data, :type, :shape, :names]
end

defmodule Nx do
  @moduledoc false
  # The few Nx functions SnakeBridge.Tensor.to_nx/from_nx call, with Nx's semantics for
  # binary-backend tensors.

  def from_binary(binary, type) do
    {_, bits} = type

    %Nx.Tensor{
      data: %Nx.BinaryBackend{state: binary},
      type: type,
      shape: {div(byte_size(binary) * 8, bits)},
      names: [nil]
    }
  end

  def reshape(%Nx.Tensor{} = t, shape),
    do: %{t | shape: shape, names: List.duplicate(nil, tuple_size(shape))}

  def to_binary(%Nx.Tensor{data: %Nx.BinaryBackend{state: binary}}), do: binary
  def type(%Nx.Tensor{type: type}), do: type
  def shape(%Nx.Tensor{shape: shape}), do: shape
end
