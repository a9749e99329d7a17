# Introspection benchmark: cold introspection (a fresh worker imports and describes the
# library), warm load from the descriptor cache (hot level), and parsing a descriptor
# file from disk (cold hot level). Targets: warm load under 5 ms for dspy, cold under 3 s.
#
# Run with `make bench`. Medians of rounds; nothing fails on a number.

Code.require_file("support.exs", __DIR__)

defmodule IntrospectionBench do
  @rounds String.to_integer(System.get_env("BENCH_ROUNDS", "3"))
  @libraries ["numpy", "dspy"]

  def run do
    Bench.start()

    dir =
      Path.join(
        System.tmp_dir!(),
        "snakebridge-bench-schemas-#{System.unique_integer([:positive])}"
      )

    IO.puts("SnakeBridge introspection benchmark: #{@rounds} rounds")

    rounds =
      for round <- 1..@rounds do
        IO.puts("round #{round}/#{@rounds} ...")
        Map.new(@libraries, fn library -> {library, measure(library, dir, round)} end)
      end

    med = Bench.medians(rounds, ["cold_ms", "warm_us", "parse_ms", "bytes"])
    File.rm_rf(dir)
    IO.puts("\nmedians over #{length(rounds)} rounds")

    Bench.table(Enum.sort(med), [
      {"cold_ms", "cold ms"},
      {"warm_us", "warm µs"},
      {"parse_ms", "parse ms"},
      {"bytes", "file bytes"}
    ])

    IO.puts("""

    targets: dspy warm load #{Bench.fmt(med["dspy"]["warm_us"])} µs (< 5 ms), dspy cold #{Bench.fmt(med["dspy"]["cold_ms"])} ms (< 3 s); numpy cold #{Bench.fmt(med["numpy"]["cold_ms"])} ms
    """)
  end

  defp measure(library, dir, round) do
    # Cold: a new worker process, no caches (force), import included.
    name = :"introspection_bench_#{round}_#{library}"
    {:ok, pool} = SnakeBridge.Pool.start_link(name: name, size: 1)

    cold =
      Bench.seconds(fn ->
        {:ok, _} =
          SnakeBridge.Introspection.describe(library, pool: name, cache_dir: dir, force: true)
      end)

    GenServer.stop(pool)
    file = Path.join(dir, "#{library}.json")

    # Warm: the hot level answers (no Python, no disk).
    warm =
      Bench.latencies(50, fn ->
        {:ok, _} = SnakeBridge.Introspection.load(library, cache_dir: dir)
      end)

    # Parse: a directory the hot level has never seen, so the file is read and validated.
    parses =
      for i <- 1..5 do
        copy = Path.join(dir, "parse-#{round}-#{i}")
        File.mkdir_p!(copy)
        File.cp!(file, Path.join(copy, "#{library}.json"))
        Bench.seconds(fn -> {:ok, _} = SnakeBridge.Introspection.load(library, cache_dir: copy) end)
      end

    %{
      "cold_ms" => cold * 1000,
      "warm_us" => Bench.percentile(warm, 0.5),
      "parse_ms" => Bench.median(parses) * 1000,
      "bytes" => File.stat!(file).size
    }
  end
end

IntrospectionBench.run()
