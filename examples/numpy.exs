# SnakeBridge demo: tensors to numpy and back, and the codecs.
# Run with `make demo` (which sets everything up first) or `mix run examples/numpy.exs`.

alias SnakeBridge.{Tensor, TypeConverter}

defmodule NumpyDemo do
  # The result of `fun` and the median of five runs, in ms (this machine may be shared).
  def timed(fun) do
    runs =
      for _ <- 1..5 do
        {micros, result} = :timer.tc(fun)
        :erlang.garbage_collect()
        {micros / 1000, result}
      end

    {ms, result} = runs |> Enum.sort_by(&elem(&1, 0)) |> Enum.at(2)
    {result, ms}
  end

  def floats(n), do: :binary.copy(<<1.5::float-32-native>>, n)

  # The elements of an s32 tensor (Nx.to_flat_list/1 does this when Nx is loaded).
  def ints(%SnakeBridge.Tensor{type: {:s, 32}, data: data}),
    do: for(<<x::32-signed-native <- data>>, do: x)
end

IO.puts("Tensors cross as numpy arrays of the same dtype and shape:")

matrix = Tensor.new(for(x <- 1..4, into: <<>>, do: <<x::32-signed-native>>), {:s, 32}, {2, 2})

{:ok, product} = SnakeBridge.call("numpy", "matmul", [matrix, matrix])

IO.puts(
  "  numpy.matmul(m, m)         #{inspect(product.type)} #{inspect(product.shape)} = #{inspect(NumpyDemo.ints(product))}"
)

{:ok, mean} = SnakeBridge.call("numpy", "mean", [matrix])
IO.puts("  numpy.mean(m)              #{inspect(mean)}  (a numpy scalar comes back as a number)")

{:ok, transposed} = SnakeBridge.call("numpy", "transpose", [matrix])

IO.puts(
  "  numpy.transpose(m)         #{inspect(NumpyDemo.ints(transposed))}  (made contiguous on the way back)"
)

{:ok, ref} = SnakeBridge.call("numpy", "array", [["a", "bc"]])
IO.puts("  numpy.array([\"a\", \"bc\"])   #{inspect(ref)}  (string arrays stay in Python)")

IO.puts(
  "\n100 MB of float32, each way (out of band, through shared memory; numpy's own work included):"
)

n = 25_000_000
big = Tensor.new(NumpyDemo.floats(n), {:f, 32}, {n})
# Once untimed, so that numpy and the buffers are warm.
{:ok, _} = SnakeBridge.call("numpy", "sum", [big])
{{:ok, sum}, ms} = NumpyDemo.timed(fn -> SnakeBridge.call("numpy", "sum", [big]) end)

IO.puts(
  "  Elixir -> numpy.sum        #{sum} in #{Float.round(ms, 1)} ms (#{Float.round(100 / ms, 2)} GB/s)"
)

{{:ok, %Tensor{shape: {^n}}}, ms} =
  NumpyDemo.timed(fn -> SnakeBridge.call("numpy", "ones", [n], dtype: "float32") end)

IO.puts(
  "  numpy.ones -> Elixir       #{n} floats in #{Float.round(ms, 1)} ms (#{Float.round(100 / ms, 2)} GB/s)"
)

list = List.duplicate(1.5, 1_000_000)
{{:ok, _}, list_ms} = NumpyDemo.timed(fn -> SnakeBridge.call("numpy", "sum", [list]) end)
small = Tensor.new(NumpyDemo.floats(1_000_000), {:f, 32}, {1_000_000})
{{:ok, _}, tensor_ms} = NumpyDemo.timed(fn -> SnakeBridge.call("numpy", "sum", [small]) end)

IO.puts(
  "  1M floats to numpy.sum     as a list #{Float.round(list_ms, 1)} ms, as a tensor #{Float.round(tensor_ms, 1)} ms"
)

IO.puts("\nCodecs (msgpack by default, JSON per call or per config):")
value = %{1 => {:a, MapSet.new([2])}}
json = [serialization: %{args: :json, result: :json}]

IO.puts(
  "  echo #{inspect(value)} with msgpack: #{inspect(SnakeBridge.call!("copy", "copy", [value]))}"
)

IO.puts(
  "  echo #{inspect(value)} with JSON:    #{inspect(SnakeBridge.call!("copy", "copy", [value], [], json))}"
)

{:ok, encoded} = TypeConverter.to_python(%{"x" => [1, 2.5]}, :json)
IO.puts("  TypeConverter.to_python(%{\"x\" => [1, 2.5]}, :json) = #{encoded}")
