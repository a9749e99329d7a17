defmodule SnakeBridge.RefsTest do
  use ExUnit.Case, async: true

  import SnakeBridge.Eventually

  alias SnakeBridge.{Error, PythonError, Ref, Runtime, TestPool}

  test "a result that is not plain data comes back as a reference with type and repr" do
    assert {:ok, %Ref{} = path} = SnakeBridge.call("pathlib", "PurePosixPath", ["/tmp/data.csv"])
    assert path.type == "pathlib.PurePosixPath"
    assert path.repr == "PurePosixPath('/tmp/data.csv')"
    assert path.worker_pid in Enum.map(SnakeBridge.Pool.workers(), & &1.pid)
    assert inspect(path) == "#SnakeBridge.Ref<pathlib.PurePosixPath PurePosixPath('/tmp/data.csv')>"
    assert Ref.alive?(path)
  end

  test "methods, attributes and passing a reference back as an argument" do
    {:ok, path} = SnakeBridge.call("pathlib", "PurePosixPath", ["/tmp/data.csv"])

    assert {:ok, ".csv"} = SnakeBridge.get_attr(path, :suffix)
    assert {:ok, %Ref{} = json} = SnakeBridge.call_method(path, :with_suffix, [".json"])
    assert SnakeBridge.get_attr!(json, "name") == "data.json"
    assert SnakeBridge.call!("builtins", "str", [json]) == "/tmp/data.json"
    assert SnakeBridge.call_method!(path, "is_relative_to", ["/tmp"]) == true
    assert SnakeBridge.call!("sb_fixtures", "echo", [[path, %{"p" => path}]]) |> length() == 2
  end

  test "set_attr changes the live object" do
    {:ok, ns} = Runtime.create_instance("types", "SimpleNamespace", [], x: 1)
    assert :ok = SnakeBridge.set_attr(ns, :x, 42)
    assert SnakeBridge.get_attr!(ns, :x) == 42
    assert :ok = SnakeBridge.set_attr(ns, "label", %{"deep" => [1, 2]})
    assert SnakeBridge.call_method!(ns, "__getattribute__", ["label"]) == %{"deep" => [1, 2]}
  end

  test "create_instance returns a reference even for plain-data results" do
    assert {:ok, %Ref{type: "collections.Counter"} = counter} =
             Runtime.create_instance("collections", "Counter", ["abracadabra"])

    assert SnakeBridge.call_method!(counter, "most_common", [1]) == [{"a", 5}]
    assert {:ok, %{"a" => 5}} = SnakeBridge.call("collections", "Counter", ["aaaaa"])
  end

  test "a missing attribute or a failing method is a Python exception" do
    {:ok, path} = SnakeBridge.call("pathlib", "PurePosixPath", ["/tmp"])

    assert {:error, %Error{reason: :python_exception, python: %PythonError{type: "AttributeError"}}} =
             SnakeBridge.get_attr(path, :no_such_attribute)

    assert_raise PythonError, ~r/AttributeError/, fn ->
      SnakeBridge.call_method!(path, :no_such_method)
    end
  end

  test "a released reference is stale and its object is freed in the worker" do
    start_supervised!({TestPool, name: :release_pool, size: 1})
    baseline = registry_size(:release_pool)
    {:ok, obj} = SnakeBridge.call("sb_fixtures", "unsendable", [], [], pool: :release_pool)
    assert registry_size(:release_pool) == baseline + 1

    assert :ok = SnakeBridge.release(obj)
    assert :ok = SnakeBridge.release(obj)
    refute Ref.alive?(obj)

    assert {:error, %Error{reason: :stale_ref, message: message}} =
             SnakeBridge.call_method(obj, "__repr__")

    assert message =~ "released"
    assert eventually(fn -> registry_size(:release_pool) == baseline end)
  end

  test "a reference whose worker died is stale" do
    start_supervised!({TestPool, name: :stale_pool, size: 1})
    {:ok, obj} = SnakeBridge.call("sb_fixtures", "unsendable", [], [], pool: :stale_pool)

    assert {:error, %Error{reason: :worker_crashed}} =
             SnakeBridge.call("sb_fixtures", "die", [], [], pool: :stale_pool)

    refute Ref.alive?(obj)

    assert {:error, %Error{reason: :stale_ref, message: message}} =
             SnakeBridge.call("builtins", "repr", [obj], [], pool: :stale_pool)

    assert message =~ "died"
  end

  test "objects from different workers cannot meet in one call" do
    start_supervised!({TestPool, name: :two_workers, size: 2, threads: 1})

    refs =
      1..2
      |> Enum.map(fn _ ->
        Task.async(fn ->
          SnakeBridge.call!("sb_fixtures", "sleep_then", [0.2, nil], [], pool: :two_workers)
          SnakeBridge.call!("sb_fixtures", "unsendable", [], [], pool: :two_workers)
        end)
      end)
      |> Enum.map(&Task.await/1)

    case Enum.uniq_by(refs, & &1.worker_pid) do
      [_, _] ->
        assert_raise ArgumentError, ~r/different workers/, fn ->
          SnakeBridge.call("sb_fixtures", "echo", [refs], [], pool: :two_workers)
        end

      [_] ->
        # Both landed on one worker (dispatch is load-based): then they may meet.
        assert {:ok, [_, _]} =
                 SnakeBridge.call("sb_fixtures", "echo", [refs], [], pool: :two_workers)
    end
  end

  @tag timeout: 120_000
  test "100,000 objects dropped in the BEAM are freed in the worker after GC" do
    start_supervised!({TestPool, name: :gc_pool, size: 1})
    baseline = registry_size(:gc_pool)
    [%{pid: os_pid}] = SnakeBridge.Pool.workers(:gc_pool)
    rss_before = rss_kb(os_pid)

    1..8
    |> Enum.map(fn _ ->
      Task.async(fn ->
        for _ <- 1..12_500 do
          {:ok, %Ref{}} = SnakeBridge.call("sb_fixtures", "unsendable", [], [], pool: :gc_pool)
        end

        :ok
      end)
    end)
    |> Enum.each(&Task.await(&1, 120_000))

    :erlang.garbage_collect()
    assert eventually(fn -> registry_size(:gc_pool) == baseline end, 10_000)
    rss_after = rss_kb(os_pid)
    # 100,000 live objects would hold ~10 MB; what remains is allocator slack.
    assert rss_after < rss_before + 8_192,
           "worker RSS grew from #{rss_before} kB to #{rss_after} kB"
  end

  defp registry_size(pool),
    do: SnakeBridge.call!("snakebridge_agent.registry", "size", [], [], pool: pool)

  defp rss_kb(os_pid) do
    "/proc/#{os_pid}/status"
    |> File.read!()
    |> then(&Regex.run(~r/VmRSS:\s+(\d+) kB/, &1))
    |> then(fn [_, kb] -> String.to_integer(kb) end)
  end
end
