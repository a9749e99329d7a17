defmodule SnakeBridge.TypeConverter do
  @moduledoc """
  The conversion every call's arguments and results go through, exposed: Elixir terms ⇄
  the bytes a codec writes, without Python. Useful to check what a value becomes, to
  store values in the wire format, or to measure the codecs.

  ## Codecs

  `:msgpack` (the default) is lossless for every value SnakeBridge carries: tuples, sets,
  bytes, non-string map keys, dates and times, big integers, refs, tensors (in band here;
  out of band in calls). `:json` is plain JSON, written by the Rust core (no Elixir JSON
  library is involved), and loses what JSON cannot say:

  | Elixir | JSON | comes back as |
  |---|---|---|
  | tuple, `MapSet` | array | list |
  | `%SnakeBridge.Bytes{}`, non-UTF-8 binary | base64 string | string |
  | map key that is not a string | its text (`1` → `"1"`, `:a` → `"a"`) | string key |
  | atom (other than `nil`, `true`, `false`) | string | string |
  | `Date`, `Time`, `NaiveDateTime`, `DateTime` | ISO 8601 string | string |
  | integer beyond 64 bits | number | float |

  NaN and the infinities, refs, functions and tensors cannot be written as JSON: encoding
  them is an error. So are integers beyond 2^1023 (no float holds them) and values nested
  more than 127 levels (JSON's readers stop there; msgpack takes 256). A call chooses its codecs with the `:serialization` option (see
  `SnakeBridge.Runtime`); an integration config with its `serialization` key.

  Both directions run on a dirty CPU scheduler, so a large term never blocks a normal one.

  ## Examples

      iex> {:ok, json} = SnakeBridge.TypeConverter.to_python(%{"a" => {1, 2}}, :json)
      iex> json
      ~s({"a":[1,2]})
      iex> SnakeBridge.TypeConverter.from_python(json, :json)
      {:ok, %{"a" => [1, 2]}}

      iex> {:ok, packed} = SnakeBridge.TypeConverter.to_python(%{1 => {:a, MapSet.new([2])}})
      iex> SnakeBridge.TypeConverter.from_python(packed)
      {:ok, %{1 => {"a", MapSet.new([2])}}}
  """

  @typedoc "A codec."
  @type codec :: :msgpack | :json

  @doc """
  Encodes `term` as `codec` would put it on the wire to Python. Returns `{:ok, binary}`,
  or `{:error, message}` (with the path of the part, e.g. `value[2]`) for a term that
  cannot cross or that the codec cannot write.
  """
  @spec to_python(term(), codec()) :: {:ok, binary()} | {:error, String.t()}
  def to_python(term, codec \\ :msgpack) do
    case SnakeBridge.Native.codec_encode(term, codec!(codec)) do
      {:ok, binary} -> {:ok, binary}
      {:error, {:unsupported, path, message}} -> {:error, "#{path}: #{message}"}
      {:error, message} -> {:error, message}
    end
  end

  @doc """
  Decodes bytes in `codec` into the term a call's result would be (object references
  decode to `nil`: they mean nothing without their worker). Returns `{:ok, term}` or
  `{:error, message}`.
  """
  @spec from_python(binary(), codec()) :: {:ok, term()} | {:error, String.t()}
  def from_python(binary, codec \\ :msgpack) when is_binary(binary),
    do: SnakeBridge.Native.codec_decode(binary, codec!(codec))

  @doc false
  # `codec` when it is one, else an ArgumentError naming the codecs.
  @spec codec!(term()) :: codec()
  def codec!(codec) when codec in [:msgpack, :json], do: codec

  def codec!(other),
    do: raise(ArgumentError, "expected a codec, :msgpack or :json, got: #{inspect(other)}")
end
