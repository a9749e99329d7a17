# Runtime benchmark: object references, streaming and callbacks, each beside a baseline
# measured in the same run:
#   * ref create + release   vs  a plain-value call (same round trip, no registry work)
#   * stream chunks/s        vs  a Python loop iterating the same generator in the worker
#   * callback round trip    vs  an Elixir -> Python call (the other direction)
#
# Run with `make bench`. Medians of alternating rounds; nothing fails on a number.

Code.require_file("support.exs", __DIR__)

defmodule RuntimeBench do
  @rounds String.to_integer(System.get_env("BENCH_ROUNDS", "3"))
  @refs 5_000
  @chunks 50_000
  @callbacks 5_000

  def run do
    Bench.start()
    {:ok, _} = SnakeBridge.Pool.start_link(name: :rt_bench, size: 1, threads: 1)
    opts = [pool: :rt_bench]

    IO.puts("SnakeBridge runtime benchmark: #{@rounds} rounds, 1 worker")

    rounds =
      for round <- 1..@rounds do
        IO.puts("round #{round}/#{@rounds} ...")
        Map.merge(refs(opts), Map.merge(streams(opts), callbacks(opts)))
      end

    med = Bench.medians(rounds, ["per_s", "us"])
    IO.puts("\nmedians over #{length(rounds)} rounds")
    Bench.table(Enum.sort(med), [{"per_s", "per second"}, {"us", "µs each"}])

    IO.puts("""

    ref create+release / plain call:              #{Bench.ratio(med["ref_create_release"]["per_s"], med["plain_call"]["per_s"])}x the plain call's rate
    refs created, dropped and freed by GC:        #{Bench.fmt(med["ref_gc_release"]["per_s"])} objects/s (#{@refs} created, then until the worker's registry is back to its baseline)
    stream:                                       #{Bench.fmt(med["stream_chunks"]["us"])} µs per chunk vs #{:erlang.float_to_binary(med["python_loop"]["us"], decimals: 3)} µs per element in a Python loop (in-process, no crossing)
    callback round trip / Elixir->Python call:    #{Bench.ratio(med["callback_round_trip"]["us"], med["plain_call"]["us"])}x the call's latency
    """)
  end

  defp rate(n, seconds), do: %{"per_s" => n / seconds, "us" => seconds * 1.0e6 / n}

  defp refs(opts) do
    plain =
      Bench.seconds(fn ->
        for _ <- 1..@refs, do: {:ok, 3} = SnakeBridge.call("operator", "add", [1, 2], [], opts)
      end)

    create_release =
      Bench.seconds(fn ->
        for _ <- 1..@refs do
          {:ok, ref} = SnakeBridge.call("builtins", "object", [], [], opts)
          SnakeBridge.release(ref)
        end
      end)

    baseline = registry_size(opts)

    gc =
      Bench.seconds(fn ->
        Task.await(
          Task.async(fn ->
            for _ <- 1..@refs, do: SnakeBridge.call!("builtins", "object", [], [], opts)
          end),
          :infinity
        )

        wait_for(fn -> registry_size(opts) <= baseline end)
      end)

    %{
      "plain_call" => rate(@refs, plain),
      "ref_create_release" => rate(@refs, create_release),
      "ref_gc_release" => rate(@refs, gc)
    }
  end

  defp streams(opts) do
    stream =
      Bench.seconds(fn ->
        @chunks =
          Enum.count(SnakeBridge.stream("builtins", "range", [@chunks], [], opts ++ [window: 64]))
      end)

    python =
      SnakeBridge.call!(
        "timeit",
        "timeit",
        ["for _ in iter(range(#{@chunks})): pass"],
        [number: 1],
        opts
      )

    %{"stream_chunks" => rate(@chunks, stream), "python_loop" => rate(@chunks, python)}
  end

  defp callbacks(opts) do
    items = Enum.to_list(1..@callbacks)

    seconds =
      Bench.seconds(fn ->
        SnakeBridge.call!("builtins", "sorted", [items], [key: fn x -> -x end], opts)
      end)

    %{"callback_round_trip" => rate(@callbacks, seconds)}
  end

  defp registry_size(opts),
    do: SnakeBridge.call!("snakebridge_agent.registry", "size", [], [], opts)

  defp wait_for(check) do
    unless check.() do
      Process.sleep(1)
      wait_for(check)
    end
  end
end

RuntimeBench.run()
