defmodule SnakeBridge.Bytes do
  @moduledoc """
  Marks a binary as Python `bytes`.

  A UTF-8 binary crosses to Python as `str`. Wrap it in `%SnakeBridge.Bytes{}` to send
  `bytes` instead (a binary that is not valid UTF-8 becomes `bytes` on its own). Python
  `bytes` come back as plain binaries.

  ## Examples

      iex> SnakeBridge.Bytes.new("abc")
      %SnakeBridge.Bytes{data: "abc"}
  """

  @enforce_keys [:data]
  defstruct [:data]

  @type t :: %__MODULE__{data: binary()}

  @doc "Wraps `data` so that it reaches Python as `bytes`."
  @spec new(binary()) :: t()
  def new(data) when is_binary(data), do: %__MODULE__{data: data}
end
