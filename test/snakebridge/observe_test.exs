defmodule SnakeBridge.ObserveTest do
  use ExUnit.Case, async: true

  doctest SnakeBridge.PythonError
  doctest SnakeBridge.Bytes

  alias SnakeBridge.{Error, Eventually, PythonError, TestPool}

  setup do
    name = :"observe_#{System.unique_integer([:positive])}"
    start_supervised!({TestPool, name: name, size: 1})
    %{pool: name}
  end

  defp count_of(pool, key), do: SnakeBridge.call!("sb_fixtures", "count_of", [key], [], pool: pool)

  test "cacheable calls are answered from the cache, keyed by arguments, until their TTL", %{
    pool: pool
  } do
    opts = [pool: pool, cache: 200]
    assert SnakeBridge.call!("sb_fixtures", "counted", ["a", 1], [], opts) == 1
    assert SnakeBridge.call!("sb_fixtures", "counted", ["a", 1], [], opts) == 1
    assert count_of(pool, "a") == 1
    assert SnakeBridge.call!("sb_fixtures", "counted", ["a", 2], [], opts) == 2
    assert count_of(pool, "a") == 2

    Process.sleep(250)
    assert SnakeBridge.call!("sb_fixtures", "counted", ["a", 1], [], opts) == 1
    assert count_of(pool, "a") == 3

    stats = SnakeBridge.stats(pool)
    assert stats.cache_hits == 1
    assert stats.cache_misses == 3
    assert_in_delta stats.cache_hit_ratio, 0.25, 0.001

    assert SnakeBridge.Runtime.clear_cache(pool) >= 1
  end

  test "results that are objects are never cached", %{pool: pool} do
    {:ok, a} = SnakeBridge.call("sb_fixtures", "unsendable", [], [], pool: pool, cache: true)
    {:ok, b} = SnakeBridge.call("sb_fixtures", "unsendable", [], [], pool: pool, cache: true)
    refute a.resource == b.resource
    assert SnakeBridge.stats(pool).cache_hits == 0
  end

  test "stats count calls, errors, latency and sessions", %{pool: pool} do
    for _ <- 1..5, do: SnakeBridge.call!("operator", "add", [1, 2], [], pool: pool)
    {:error, _} = SnakeBridge.call("math", "sqrt", [-1], [], pool: pool)

    SnakeBridge.Session.with_session([pool: pool], fn session ->
      for _ <- 1..4, do: SnakeBridge.call!("operator", "add", [1, 2], [], session: session)
    end)

    stats = SnakeBridge.stats(pool)
    assert stats.calls == 10
    assert stats.errors == 1
    assert stats.latency |> Enum.map(&elem(&1, 1)) |> Enum.sum() == 10
    assert {:infinity, _} = List.last(stats.latency)
    assert stats.sessions == 1
    assert stats.session_calls == 4
    assert stats.session_reuse == 4.0
    assert [%{pid: _, in_flight: 0}] = stats.workers
  end

  test "calls emit start and stop telemetry with the seed's metadata", %{pool: pool} do
    parent = self()
    id = make_ref()

    for event <- [:start, :stop, :exception] do
      :telemetry.attach(
        {id, event},
        [:snakebridge, :call, event],
        fn name, m, meta, _ ->
          if meta.integration == pool, do: send(parent, {:event, name, m, meta})
        end,
        nil
      )
    end

    on_exit(fn -> for e <- [:start, :stop, :exception], do: :telemetry.detach({id, e}) end)

    SnakeBridge.call!("os.path", "join", ["a", "b"], [], pool: pool)
    assert_received {:event, [:snakebridge, :call, :start], %{system_time: _}, start_meta}
    assert start_meta.module == "os.path" and start_meta.method == "join"

    assert_received {:event, [:snakebridge, :call, :stop], measurements, meta}
    assert measurements.duration > 0
    assert measurements.payload_bytes > 0
    assert %{streaming: false, session_id: nil, cache_hit: false, result: :ok} = meta

    SnakeBridge.call("sb_fixtures", "counted", ["t", 1], [], pool: pool, cache: true)
    SnakeBridge.call("sb_fixtures", "counted", ["t", 1], [], pool: pool, cache: true)
    assert_received {:event, [:snakebridge, :call, :stop], _, %{cache_hit: false}}
    assert_received {:event, [:snakebridge, :call, :stop], _, %{cache_hit: true}}

    assert_raise ArgumentError, fn ->
      SnakeBridge.call("sb_fixtures", "echo", [self()], [], pool: pool)
    end

    assert_received {:event, [:snakebridge, :call, :exception], %{duration: _}, _}
  end

  test "a call's telemetry says how long it waited in the worker for a Python thread" do
    pool = :"queued_#{System.unique_integer([:positive])}"
    start_supervised!({TestPool, name: pool, size: 1, threads: 1})
    parent = self()
    id = make_ref()

    :telemetry.attach(
      id,
      [:snakebridge, :call, :stop],
      fn _, m, meta, _ ->
        if meta.integration == pool, do: send(parent, {:stop, meta.method, m})
      end,
      nil
    )

    on_exit(fn -> :telemetry.detach(id) end)

    slow =
      Task.async(fn -> SnakeBridge.call("sb_fixtures", "sleep_then", [1.0, 1], [], pool: pool) end)

    assert Eventually.eventually(fn -> match?([%{in_flight: 1}], SnakeBridge.Pool.workers(pool)) end)

    assert {:ok, "a/b"} = SnakeBridge.call("os.path", "join", ["a", "b"], [], pool: pool)
    assert {:ok, 1} = Task.await(slow)

    # Its one thread was busy with the 1 s call, which was running when the second call
    # was sent: the second call waited for what was left of it. (A quarter of it: a loaded
    # machine may take a while to deliver the second call, which a tight bound failed on.)
    assert_received {:stop, "join", %{queue_time: queued}}
    assert System.convert_time_unit(queued, :native, :millisecond) >= 250
  end

  @tag :tmp_dir
  test "idempotent calls are retried after a worker crash", %{pool: pool, tmp_dir: dir} do
    marker = Path.join(dir, "died-once")

    assert {:error, %Error{reason: :worker_crashed}} =
             SnakeBridge.call("sb_fixtures", "die_once", [marker], [], pool: pool)

    File.rm!(marker)

    assert {:ok, "second try"} =
             SnakeBridge.call("sb_fixtures", "die_once", [marker], [],
               pool: pool,
               idempotent: true,
               retry_backoff: 50,
               timeout: 20_000
             )

    assert_raise ArgumentError, ~r/idempotent/, fn ->
      SnakeBridge.call("math", "sqrt", [1], [], pool: pool, retries: 1)
    end
  end

  test "well-known Python exceptions map to Elixir exceptions on request", %{pool: pool} do
    opts = [pool: pool, errors: :elixir]

    assert_raise KeyError, ~r/Python KeyError/, fn ->
      SnakeBridge.call!("operator", "getitem", [%{}, "missing"], [], opts)
    end

    assert_raise ArgumentError, ~r/Python JSONDecodeError/, fn ->
      SnakeBridge.call!("json", "loads", ["{"], [], opts)
    end

    assert_raise ArithmeticError, fn ->
      SnakeBridge.call!("operator", "truediv", [1, 0], [], opts)
    end

    assert_raise PythonError, fn ->
      SnakeBridge.call!("sb_fixtures", "call_with", [fn -> exit(:x) end], [], opts)
    end

    assert_raise PythonError, fn -> SnakeBridge.call!("math", "sqrt", [-1], [], pool: pool) end
  end
end
