defmodule SnakeBridge.CancelTest do
  use ExUnit.Case, async: true

  import SnakeBridge.Eventually

  alias SnakeBridge.{Error, TestPool}

  # One worker with one Python thread: a second call queues behind the first.
  setup do
    name = :"serial_#{System.unique_integer([:positive])}"
    start_supervised!({TestPool, name: name, size: 1, threads: 1})
    %{pool: name}
  end

  defp call(pool, fun, args, opts \\ []),
    do: SnakeBridge.call("sb_fixtures", fun, args, [], [pool: pool] ++ opts)

  test "a call that times out while queued never runs in Python", %{pool: pool} do
    busy = Task.async(fn -> call(pool, "sleep_then", [0.5, "done"]) end)
    assert eventually(fn -> TestPool.in_flight(pool) == 1 end)

    assert {:error, %Error{reason: :timeout}} = call(pool, "mark", ["timed-out"], timeout: 50)
    assert {:ok, "done"} = Task.await(busy)
    assert {:ok, "after"} = call(pool, "mark", ["after"])
    assert {:ok, ["after"]} = call(pool, "marks", [])
  end

  test "a call whose caller dies is cancelled and never runs", %{pool: pool} do
    busy = Task.async(fn -> call(pool, "sleep_then", [0.5, "done"]) end)
    assert eventually(fn -> TestPool.in_flight(pool) == 1 end)

    {caller, monitor} = spawn_monitor(fn -> call(pool, "mark", ["orphan"], timeout: 10_000) end)
    assert eventually(fn -> TestPool.in_flight(pool) == 2 end)
    Process.exit(caller, :kill)
    assert_receive {:DOWN, ^monitor, :process, ^caller, :killed}
    # The dead caller's call handle is collected with its heap, which cancels the call.
    :erlang.garbage_collect()

    assert {:ok, "done"} = Task.await(busy)
    assert {:ok, []} = call(pool, "marks", [])
  end

  test "concurrent calls go to the least-loaded worker" do
    name = :"pair_#{System.unique_integer([:positive])}"
    start_supervised!({TestPool, name: name, size: 2, threads: 1}, id: name)

    pids =
      1..2
      |> Enum.map(fn _ ->
        Task.async(fn ->
          SnakeBridge.call!("sb_fixtures", "sleep_then_pid", [0.3], [], pool: name)
        end)
      end)
      |> Enum.map(&Task.await/1)

    assert length(Enum.uniq(pids)) == 2
  end
end
