defmodule SnakeBridge.CarrierTest do
  @moduledoc """
  Both carriers of frames between the BEAM and local workers: the local carrier (the
  default) and gRPC. The whole suite runs on each (`SNAKEBRIDGE_CARRIER=grpc` selects
  gRPC); this checks that the option reaches the workers and that each serves every kind
  of exchange.
  """
  use ExUnit.Case, async: true

  import SnakeBridge.Eventually

  alias SnakeBridge.TestPool

  for carrier <- [:local, :grpc] do
    test "a pool on the #{carrier} carrier calls, streams, calls back and describes" do
      carrier = unquote(carrier)
      pool = :"carrier_#{carrier}_#{System.unique_integer([:positive])}"
      start_supervised!({TestPool, name: pool, size: 1, carrier: carrier})
      opts = [pool: pool]

      assert SnakeBridge.Pool.settings(pool)[:carrier] == carrier
      [%{pid: pid}] = SnakeBridge.Pool.workers(pool)
      argv = File.read!("/proc/#{pid}/cmdline") |> String.split(<<0>>)
      assert ["--carrier", Atom.to_string(carrier)] in Enum.chunk_every(argv, 2, 1)

      assert {:ok, 3.0} = SnakeBridge.call("math", "sqrt", [9], [], opts)

      assert {:error, %SnakeBridge.Error{reason: :target_not_found}} =
               SnakeBridge.call("math", "no_such_function", [], [], opts)

      assert [0, 1, 2] = SnakeBridge.stream("builtins", "range", [3], [], opts) |> Enum.to_list()
      assert {:ok, 42} = SnakeBridge.call("sb_fixtures", "call_with", [&(&1 * 2), 21], [], opts)

      # Through shared memory, and in parts through the socket.
      big = :binary.copy(<<255>>, 3_000_000)
      assert {:ok, ^big} = SnakeBridge.call("sb_fixtures", "echo", [big], [], opts)
      text = String.duplicate("y", 70_000_000)
      assert {:ok, ^text} = SnakeBridge.call("sb_fixtures", "echo", [text], [], opts)
    end
  end

  test "an unknown carrier is refused" do
    assert_raise ArgumentError, ~r/:carrier/, fn ->
      SnakeBridge.Pool.start_link(name: :no_carrier, carrier: :http2)
    end
  end

  describe "the local carrier's hot path" do
    # An idle worker's call is read, run and answered by one Python thread: it blocks once
    # per call (waiting for the next frame). Handing the call from an I/O thread to a
    # Python thread and the reply back made about 4 blocking waits per call.
    test "an idle worker blocks once per sequential call, in one thread" do
      pool = :"hot_path_#{System.unique_integer([:positive])}"
      start_supervised!({TestPool, name: pool, size: 1, threads: 4, carrier: :local})
      [%{pid: worker}] = SnakeBridge.Pool.workers(pool)
      call = fn -> {:ok, 3} = SnakeBridge.call("operator", "add", [1, 2], [], pool: pool) end
      for _ <- 1..200, do: call.()

      calls = 1_000
      before = blocking_waits(worker)
      for _ <- 1..calls, do: call.()
      waits = blocking_waits(worker)

      per_call = Map.new(waits, fn {tid, n} -> {tid, (n - Map.get(before, tid, 0)) / calls} end)

      total = per_call |> Map.values() |> Enum.sum()
      assert total < 1.5, "blocking waits per call by thread: #{inspect(per_call)}"
      assert Enum.count(per_call, fn {_, n} -> n > 0.5 end) == 1, inspect(per_call)
    end

    test "with one Python thread busy, its queued calls, cancels and callbacks are read" do
      pool = :"hot_path_serial_#{System.unique_integer([:positive])}"
      start_supervised!({TestPool, name: pool, size: 1, threads: 1, carrier: :local})
      opts = [pool: pool]

      busy =
        Task.async(fn -> SnakeBridge.call("sb_fixtures", "sleep_then", [0.3, "done"], [], opts) end)

      assert eventually(fn -> TestPool.in_flight(pool) == 1 end)
      queued = Task.async(fn -> SnakeBridge.call("operator", "add", [1, 2], [], opts) end)

      assert {:error, %SnakeBridge.Error{reason: :timeout}} =
               SnakeBridge.call("sb_fixtures", "mark", ["late"], [], [timeout: 50] ++ opts)

      assert {:ok, "done"} = Task.await(busy)
      assert {:ok, 3} = Task.await(queued)
      assert {:ok, []} = SnakeBridge.call("sb_fixtures", "marks", [], [], opts)
      assert {:ok, 42} = SnakeBridge.call("sb_fixtures", "call_with", [&(&1 * 2), 21], [], opts)
    end
  end

  # Voluntary context switches (a thread blocked) of each thread of an OS process.
  defp blocking_waits(os_pid) do
    for status <- Path.wildcard("/proc/#{os_pid}/task/*/status"), into: %{} do
      [_, n] = Regex.run(~r/^voluntary_ctxt_switches:\s*(\d+)/m, File.read!(status))
      {status, String.to_integer(n)}
    end
  end
end
