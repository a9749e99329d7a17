# Call-path benchmark: a full SnakeBridge call (NIF, codec, gRPC stream, Python dispatch)
# beside two baselines measured in the same run:
#   * raw_socket  - Rust <-> Python echo loop over a Unix socket (the transport's floor)
#   * grpcio_echo - tonic client -> plain grpcio Python server (a pure-Python gRPC worker)
#
# Run with `make bench`. The machine is shared and noisy: every figure is the median of
# several alternating rounds, and the table quotes ratios to the same-run baselines.
# Nothing here fails on a number.

defmodule CallBench do
  @rounds String.to_integer(System.get_env("BENCH_ROUNDS", "3"))
  @sequential String.to_integer(System.get_env("BENCH_SEQUENTIAL", "5000"))
  @concurrent String.to_integer(System.get_env("BENCH_CONCURRENT", "20000"))
  @callers 64
  @workers 2

  def run do
    :os.set_signal(:sigchld, :default)
    Application.put_env(:snakebridge, :start_pool, false)
    {:ok, _} = Application.ensure_all_started(:snakebridge)
    baselines = Path.expand("../_build/cargo/release/baselines", __DIR__)
    python = SnakeBridge.Pool.default_python()

    IO.puts(
      "SnakeBridge call benchmark: #{@rounds} rounds, #{@sequential} sequential calls, " <>
        "#{@concurrent} calls from #{@callers} callers over #{@workers} workers"
    )

    rounds =
      for round <- 1..@rounds do
        IO.puts("round #{round}/#{@rounds} ...")

        base =
          baseline(baselines, python, "raw-socket") ++ baseline(baselines, python, "grpcio-echo")

        sb =
          snakebridge(:snakebridge_default, threads: 4) ++
            snakebridge(:snakebridge_serial, threads: 1)

        Map.new(base ++ sb)
      end

    report(rounds)
  end

  defp baseline(binary, python, mode) do
    args = [
      mode,
      "--calls",
      "#{@concurrent}",
      "--concurrency",
      "#{@callers}",
      "--workers",
      "#{@workers}",
      "--python",
      python
    ]

    {out, 0} = System.cmd(binary, args)

    for line <- String.split(out, "\n", trim: true), String.starts_with?(line, "{") do
      [_, name] = Regex.run(~r/"name":\s*"([^"]+)"/, line)

      fields =
        for key <- ["p50_us", "p99_us", "throughput_per_s"], into: %{} do
          case Regex.run(~r/"#{key}":\s*([0-9.eE+-]+)/, line) do
            [_, v] -> {key, elem(Float.parse(v), 0)}
            nil -> {key, nil}
          end
        end

      {name, fields}
    end
  end

  defp snakebridge(name, opts) do
    {:ok, pool} = SnakeBridge.Pool.start_link([name: name, size: @workers] ++ opts)
    call = fn -> {:ok, 3} = SnakeBridge.call("operator", "add", [1, 2], [], pool: name) end

    for _ <- 1..1_000, do: call.()

    samples =
      for _ <- 1..@sequential do
        t0 = System.monotonic_time(:nanosecond)
        call.()
        System.monotonic_time(:nanosecond) - t0
      end
      |> Enum.sort()

    per_caller = div(@concurrent, @callers)
    t0 = System.monotonic_time(:nanosecond)

    1..@callers
    |> Enum.map(fn _ -> Task.async(fn -> for _ <- 1..per_caller, do: call.() end) end)
    |> Enum.each(&Task.await(&1, :infinity))

    elapsed_s = (System.monotonic_time(:nanosecond) - t0) / 1.0e9
    GenServer.stop(pool)

    [
      {"#{name}_sequential",
       %{
         "p50_us" => percentile(samples, 0.50) / 1000,
         "p99_us" => percentile(samples, 0.99) / 1000,
         "throughput_per_s" => nil
       }},
      {"#{name}_concurrent",
       %{"p50_us" => nil, "p99_us" => nil, "throughput_per_s" => per_caller * @callers / elapsed_s}}
    ]
  end

  defp percentile(sorted, q),
    do: Enum.at(sorted, min(length(sorted) - 1, ceil(q * length(sorted)) - 1))

  defp median(values) do
    sorted = values |> Enum.reject(&is_nil/1) |> Enum.sort()
    if sorted == [], do: nil, else: Enum.at(sorted, div(length(sorted), 2))
  end

  defp report(rounds) do
    names = rounds |> hd() |> Map.keys() |> Enum.sort()

    med =
      Map.new(names, fn name ->
        {name,
         Map.new(["p50_us", "p99_us", "throughput_per_s"], fn key ->
           {key, median(Enum.map(rounds, &get_in(&1, [name, key])))}
         end)}
      end)

    IO.puts("\nmedians over #{length(rounds)} rounds")
    IO.puts(String.pad_trailing("name", 36) <> pad("p50 µs") <> pad("p99 µs") <> pad("calls/s"))

    for name <- names do
      m = med[name]

      IO.puts(
        String.pad_trailing(name, 36) <>
          pad(fmt(m["p50_us"])) <> pad(fmt(m["p99_us"])) <> pad(fmt(m["throughput_per_s"]))
      )
    end

    raw = med["raw_socket_sequential"]["p50_us"]
    grpcio = med["grpcio_echo_sequential"]["p50_us"]
    grpcio_tp = med["grpcio_echo_concurrent"]["throughput_per_s"]
    sb = med["snakebridge_default_sequential"]["p50_us"]
    sb_tp = med["snakebridge_default_concurrent"]["throughput_per_s"]

    IO.puts("""

    SnakeBridge call p50 / raw-socket p50:        #{ratio(sb, raw)}x   (target <= 2.5x)
    SnakeBridge call p50 / grpcio echo p50:        #{ratio(sb, grpcio)}x   (target well below 1x)
    SnakeBridge calls/s / grpcio echo calls/s:     #{ratio(sb_tp, grpcio_tp)}x   (target >= 5x)
    """)
  end

  defp ratio(a, b) when is_number(a) and is_number(b) and b > 0,
    do: :erlang.float_to_binary(a / b, decimals: 2)

  defp ratio(_, _), do: "n/a"
  defp fmt(nil), do: "-"
  defp fmt(x) when x >= 1000, do: x |> round() |> Integer.to_string()
  defp fmt(x), do: :erlang.float_to_binary(x * 1.0, decimals: 1)
  defp pad(s), do: String.pad_leading(s, 12)
end

CallBench.run()
