defmodule SnakeBridge.Test.Transforms do
  @moduledoc false
  def tagged(value), do: {:counter, value}
end

defmodule SnakeBridge.GeneratorOptionsTest do
  @moduledoc """
  What a config's options do to the generated functions' calls: caching, sessions,
  telemetry, singletons, result transforms, configured types and version checks.
  """
  use ExUnit.Case, async: false

  alias SnakeBridge.Generator

  setup_all do
    dir = Path.join(System.tmp_dir!(), "sb-gen-options-#{System.unique_integer([:positive])}")

    for integration <- ["sb_fixtures", "sb_cached", "sb_loud", "sb_quiet"] do
      {:ok, _} =
        SnakeBridge.Introspection.describe("sb_fixtures", cache_dir: dir, integration: integration)
    end

    on_exit(fn -> File.rm_rf(dir) end)
    %{dir: dir}
  end

  defp config(dir, overrides) do
    Map.merge(
      %{
        python_module: "sb_fixtures",
        introspection: %{cache_path: dir},
        functions: [%{python_path: "sb_fixtures.pid"}]
      },
      Map.new(overrides)
    )
  end

  # The generated modules do not exist when this file compiles: call them through apply/3.
  defp run(module, function, args), do: apply(module, function, args)

  defp attach(event) do
    parent = self()
    id = make_ref()
    :telemetry.attach(id, event, fn name, _, meta, _ -> send(parent, {:event, name, meta}) end, nil)
    on_exit(fn -> :telemetry.detach(id) end)
  end

  test "cacheable functions use the result cache with the config's TTL", %{dir: dir} do
    Generator.generate_and_load(
      config(dir,
        elixir_module: SBGen.Cached,
        integration_id: :sb_cached,
        caching: %{enabled: true, ttl: 60_000},
        functions: [
          %{python_path: "sb_fixtures.counted", cacheable: true},
          %{python_path: "sb_fixtures.count_of"}
        ]
      )
    )

    key = "gen-#{System.unique_integer([:positive])}"

    # (Calls in a session bypass the cache: it is only for calls any worker may answer.)
    for _ <- 1..3, do: assert(run(SBGen.Cached, :counted!, [key, 7]) == 7)
    {:ok, counts} = SnakeBridge.broadcast("sb_fixtures", "count_of", [key])
    assert counts |> Map.values() |> Enum.sum() == 1
  end

  test "a generator function marked cacheable and pure streams (a stream is neither cached nor retried)",
       %{dir: dir} do
    Generator.generate_and_load(
      config(dir,
        elixir_module: SBGen.Streams,
        integration_id: :sb_cached,
        caching: %{enabled: true},
        functions: [%{python_path: "sb_fixtures.fail_after", cacheable: true, pure: true}]
      )
    )

    assert run(SBGen.Streams, :fail_after, [3]) |> Enum.take(3) == [0, 1, 2]
  end

  test "a function's configured timeout, in milliseconds or :infinity, is its calls' default",
       %{dir: dir} do
    Generator.generate_and_load(
      config(dir,
        elixir_module: SBGen.Timeouts,
        functions: [
          %{python_path: "sb_fixtures.sleep_then", timeout: :infinity},
          %{python_path: "sb_fixtures.sleep_then_pid", timeout: 50}
        ]
      )
    )

    # A pool whose own default is shorter than the call takes.
    start_supervised!({SnakeBridge.TestPool, name: :short_timeouts, size: 1, timeout: 100})
    opts = [[], [pool: :short_timeouts]]
    assert run(SBGen.Timeouts, :sleep_then, [0.3, "slept" | opts]) == {:ok, "slept"}

    assert {:error, %SnakeBridge.Error{reason: :timeout}} =
             run(SBGen.Timeouts, :sleep_then_pid, [0.3, [], []])
  end

  test "a pooled config's calls join the caller's current session", %{dir: dir} do
    Generator.generate_and_load(config(dir, elixir_module: SBGen.Pooled, session: %{mode: :pooled}))

    SnakeBridge.Session.with_session(fn session ->
      assert SnakeBridge.Session.current() == session
      pids = for _ <- 1..6, do: run(SBGen.Pooled, :pid!, [])
      assert Enum.uniq(pids) == [session.worker_pid]
    end)

    assert SnakeBridge.Session.current() == nil
  end

  test "a session-aware constructor joins the current session; a singleton is shared", %{
    dir: dir
  } do
    Generator.generate_and_load(
      config(dir,
        elixir_module: SBGen.Objects,
        classes: [
          %{
            python_path: "sb_fixtures.Counter",
            elixir_module: SBGen.Objects.Counter,
            constructor: %{session_aware: true},
            methods: [%{name: "add"}, %{name: "worker"}]
          },
          %{
            python_path: "sb_fixtures.Named",
            elixir_module: SBGen.Objects.Named,
            singleton: false
          }
        ]
      )
    )

    SnakeBridge.Session.with_session(fn session ->
      counter = run(SBGen.Objects.Counter, :create!, [])
      assert counter.worker_pid == session.worker_pid
    end)

    Generator.generate_and_load(
      config(dir,
        elixir_module: SBGen.Single,
        classes: [
          %{
            python_path: "sb_fixtures.Counter",
            elixir_module: SBGen.Single.Counter,
            singleton: true,
            methods: [%{name: "add"}]
          }
        ]
      )
    )

    one = run(SBGen.Single.Counter, :instance!, [])
    assert run(SBGen.Single.Counter, :instance!, []) == one
    assert run(SBGen.Single.Counter, :add!, [one, 2]) == 2
    assert run(SBGen.Single.Counter, :add!, [run(SBGen.Single.Counter, :instance!, []), 3]) == 5

    error =
      assert_raise ArgumentError, fn ->
        Generator.generate_and_load(
          config(dir, classes: [%{python_path: "sb_fixtures.Named", singleton: true}])
        )
      end

    assert error.message =~ "classes[0].singleton: sb_fixtures.Named cannot be a singleton"
  end

  test "result_transform applies to a class's method results", %{dir: dir} do
    Generator.generate_and_load(
      config(dir,
        elixir_module: SBGen.Transformed,
        classes: [
          %{
            python_path: "sb_fixtures.Counter",
            elixir_module: SBGen.Transformed.Counter,
            methods: [%{name: "add"}],
            result_transform: &SnakeBridge.Test.Transforms.tagged/1
          }
        ]
      )
    )

    counter = run(SBGen.Transformed.Counter, :create!, [[start: 1]])
    assert run(SBGen.Transformed.Counter, :add, [counter, 1]) == {:ok, {:counter, 2}}

    error =
      assert_raise ArgumentError, fn ->
        Generator.quoted(
          config(dir,
            classes: [%{python_path: "sb_fixtures.Counter", result_transform: fn x -> x end}]
          )
        )
      end

    assert error.message =~ "must be a remote capture"
  end

  test "telemetry: a config's prefix renames its events; enabled: false silences them", %{
    dir: dir
  } do
    attach([:my_app, :python, :call, :stop])
    attach([:snakebridge, :call, :stop])

    Generator.generate_and_load(
      config(dir,
        elixir_module: SBGen.Loud,
        integration_id: :sb_loud,
        telemetry: %{enabled: true, prefix: [:my_app, :python]}
      )
    )

    Generator.generate_and_load(
      config(dir,
        elixir_module: SBGen.Quiet,
        integration_id: :sb_quiet,
        telemetry: %{enabled: false}
      )
    )

    run(SBGen.Loud, :pid!, [])
    assert_received {:event, [:my_app, :python, :call, :stop], %{integration: "sb_loud"}}

    run(SBGen.Quiet, :pid!, [])
    refute_received {:event, _, %{integration: "sb_quiet"}}
  end

  test "a config's serialization is its generated calls' codecs", %{dir: dir} do
    Generator.generate_and_load(
      config(dir,
        elixir_module: SBGen.JSONCodec,
        serialization: %{args: :json, result: :json},
        functions: [%{python_path: "sb_fixtures.echo"}]
      )
    )

    # JSON has no tuples: the tuple comes back a list (msgpack would keep it).
    assert run(SBGen.JSONCodec, :echo!, [{1, "a"}]) == [1, "a"]
    assert SnakeBridge.call!("sb_fixtures", "echo", [{1, "a"}]) == {1, "a"}

    Generator.generate_and_load(
      config(dir,
        elixir_module: SBGen.ListTensors,
        serialization: %{result: :json, tensor_passthrough: false},
        functions: [%{python_path: "sb_fixtures.arange"}]
      )
    )

    assert run(SBGen.ListTensors, :arange!, ["int32", 3]) == [0, 1, 2]
  end

  test "configured types must name parameters and types; the version must match", %{dir: dir} do
    error =
      assert_raise ArgumentError, fn ->
        Generator.quoted(
          config(dir,
            version: "9.1",
            functions: [%{python_path: "sb_fixtures.echo", args: %{valeu: :string}}]
          )
        )
      end

    assert error.message =~ ~s(functions[0].args.valeu: sb_fixtures.echo has no parameter "valeu")
    assert error.message =~ "version: the config is for sb_fixtures 9.1"
  end
end
