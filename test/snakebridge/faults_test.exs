defmodule SnakeBridge.FaultsTest do
  # Workers that crash, hang, will not restart, or get more calls than they can take.
  use ExUnit.Case, async: true

  import SnakeBridge.Eventually

  alias SnakeBridge.{Error, Pool, Runtime, TestPool}

  defp call(pool, function, args, opts \\ []) do
    SnakeBridge.call("sb_fixtures", function, args, [], Keyword.put(opts, :pool, pool))
  end

  defp alive?(os_pid),
    do: match?({_, 0}, System.cmd("kill", ["-0", "#{os_pid}"], stderr_to_stdout: true))

  defp pids(pool), do: Pool.workers(pool) |> Enum.map(& &1.pid) |> Enum.sort()

  describe "a worker that dies mid-call" do
    for {label, function, status} <- [{"is killed", "die", -9}, {"segfaults", "segfault", -11}] do
      test "#{label}: every caller on it gets :worker_crashed at once, refs go stale, the pool is full again within a second" do
        pool = :"crash_#{unquote(function)}"
        start_supervised!({TestPool, name: pool, size: 2, threads: 8})
        {:ok, session} = SnakeBridge.Session.checkout(pool: pool)
        victim = session.worker_pid

        {:ok, ref} =
          Runtime.create_instance("sb_fixtures", "Counter", [], [], pool: pool, session: session)

        assert ref.worker_pid == victim

        # Four callers waiting on the victim worker (pinned by the session), each for
        # longer than the test.
        waiting =
          for _ <- 1..4 do
            Task.async(fn ->
              call(pool, "sleep_then", [60, :never], session: session, timeout: 60_000)
            end)
          end

        assert eventually(fn -> TestPool.in_flight(pool) == 4 end)
        started = System.monotonic_time(:millisecond)

        assert {:error, %Error{reason: :worker_crashed} = error} =
                 call(pool, unquote(function), [], session: session, timeout: 10_000)

        assert error.exit_status == unquote(status)
        assert error.worker_pid == victim
        assert is_binary(error.stderr_tail)

        for task <- waiting do
          assert {:error, %Error{reason: :worker_crashed, exit_status: unquote(status)}} =
                   Task.await(task)
        end

        assert System.monotonic_time(:millisecond) - started < 1_000

        # Back to two live workers within a second of the crash.
        assert eventually(fn -> length(pids(pool)) == 2 and victim not in pids(pool) end, 1_000)

        refute alive?(victim)

        assert {:error, %Error{reason: :stale_ref}} = Runtime.call_method(ref, "add", [1])

        assert {:ok, _} = call(pool, "pid", [])
      end
    end
  end

  describe "a hung call" do
    test "blocked in C: times out at its deadline; the worker is replaced and killed once its other calls are done" do
      start_supervised!({TestPool, name: :hang_replace, size: 1, threads: 4, hang_grace: 200})
      [hung_worker] = pids(:hang_replace)

      # A call that finishes normally, still running when the hang is found.
      slow = Task.async(fn -> call(:hang_replace, "sleep_then", [1.5, "done"], timeout: 10_000) end)
      assert eventually(fn -> TestPool.in_flight(:hang_replace) == 1 end)

      started = System.monotonic_time(:millisecond)
      # time.sleep blocks in C, where no exception can reach it.
      assert {:error, %Error{reason: :timeout}} =
               call(:hang_replace, "sleep_then", [3600, :never], timeout: 300)

      elapsed = System.monotonic_time(:millisecond) - started
      assert elapsed >= 300 and elapsed < 1_000

      # Other callers are not held up: a new worker takes calls while the old one finishes.
      assert eventually(
               fn -> match?([_], pids(:hang_replace)) and pids(:hang_replace) != [hung_worker] end,
               2_000
             )

      assert {:ok, pid} = call(:hang_replace, "pid", [])
      assert pid != hung_worker
      assert Task.await(slow) == {:ok, "done"}
      assert SnakeBridge.stats(:hang_replace).hung_calls == 1

      # Its last call done, the hung worker (and its stuck thread) is gone.
      assert eventually(fn -> not alive?(hung_worker) end, 2_000)
    end

    test "with on_hang: :keep the worker stays, one thread short" do
      start_supervised!(
        {TestPool, name: :hang_keep, size: 1, threads: 2, hang_grace: 100, on_hang: :keep}
      )

      [worker] = pids(:hang_keep)

      assert {:error, %Error{reason: :timeout}} =
               call(:hang_keep, "sleep_then", [3600, :never], timeout: 200)

      assert eventually(fn -> SnakeBridge.stats(:hang_keep).hung_calls == 1 end, 2_000)
      assert pids(:hang_keep) == [worker]
      assert {:ok, ^worker} = call(:hang_keep, "pid", [])
    end

    test "looping in Python: interrupted at its deadline, its thread freed, the worker kept" do
      start_supervised!({TestPool, name: :spin, size: 1, threads: 1, hang_grace: 300})
      [worker] = pids(:spin)
      assert {:error, %Error{reason: :timeout}} = call(:spin, "spin", [], timeout: 200)

      # The worker's only thread is free again: the next call runs at once.
      started = System.monotonic_time(:millisecond)
      assert {:ok, ^worker} = call(:spin, "pid", [], timeout: 5_000)
      assert System.monotonic_time(:millisecond) - started < 1_000

      Process.sleep(500)
      assert SnakeBridge.stats(:spin).hung_calls == 0
      assert pids(:spin) == [worker]
    end

    test "a call that finishes soon after its deadline does not count as hung" do
      start_supervised!({TestPool, name: :late, size: 1, hang_grace: 1_000})
      [worker] = pids(:late)
      assert {:error, %Error{reason: :timeout}} = call(:late, "sleep_then", [0.3, 1], timeout: 100)
      Process.sleep(1_500)
      assert SnakeBridge.stats(:late).hung_calls == 0
      assert pids(:late) == [worker]
    end
  end

  describe "a worker that cannot start" do
    # A fresh log for `sb_fixtures.start_once` (which counts the lines of it): unique to
    # this run of this test, and removed after it, so no earlier run's file counts.
    defp start_once_log do
      dir =
        Path.join(
          System.tmp_dir!(),
          "sb-start-once-#{System.pid()}-#{:erlang.unique_integer([:positive])}"
        )

      File.mkdir_p!(dir)
      on_exit(fn -> File.rm_rf(dir) end)
      Path.join(dir, "log")
    end

    test "an import error in init fails the pool's start, naming the call and the error" do
      log = start_once_log()
      File.write!(log, "earlier\n")

      assert {:error, {%Error{reason: :worker_start_failed, message: message}, _}} =
               start_supervised(
                 {TestPool,
                  name: :init_fails,
                  size: 1,
                  strict: true,
                  init: [{"sb_fixtures", "start_once", [log], []}]}
               )

      assert message =~ "sb_fixtures.start_once"
      assert message =~ "ImportError"
      assert message =~ "cannot import a dependency"
    end

    test "restarts back off instead of looping, and calls say why no worker is alive" do
      log = start_once_log()

      start_supervised!(
        {TestPool, name: :restart_fails, size: 1, init: [{"sb_fixtures", "start_once", [log], []}]}
      )

      assert {:error, %Error{reason: :worker_crashed}} = call(:restart_fails, "die", [])
      killed = System.monotonic_time(:millisecond)

      # Long enough for a restart to have failed even on a loaded machine.
      assert {:error, %Error{reason: :no_workers, message: message}} =
               call(:restart_fails, "pid", [], timeout: 4_000)

      assert message =~ "the last attempt to start one failed"
      assert message =~ "cannot import a dependency"

      Process.sleep(max(0, 6_000 - (System.monotonic_time(:millisecond) - killed)))
      attempts = log |> File.read!() |> String.split("\n", trim: true) |> length()
      # One start, then restarts 0.1 s, 0.1 s, 0.2 s, 0.4 s, 0.8 s, 1.6 s apart, each
      # after its own start-up: about seven in six seconds. A tight loop would make
      # twenty or more (a start takes about 0.3 s).
      assert attempts >= 2 and attempts <= 9, "#{attempts} start attempts in 6 s"
    end
  end

  test "past size × threads + max_queue, calls fail at once with :overloaded" do
    start_supervised!({TestPool, name: :busy, size: 1, threads: 1, max_queue: 2})

    # One running, two queued.
    busy =
      for _ <- 1..3 do
        Task.async(fn -> call(:busy, "sleep_then", [0.5, :ok], timeout: 10_000) end)
      end

    assert eventually(fn -> TestPool.in_flight(:busy) == 3 end)
    started = System.monotonic_time(:millisecond)

    assert {:error, %Error{reason: :overloaded, message: message}} =
             call(:busy, "pid", [], timeout: 10_000)

    assert System.monotonic_time(:millisecond) - started < 100
    assert message =~ "limit"

    assert Enum.map(busy, &Task.await/1) == List.duplicate({:ok, "ok"}, 3)
    assert {:ok, _} = call(:busy, "pid", [])
  end
end
