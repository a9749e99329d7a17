# Call-path benchmark: a full SnakeBridge call (NIF, codec, gRPC stream, Python dispatch)
# beside two baselines measured in the same run:
#   * raw_socket  - Rust <-> Python echo loop over a Unix socket (the transport's floor)
#   * grpcio_echo - tonic client -> plain grpcio Python server (a pure-Python gRPC worker)
#
# Run with `make bench`. The machine is shared and noisy: every figure is the median of
# several alternating rounds, and the table quotes ratios to the same-run baselines.
# Nothing here fails on a number. The VM runs with its default scheduler busy wait, as in
# production (`make test` passes +sbwt none, which adds about 70 µs to a call's p50
# here: the scheduler that gets the reply is asleep).

Code.require_file("support.exs", __DIR__)

defmodule CallBench do
  @rounds String.to_integer(System.get_env("BENCH_ROUNDS", "3"))
  @sequential String.to_integer(System.get_env("BENCH_SEQUENTIAL", "5000"))
  @concurrent String.to_integer(System.get_env("BENCH_CONCURRENT", "20000"))
  @callers 64
  @workers 2

  def run do
    Bench.start()
    baselines = Path.expand("../_build/cargo/release/baselines", __DIR__)
    python = elem(SnakeBridge.Python.resolve(), 0)

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

    samples = Bench.latencies(@sequential, call)
    throughput = Bench.throughput(call, @concurrent, @callers)

    GenServer.stop(pool)

    [
      {"#{name}_sequential",
       %{
         "p50_us" => Bench.percentile(samples, 0.50),
         "p99_us" => Bench.percentile(samples, 0.99),
         "throughput_per_s" => nil
       }},
      {"#{name}_concurrent", %{"p50_us" => nil, "p99_us" => nil, "throughput_per_s" => throughput}}
    ]
  end

  defp report(rounds) do
    med = Bench.medians(rounds, ["p50_us", "p99_us", "throughput_per_s"])
    IO.puts("\nmedians over #{length(rounds)} rounds")

    Bench.table(Enum.sort(med), [
      {"p50_us", "p50 µs"},
      {"p99_us", "p99 µs"},
      {"throughput_per_s", "calls/s"}
    ])

    raw = med["raw_socket_sequential"]["p50_us"]
    grpcio = med["grpcio_echo_sequential"]["p50_us"]
    grpcio_tp = med["grpcio_echo_concurrent"]["throughput_per_s"]
    sb = med["snakebridge_default_sequential"]["p50_us"]
    sb_tp = med["snakebridge_default_concurrent"]["throughput_per_s"]

    IO.puts("""

    SnakeBridge call p50 / raw-socket p50:        #{Bench.ratio(sb, raw)}x   (target <= 2.5x)
    SnakeBridge call p50 / grpcio echo p50:        #{Bench.ratio(sb, grpcio)}x   (target well below 1x)
    SnakeBridge calls/s / grpcio echo calls/s:     #{Bench.ratio(sb_tp, grpcio_tp)}x   (target >= 5x)
    """)
  end
end

CallBench.run()
