# Tensor transfer benchmark: f32 tensors of 1, 10 and 100 MB crossing to Python and back,
# beside baselines measured in the same run:
#   * raw_transfer - the same bytes sent between two processes over a Unix socket, into a
#                    freshly allocated buffer (`baselines raw-transfer`, Rust, std only)
#   * BEAM copy    - `:binary.copy/1` of the tensor's data; Rust memcpy into a fresh Vec
#   * shm map/read - a buffer written to a file under /dev/shm and taken back by mapping it
#                    (how the BEAM took a worker's buffers before issue 14) or by reading it
#                    into fresh memory (how it does now, so that a worker cannot change or
#                    truncate it): the "before" beside the "now" of the shared-memory path
# and the same 1M floats as a plain Elixir list (msgpack) versus a 4 MB tensor.
#
# Run with `make bench`. Every figure is the median of alternating rounds, each round's
# figure the median of a few calls; GB/s is 10^9 bytes per second (a round trip counts the
# bytes both ways). Nothing here fails on a number.

Code.require_file("support.exs", __DIR__)

defmodule TensorBench do
  @rounds String.to_integer(System.get_env("BENCH_ROUNDS", "5"))
  # {label, bytes, calls per round}
  @sizes [{"1 MB", 1_000_000, 20}, {"10 MB", 10_000_000, 5}, {"100 MB", 100_000_000, 3}]
  @list_n 1_000_000
  @list_calls 3
  @helpers "tensor_bench_helpers"
  @opts [pool: :tensor_bench]

  def run do
    Bench.start()

    {:ok, _} =
      SnakeBridge.Pool.start_link(
        name: :tensor_bench,
        size: 1,
        python_path: [Path.expand("python", __DIR__)]
      )

    baselines = Path.expand("../_build/cargo/release/baselines", __DIR__)
    tensors = Map.new(@sizes, fn {_, bytes, _} -> {bytes, tensor(div(bytes, 4))} end)
    list = for _ <- 1..@list_n, do: 1.5
    list_tensor = tensor(@list_n)

    IO.puts(
      "SnakeBridge tensor benchmark: #{@rounds} rounds, f32 tensors of " <>
        Enum.map_join(@sizes, ", ", &elem(&1, 0)) <> ", 1 worker"
    )

    warm_up(tensors, list, list_tensor)

    rounds =
      for round <- 1..@rounds do
        IO.puts("round #{round}/#{@rounds} ...")

        sizes =
          for {label, bytes, calls} <- @sizes, into: %{} do
            {label, measure_size(baselines, tensors[bytes], calls)}
          end

        Map.merge(sizes, measure_list(list, list_tensor))
      end

    report(rounds)
  end

  defp tensor(n),
    do: SnakeBridge.Tensor.new(:binary.copy(<<1.5::float-32-native>>, n), {:f, 32}, {n})

  defp warm_up(tensors, list, list_tensor) do
    for {_, t} <- tensors do
      send_tensor(t)
      receive_tensor(byte_size(t.data))
      round_trip(t)
    end

    send_list(list)
    receive_list()
    send_tensor(list_tensor)
    receive_tensor(byte_size(list_tensor.data))
    :erlang.garbage_collect()
  end

  # The calls, each checked by what it returns.

  defp send_tensor(t) do
    bytes = byte_size(t.data)
    {:ok, ^bytes} = SnakeBridge.call(@helpers, "nbytes", [t], [], @opts)
  end

  defp receive_tensor(bytes) do
    {:ok, %SnakeBridge.Tensor{type: {:f, 32}, data: data}} =
      SnakeBridge.call(@helpers, "array", [div(bytes, 4)], [], @opts)

    ^bytes = byte_size(data)
  end

  defp round_trip(t) do
    bytes = byte_size(t.data)
    {:ok, %SnakeBridge.Tensor{data: data}} = SnakeBridge.call("numpy", "copy", [t], [], @opts)
    ^bytes = byte_size(data)
  end

  defp send_list(list) do
    n = length(list)
    {:ok, ^n} = SnakeBridge.call("builtins", "len", [list], [], @opts)
  end

  defp receive_list do
    {:ok, [1.5 | _] = list} = SnakeBridge.call(@helpers, "float_list", [@list_n], [], @opts)
    @list_n = length(list)
  end

  # Median seconds of `calls` runs of `fun`, garbage-collecting between them (untimed)
  # so that received binaries do not pile up.
  defp timed(calls, fun) do
    for _ <- 1..calls do
      s = Bench.seconds(fun)
      :erlang.garbage_collect()
      s
    end
    |> Bench.median()
  end

  defp measure_size(baselines, t, calls) do
    bytes = byte_size(t.data)

    base =
      raw_transfer(baselines, bytes, calls)
      |> Map.put("beam_copy", timed(calls, fn -> :binary.copy(t.data) end))

    sb = %{
      "to_python" => timed(calls, fn -> send_tensor(t) end),
      "to_elixir" => timed(calls, fn -> receive_tensor(bytes) end),
      "round_trip" => timed(calls, fn -> round_trip(t) end)
    }

    base
    |> Map.merge(sb)
    |> Map.put("bytes", bytes)
  end

  defp raw_transfer(binary, bytes, calls) do
    args = ["raw-transfer", "--bytes", "#{bytes}", "--rounds", "#{calls}", "--warmup", "1"]
    {out, 0} = System.cmd(binary, args)

    for line <- String.split(out, "\n", trim: true), String.starts_with?(line, "{"), into: %{} do
      [_, name] = Regex.run(~r/"name":\s*"([^"]+)"/, line)
      [_, s] = Regex.run(~r/"median_s":\s*([0-9.eE+-]+)/, line)
      {name, elem(Float.parse(s), 0)}
    end
  end

  defp measure_list(list, list_tensor) do
    bytes = byte_size(list_tensor.data)

    %{
      "list" => %{
        "to_python" => timed(@list_calls, fn -> send_list(list) end),
        "to_elixir" => timed(@list_calls, fn -> receive_list() end)
      },
      "list_tensor" => %{
        "to_python" => timed(@list_calls, fn -> send_tensor(list_tensor) end),
        "to_elixir" => timed(@list_calls, fn -> receive_tensor(bytes) end)
      }
    }
  end

  # Reporting.

  @columns [
    {"to_python", "Elixir->Py", 1},
    {"to_elixir", "Py->Elixir", 1},
    {"round_trip", "round trip", 2},
    {"raw_transfer", "raw socket", 1},
    {"beam_copy", "BEAM copy", 1},
    {"rust_memcpy", "Rust memcpy", 1},
    {"shm_map", "shm map", 1},
    {"shm_read", "shm read", 1}
  ]

  defp report(rounds) do
    keys = ["bytes" | Enum.map(@columns, &elem(&1, 0))]
    med = Bench.medians(rounds, keys)
    sizes = for {label, _, _} <- @sizes, do: {label, med[label]}

    IO.puts("\nmedians over #{length(rounds)} rounds: GB/s (round trip: bytes both ways)")
    table(sizes, fn values, {key, _, ways} -> gb_s(values["bytes"] * ways, values[key]) end)
    IO.puts("\nmedians over #{length(rounds)} rounds: ms per call / copy")
    table(sizes, fn values, {key, _, _} -> ms(values[key]) end)

    big = med["100 MB"]
    raw = gb_per_s(big["bytes"], big["raw_transfer"])
    to_py = gb_per_s(big["bytes"], big["to_python"])
    to_ex = gb_per_s(big["bytes"], big["to_elixir"])
    rt = gb_per_s(big["bytes"] * 2, big["round_trip"])

    IO.puts("""

    at 100 MB                      GB/s     / raw socket (#{num(raw)} GB/s)
    Elixir -> Python            #{pad(num(to_py), 7)}     #{pad(Bench.ratio(to_py, raw), 6)}x   (target >= 1 GB/s and >= 0.30x)
    Python -> Elixir            #{pad(num(to_ex), 7)}     #{pad(Bench.ratio(to_ex, raw), 6)}x   (target >= 1 GB/s and >= 0.30x)
    round trip (numpy.copy)     #{pad(num(rt), 7)}     #{pad(Bench.ratio(rt, raw), 6)}x   (bytes both ways)
    """)

    shm_map = gb_per_s(big["bytes"], big["shm_map"])
    shm_read = gb_per_s(big["bytes"], big["shm_read"])

    IO.puts("""
    a worker's 100 MB buffer through /dev/shm (write + take), GB/s
      before: mapped (a worker could truncate it: SIGBUS)   #{pad(num(shm_map), 7)}
      now: read into BEAM-owned memory                      #{pad(num(shm_read), 7)}   #{Bench.ratio(shm_read, shm_map)}x of before
      Python -> Elixir end to end, now                      #{pad(num(to_ex), 7)}   (target >= 1 GB/s)
    """)

    list = med["list"]
    lt = med["list_tensor"]

    IO.puts("""
    #{@list_n} floats: Elixir list (msgpack) vs f32 tensor (#{div(@list_n * 4, 1_000_000)} MB), ms per call
                                   list      tensor    list / tensor
    Elixir -> Python            #{pad(ms(list["to_python"]), 8)}    #{pad(ms(lt["to_python"]), 8)}    #{pad(Bench.ratio(list["to_python"], lt["to_python"]), 8)}x
    Python -> Elixir            #{pad(ms(list["to_elixir"]), 8)}    #{pad(ms(lt["to_elixir"]), 8)}    #{pad(Bench.ratio(list["to_elixir"], lt["to_elixir"]), 8)}x
    """)
  end

  defp table(rows, cell) do
    IO.puts(String.pad_trailing("size", 10) <> Enum.map_join(@columns, &pad(elem(&1, 1), 13)))

    for {label, values} <- rows do
      IO.puts(
        String.pad_trailing(label, 10) <>
          Enum.map_join(@columns, fn column -> pad(cell.(values, column), 13) end)
      )
    end
  end

  defp gb_per_s(bytes, s) when is_number(bytes) and is_number(s) and s > 0, do: bytes / s / 1.0e9
  defp gb_per_s(_, _), do: nil

  defp gb_s(bytes, s), do: num(gb_per_s(bytes, s))

  defp ms(s) when is_number(s), do: :erlang.float_to_binary(s * 1000.0, decimals: 2)
  defp ms(_), do: "-"

  defp num(x) when is_number(x), do: :erlang.float_to_binary(x * 1.0, decimals: 2)
  defp num(_), do: "-"

  defp pad(s, width), do: String.pad_leading(s, width)
end

TensorBench.run()
