defmodule SnakeBridge.ConfigTest do
  use ExUnit.Case, async: true

  doctest SnakeBridge.Config

  alias SnakeBridge.Config

  @dspy %{
    python_module: "dspy",
    version: "3.4",
    integration_id: :dspy,
    introspection: %{enabled: true, discovery_depth: 1, exclude_patterns: ["*.tests*"]},
    classes: [
      %{
        python_path: "dspy.Predict",
        elixir_module: DSPy.Predict,
        constructor: %{args: %{signature: :string}, session_aware: true, timeout: 30_000},
        methods: [%{name: "__call__", elixir_name: :call, streaming: false, timeout: :infinity}],
        properties: [%{name: "signature", readonly: true}],
        result_transform: &Function.identity/1
      },
      %{
        python_path: "dspy.ChainOfThought",
        elixir_module: DSPy.ChainOfThought,
        extends: DSPy.Predict
      }
    ],
    functions: [%{python_path: "dspy.configure", elixir_name: :configure, pure: false}],
    bidirectional_tools: %{
      enabled: true,
      export_to_python: [%{python_name: "lookup", function: {String, :upcase, 1}}]
    },
    serialization: %{args: :msgpack, result: :json, tensor_passthrough: true},
    python_deps: ["dspy>=2.6"]
  }

  test "a config in the seed's style is valid" do
    assert Config.validate(@dspy) == :ok
    assert Config.validate!(@dspy) == @dspy
  end

  test "every problem is reported at once, each with its path" do
    bad =
      @dspy
      |> Map.put(:colour, :blue)
      |> Map.delete(:python_module)
      |> put_in([:classes, Access.at(0), :methods, Access.at(0), :timeout], -1)
      |> put_in([:classes, Access.at(1), :extends], DSPy.Nothing)
      |> put_in([:serialization, :args], :xml)

    assert {:error, problems} = Config.validate(bad)
    paths = Enum.map(problems, &elem(&1, 0))
    assert "colour" in paths
    assert "python_module" in paths
    assert "classes[0].methods[0].timeout" in paths
    assert "serialization.args" in paths

    error =
      assert_raise ArgumentError, fn -> Config.validate!(bad, "config/snakebridge/dspy.exs") end

    assert error.message =~ "config/snakebridge/dspy.exs"
    assert error.message =~ "classes[0].methods[0].timeout: expected a positive number"

    # References are checked once the shape is right.
    assert {:error, [{"classes[1].extends", message}]} =
             Config.validate(put_in(@dspy, [:classes, Access.at(1), :extends], DSPy.Nothing))

    assert message =~ "not a class of this config"
  end

  test "a config written by mix snakebridge.discover is valid", %{} do
    {:ok, entry} =
      SnakeBridge.Introspection.describe("json",
        cache_dir: System.tmp_dir!() |> Path.join("sb-config-test")
      )

    {config, _} = Code.eval_string(SnakeBridge.Config.Formatter.format(entry, module_path: "json"))
    assert Config.validate(config) == :ok
  end
end
