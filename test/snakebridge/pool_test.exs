defmodule SnakeBridge.PoolTest do
  use ExUnit.Case, async: true

  alias SnakeBridge.{Error, TestPool}

  test "the default pool runs the configured number of distinct worker processes" do
    workers = SnakeBridge.Pool.workers()
    assert length(workers) == 2
    assert workers |> Enum.map(& &1.pid) |> Enum.uniq() |> length() == 2
    assert Enum.all?(workers, &(&1.python_version =~ ~r/^3\./))
  end

  test "a worker killed mid-call fails that call at once and the next call succeeds" do
    start_supervised!({TestPool, name: :crash_pool, size: 1})
    [%{pid: before}] = SnakeBridge.Pool.workers(:crash_pool)

    sleeper =
      Task.async(fn ->
        SnakeBridge.call("sb_fixtures", "sleep_then", [30, :never], [], pool: :crash_pool)
      end)

    started = System.monotonic_time(:millisecond)

    assert {:error, %Error{reason: :worker_crashed} = error} =
             SnakeBridge.call("sb_fixtures", "die", [0.2], [], pool: :crash_pool, timeout: 10_000)

    assert error.exit_status == -9
    assert error.worker_pid == before
    assert {:error, %Error{reason: :worker_crashed}} = Task.await(sleeper)
    assert System.monotonic_time(:millisecond) - started < 5_000

    assert {:ok, pid} =
             SnakeBridge.call("sb_fixtures", "pid", [], [], pool: :crash_pool, timeout: 20_000)

    assert pid != before
    refute System.cmd("kill", ["-0", "#{before}"], stderr_to_stdout: true) |> elem(1) == 0
  end

  test "a strict pool whose interpreter does not exist fails to start with a clear error" do
    assert {:error, {%Error{reason: :worker_start_failed, message: message}, _}} =
             start_supervised(
               {SnakeBridge.Pool,
                name: :bad_pool, python: "/nonexistent/python3", size: 1, strict: true}
             )

    assert message =~ "`/nonexistent/python3` was not found"
    assert message =~ "mix snakebridge.setup"
  end

  test "invalid options raise ArgumentError" do
    assert_raise ArgumentError, ~r/:size/, fn -> SnakeBridge.Pool.start_link(size: 0) end
    assert_raise ArgumentError, ~r/:bogus/, fn -> SnakeBridge.Pool.start_link(bogus: 1) end
  end

  test "stopping a pool kills its workers" do
    start_supervised!({TestPool, name: :stop_pool, size: 2})
    pids = Enum.map(SnakeBridge.Pool.workers(:stop_pool), & &1.pid)
    assert length(pids) == 2
    :ok = stop_supervised(:stop_pool)

    for pid <- pids do
      assert SnakeBridge.Eventually.eventually(fn ->
               {_, status} = System.cmd("kill", ["-0", "#{pid}"], stderr_to_stdout: true)
               status != 0
             end),
             "worker #{pid} survived its pool"
    end

    assert {:error, %Error{reason: :no_pool}} =
             SnakeBridge.call("math", "sqrt", [1], [], pool: :stop_pool)
  end
end
