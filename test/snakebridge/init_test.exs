defmodule SnakeBridge.InitTest do
  use ExUnit.Case, async: true

  alias SnakeBridge.{Error, TestPool}

  defp on_each_worker(pool, fun, args) do
    {:ok, results} = SnakeBridge.broadcast("sb_fixtures", fun, args, [], pool: pool)
    results
  end

  test "init calls run on every worker at start and after a restart" do
    start_supervised!(
      {TestPool,
       name: :init_pool, size: 2, init: [{"sb_fixtures", "set_global", ["configured"], []}]}
    )

    assert on_each_worker(:init_pool, "get_global", []) |> Map.values() == [
             "configured",
             "configured"
           ]

    [%{pid: victim} | _] = SnakeBridge.Pool.workers(:init_pool)
    {:ok, session} = SnakeBridge.Session.checkout(pool: :init_pool)

    if session.worker_pid == victim do
      assert {:error, %Error{reason: :worker_crashed}} =
               SnakeBridge.call("sb_fixtures", "die", [], [], session: session)
    else
      System.cmd("kill", ["-9", "#{victim}"])
    end

    SnakeBridge.Session.release(session)

    assert SnakeBridge.Eventually.eventually(
             fn ->
               workers = SnakeBridge.Pool.workers(:init_pool)
               length(workers) == 2 and victim not in Enum.map(workers, & &1.pid)
             end,
             10_000
           )

    assert on_each_worker(:init_pool, "get_global", []) |> Map.values() == [
             "configured",
             "configured"
           ]
  end

  test "a failing init call fails the pool's start with the Python error" do
    assert {:error, {%Error{reason: :worker_start_failed} = error, _}} =
             start_supervised(
               {TestPool,
                name: :bad_init_pool,
                size: 1,
                strict: true,
                init: [{"sb_fixtures", "fail", ["bad init"], []}]}
             )

    assert error.message =~ "sb_fixtures.fail"
    assert error.message =~ "bad init"
  end

  test "tools are registered on every worker under their Python name" do
    start_supervised!(
      {TestPool,
       name: :tools_pool,
       size: 2,
       tools: [{"double", fn x -> 2 * x end}, {"shout", &String.upcase/1}]}
    )

    assert on_each_worker(:tools_pool, "call_tool", ["double", 21]) |> Map.values() == [42, 42]

    assert SnakeBridge.call!("sb_fixtures", "call_tool", ["shout", "hi"], [], pool: :tools_pool) ==
             "HI"

    assert SnakeBridge.call!("snakebridge_agent.tools", "names", [], [], pool: :tools_pool) == [
             "double",
             "shout"
           ]
  end

  test "broadcast reaches every live worker" do
    start_supervised!({TestPool, name: :broadcast_pool, size: 2})

    assert {:ok, pids} =
             SnakeBridge.broadcast("sb_fixtures", "set_global", ["x"], [], pool: :broadcast_pool)

    assert map_size(pids) == 2
    assert Enum.all?(pids, fn {worker_pid, returned} -> worker_pid == returned end)
    assert on_each_worker(:broadcast_pool, "get_global", []) |> Map.values() == ["x", "x"]

    assert {:error, %Error{reason: :python_exception}} =
             SnakeBridge.broadcast("sb_fixtures", "fail", ["no"], [], pool: :broadcast_pool)

    # An object lives on one worker: it cannot be an argument of what runs on all of them.
    {:ok, object} = SnakeBridge.call("sb_fixtures", "unsendable", [], [], pool: :broadcast_pool)

    assert_raise ArgumentError,
                 ~r/object references live on one worker and cannot be broadcast/,
                 fn ->
                   SnakeBridge.broadcast("sb_fixtures", "echo", [object], [], pool: :broadcast_pool)
                 end

    # Its codecs are chosen like a call's: JSON has no tuples.
    json = [pool: :broadcast_pool, serialization: %{args: :json, result: :json}]
    assert {:ok, echoed} = SnakeBridge.broadcast("sb_fixtures", "echo", [{1, "a"}], [], json)
    assert Map.values(echoed) == [[1, "a"], [1, "a"]]

    assert {:ok, echoed} =
             SnakeBridge.broadcast("sb_fixtures", "echo", [{1, "a"}], [], pool: :broadcast_pool)

    assert Map.values(echoed) == [{1, "a"}, {1, "a"}]
  end

  test "a pool applies its integrations' init calls (secrets, nested calls) and tools" do
    System.put_env("SB_INIT_TEST_SECRET", "s3cret")

    config = %SnakeBridge.Config{
      python_module: "sb_fixtures",
      init: [
        %{
          python_path: "sb_fixtures.set_global",
          args: [
            %{
              secret: {:system, "SB_INIT_TEST_SECRET"},
              joined: {:call, "os.path.join", ["a", {:call, "builtins.str.upper", ["b"], []}], %{}}
            }
          ]
        }
      ],
      bidirectional_tools: %{
        enabled: true,
        export_to_python: [%{python_name: "shout", function: {String, :upcase, 1}}]
      }
    }

    start_supervised!({TestPool, name: :integration_pool, size: 2, integrations: [config]})

    assert on_each_worker(:integration_pool, "get_global", []) |> Map.values() ==
             List.duplicate(%{"secret" => "s3cret", "joined" => "a/B"}, 2)

    assert SnakeBridge.call!("sb_fixtures", "call_tool", ["shout", "hi"], [],
             pool: :integration_pool
           ) == "HI"
  end

  test "an unset secret fails the pool's start with a clear error" do
    config = %{
      python_module: "sb_fixtures",
      init: [%{python_path: "sb_fixtures.set_global", args: [{:system, "SB_INIT_TEST_UNSET"}]}]
    }

    assert {:error, %Error{reason: :invalid_config, message: message}} =
             SnakeBridge.Pool.start(name: :unset_secret_pool, integrations: [config])

    assert message ==
             "sb_fixtures: init[0].args[0]: the environment variable SB_INIT_TEST_UNSET is not set"

    assert_raise ArgumentError, ~r/invalid SnakeBridge config.*colour: unknown key/s, fn ->
      SnakeBridge.Pool.start(integrations: [%{python_module: "x", colour: 1}])
    end
  end

  test "bad init and tools options are refused" do
    assert_raise ArgumentError, ~r/:init/, fn -> SnakeBridge.Pool.start_link(init: [:nope]) end
    assert_raise ArgumentError, ~r/:tools/, fn -> SnakeBridge.Pool.start_link(tools: [{"x", 1}]) end
  end
end
