# Where a small call's time goes: the threads it wakes. Sequential operator.add calls on a
# pool of one worker; for each thread of the worker and of the VM, how many times it was
# switched out per call (voluntary and involuntary context switches, from
# /proc/<pid>/task/*/status), beside the time per call. A sleeping thread takes several
# microseconds to wake on an idle core, so on a small call these counts are most of the
# difference from an Erlang port (whose Python process wakes once per call).
#
# Run with `make bench`. Rounds alternate the configurations; every figure is the median
# over the rounds. Nothing here fails on a number.

Code.require_file("support.exs", __DIR__)

defmodule WakeupsBench do
  @rounds String.to_integer(System.get_env("BENCH_ROUNDS", "3"))
  @calls String.to_integer(System.get_env("BENCH_SEQUENTIAL", "10000"))
  @configs [
    {"local carrier, 4 threads", [carrier: :local, threads: 4]},
    {"local carrier, 1 thread", [carrier: :local, threads: 1]},
    {"gRPC carrier, 4 threads", [carrier: :grpc, threads: 4]}
  ]

  def run do
    Bench.start()

    IO.puts(
      "SnakeBridge wake-ups benchmark: #{@rounds} rounds of #{@calls} sequential calls per configuration"
    )

    rounds =
      for round <- 1..@rounds do
        IO.puts("round #{round}/#{@rounds} ...")
        Map.new(@configs, fn {label, opts} -> {label, measure(opts)} end)
      end

    for {label, _} <- @configs do
      runs = Enum.map(rounds, & &1[label])
      us = Bench.median(Enum.map(runs, & &1.us))
      IO.puts("\n#{label}: #{Float.round(us, 1)} µs per call")

      for side <- [:worker, :vm] do
        threads =
          runs
          |> Enum.flat_map(&Map.keys(&1[side]))
          |> Enum.uniq()
          |> Enum.map(fn thread ->
            {thread, Bench.median(Enum.map(runs, &Map.get(&1[side], thread, 0.0)))}
          end)
          |> Enum.filter(fn {_, per_call} -> per_call >= 0.05 end)

        total = threads |> Enum.map(&elem(&1, 1)) |> Enum.sum()

        IO.puts(
          "  #{side} threads, switches per call (#{Float.round(total, 2)} in all): " <>
            Enum.map_join(threads, ", ", fn {t, n} -> "#{t} #{Float.round(n, 2)}" end)
        )
      end
    end
  end

  defp measure(opts) do
    name = :"wakeups_#{System.unique_integer([:positive])}"
    {:ok, pool} = SnakeBridge.Pool.start_link([name: name, size: 1] ++ opts)
    [%{pid: worker}] = SnakeBridge.Pool.workers(name)
    call = fn -> {:ok, 3} = SnakeBridge.call("operator", "add", [1, 2], [], pool: name) end
    for _ <- 1..2_000, do: call.()

    w0 = switches(worker)
    v0 = switches(System.pid())
    us = Bench.seconds(fn -> for _ <- 1..@calls, do: call.() end) * 1.0e6 / @calls
    w1 = switches(worker)
    v1 = switches(System.pid())
    GenServer.stop(pool)
    %{us: us, worker: per_call(w0, w1), vm: per_call(v0, v1)}
  end

  # Context switches of each thread, by thread name (threads of one name summed).
  defp switches(os_pid) do
    Path.wildcard("/proc/#{os_pid}/task/*/status")
    |> Enum.map(&File.read!/1)
    |> Enum.map(fn status ->
      [_, name] = Regex.run(~r/Name:\s+(.*)/, status)
      [_, v] = Regex.run(~r/\nvoluntary_ctxt_switches:\s+(\d+)/, status)
      [_, nv] = Regex.run(~r/nonvoluntary_ctxt_switches:\s+(\d+)/, status)
      {thread_kind(name), String.to_integer(v) + String.to_integer(nv)}
    end)
    |> Enum.group_by(&elem(&1, 0), &elem(&1, 1))
    |> Map.new(fn {name, counts} -> {name, Enum.sum(counts)} end)
  end

  # "snakebridge-py-0" and "snakebridge-py-1" are one kind; "1_scheduler" and
  # "2_scheduler" too.
  defp thread_kind(name) do
    name
    |> String.replace(~r/-\d+$/, "-N")
    |> String.replace(~r/^\d+_/, "N_")
  end

  defp per_call(before, later) do
    Map.new(later, fn {thread, n} -> {thread, (n - Map.get(before, thread, 0)) / @calls} end)
  end
end

WakeupsBench.run()
