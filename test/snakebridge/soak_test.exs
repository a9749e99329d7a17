defmodule SnakeBridge.SoakTest do
  # Many callers, and workers killed under them: every call is answered exactly once, and
  # nothing grows. `make test` runs 20,000 calls; `make soak` the full 200,000
  # (SNAKEBRIDGE_SOAK_CALLS sets any number).
  use ExUnit.Case, async: false

  alias SnakeBridge.{Error, Pool, TestPool}

  @moduletag timeout: :infinity

  @calls String.to_integer(System.get_env("SNAKEBRIDGE_SOAK_CALLS", "20000"))
  @callers 64
  # One call in a hundred kills its worker.
  @kill_one_in 100

  test "#{@calls} calls from #{@callers} callers, 1% of them killing their worker" do
    start_supervised!({TestPool, name: :soak, size: 2})
    # Warm up, then take the baseline.
    run_callers(2_000, 0)
    before = measure()

    started = System.monotonic_time(:millisecond)
    outcomes = run_callers(@calls, @kill_one_in)
    seconds = (System.monotonic_time(:millisecond) - started) / 1000

    # Let the last replacement finish, and the garbage go.
    assert wait_until(5_000, fn -> length(Pool.workers(:soak)) == 2 end)
    after_run = measure()

    totals = Enum.reduce(outcomes, %{}, &Map.merge(&1, &2, fn _, a, b -> a + b end))
    kills = Map.get(totals, :killed, 0)

    IO.puts("""

    soak: #{@calls} calls, #{@callers} callers, #{kills} worker kills in #{Float.round(seconds, 1)} s
      answered: #{Map.get(totals, :ok, 0)} values, #{Map.get(totals, :crashed, 0)} worker_crashed
      BEAM RSS #{mb(before.beam_rss)} -> #{mb(after_run.beam_rss)} MB, BEAM memory #{mb(before.beam_memory)} -> #{mb(after_run.beam_memory)} MB
      BEAM processes #{before.processes} -> #{after_run.processes}
      worker RSS #{inspect(Enum.map(before.worker_rss, &mb/1))} -> #{inspect(Enum.map(after_run.worker_rss, &mb/1))} MB
      agent processes {running, zombie} #{inspect(before.agents)} -> #{inspect(after_run.agents)}
    """)

    # Every call was answered once: a value, or the crash of the worker running it.
    assert for({{:unexpected, what}, n} <- totals, do: {what, n}) == []
    assert Map.get(totals, :ok, 0) + Map.get(totals, :crashed, 0) + kills == @calls
    assert Map.get(totals, :leftover_messages, 0) == 0
    assert kills >= div(@calls, @kill_one_in * 2)

    # Nothing grew.
    assert after_run.processes <= before.processes + 5
    assert after_run.beam_memory < before.beam_memory + 64 * 1024 * 1024
    assert after_run.beam_rss < before.beam_rss + 256 * 1024 * 1024
    assert after_run.agents == before.agents

    for rss <- after_run.worker_rss,
        do: assert(rss < 2 * Enum.max(before.worker_rss) + 64 * 1024 * 1024)
  end

  # Runs `calls` calls spread over the callers; returns each caller's counts.
  defp run_callers(calls, kill_one_in) do
    for caller <- 1..@callers do
      n = div(calls, @callers) + if(caller <= rem(calls, @callers), do: 1, else: 0)
      Task.async(fn -> run_caller(caller, n, kill_one_in) end)
    end
    |> Task.await_many(:infinity)
  end

  defp run_caller(caller, n, kill_one_in) do
    counts =
      Enum.reduce(1..n//1, %{}, fn i, counts ->
        key = outcome(caller * 1_000_000 + i, kill_one_in)
        Map.update(counts, key, 1, &(&1 + 1))
      end)

    # A second reply to any call would be waiting here.
    Process.sleep(10)
    {:message_queue_len, left} = Process.info(self(), :message_queue_len)
    Map.put(counts, :leftover_messages, left)
  end

  defp outcome(id, kill_one_in) do
    if kill_one_in > 0 and rem(:erlang.phash2(id), kill_one_in) == 0 do
      case SnakeBridge.call("sb_fixtures", "die", [], [], pool: :soak) do
        {:error, %Error{reason: :worker_crashed}} -> :killed
        other -> {:unexpected, other}
      end
    else
      case SnakeBridge.call("sb_fixtures", "echo", [id], [], pool: :soak) do
        {:ok, ^id} -> :ok
        {:error, %Error{reason: :worker_crashed}} -> :crashed
        other -> {:unexpected, other}
      end
    end
    |> case do
      {:unexpected, other} -> {:unexpected, inspect(other)}
      key -> key
    end
  end

  defp measure do
    for pid <- Process.list(), do: :erlang.garbage_collect(pid)

    %{
      beam_rss: rss(System.pid()),
      beam_memory: :erlang.memory(:total),
      processes: length(Process.list()),
      worker_rss: Enum.map(Pool.workers(:soak), &rss(&1.pid)),
      agents: agents()
    }
  end

  defp rss(os_pid) do
    case File.read("/proc/#{os_pid}/status") do
      {:ok, status} ->
        [_, kb] = Regex.run(~r/VmRSS:\s+(\d+) kB/, status)
        String.to_integer(kb) * 1024

      {:error, _} ->
        0
    end
  end

  # The VM's worker processes: {running, zombies}.
  defp agents do
    me = System.pid()

    Path.wildcard("/proc/[0-9]*/stat")
    |> Enum.flat_map(fn path ->
      with {:ok, stat} <- File.read(path),
           [_, rest] <- String.split(stat, ") ", parts: 2),
           [state, ^me | _] <- String.split(rest, " "),
           {:ok, cmdline} <- File.read(Path.join(Path.dirname(path), "cmdline")),
           true <- String.contains?(cmdline, "snakebridge_agent") do
        [state]
      else
        _ -> []
      end
    end)
    |> Enum.reduce({0, 0}, fn
      "Z", {running, zombies} -> {running, zombies + 1}
      _, {running, zombies} -> {running + 1, zombies}
    end)
  end

  defp mb(bytes), do: Float.round(bytes / 1_048_576, 1)

  defp wait_until(ms, fun) do
    deadline = System.monotonic_time(:millisecond) + ms

    Enum.reduce_while(Stream.repeatedly(fn -> :tick end), nil, fn _, _ ->
      cond do
        fun.() -> {:halt, true}
        System.monotonic_time(:millisecond) > deadline -> {:halt, false}
        true -> {:cont, Process.sleep(20)}
      end
    end)
  end
end
