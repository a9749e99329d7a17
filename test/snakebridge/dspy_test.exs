defmodule SnakeBridge.DSPyTest do
  @moduledoc """
  The first proof: modules generated for DSPy run real DSPy offline, with
  `dspy.utils.DummyLM` as the language model.
  """
  use ExUnit.Case, async: false

  @moduletag :tmp_dir
  @moduletag timeout: 180_000

  setup_all do
    dir = Path.join(System.tmp_dir!(), "snakebridge-dspy-#{System.unique_integer([:positive])}")

    {:ok, _} =
      SnakeBridge.Introspection.describe("dspy",
        cache_dir: dir,
        submodules: ["utils"],
        timeout: 120_000
      )

    config = %{
      python_module: "dspy",
      elixir_module: DSPyGen,
      introspection: %{cache_path: dir, submodules: ["utils"]},
      functions: [%{python_path: "dspy.configure"}],
      classes: [
        %{python_path: "dspy.Predict", methods: [%{name: "__call__", elixir_name: :call}]},
        %{python_path: "dspy.ChainOfThought", methods: [%{name: "__call__", elixir_name: :call}]},
        %{python_path: "dspy.Example", methods: [%{name: "with_inputs"}, %{name: "inputs"}]},
        %{python_path: "dspy.utils.DummyLM"}
      ]
    }

    modules = SnakeBridge.Generator.generate_and_load(config)
    on_exit(fn -> File.rm_rf(dir) end)
    %{modules: modules}
  end

  defp run(module, function, args), do: apply(module, function, args)

  test "the generated modules exist with their functions", %{modules: modules} do
    assert DSPyGen.Predict in modules
    assert DSPyGen.Utils.DummyLM in modules
    assert function_exported?(DSPyGen.Predict, :call, 4)
    assert function_exported?(DSPyGen, :configure!, 2)
  end

  test "Predict and ChainOfThought answer through DummyLM; Prediction fields are readable" do
    SnakeBridge.Session.with_session(fn session ->
      opts = [session: session]
      answers = [%{"answer" => "Paris"}, %{"reasoning" => "2 and 2 make 4", "answer" => "4"}]
      {:ok, lm} = run(DSPyGen.Utils.DummyLM, :create, [answers, [], opts])
      {:ok, _} = run(DSPyGen, :configure, [[lm: lm], opts])

      {:ok, predict} = run(DSPyGen.Predict, :create, ["question -> answer", [], opts])

      {:ok, prediction} =
        run(DSPyGen.Predict, :call, [predict, [], [question: "Capital of France?"], opts])

      assert %SnakeBridge.Ref{type: "dspy.primitives.prediction.Prediction"} = prediction
      assert SnakeBridge.get_attr!(prediction, :answer) == "Paris"

      {:ok, cot} = run(DSPyGen.ChainOfThought, :create, ["question -> answer", [], opts])
      thought = run(DSPyGen.ChainOfThought, :call!, [cot, [], [question: "2+2?"], opts])
      assert SnakeBridge.get_attr!(thought, :answer) == "4"
      assert SnakeBridge.get_attr!(thought, :reasoning) == "2 and 2 make 4"
    end)
  end

  test "Examples carry their fields and inputs" do
    {:ok, example} = run(DSPyGen.Example, :create, [[question: "q?", answer: "a"]])
    {:ok, with_inputs} = run(DSPyGen.Example, :with_inputs, [example, ["question"]])
    {:ok, inputs} = run(DSPyGen.Example, :inputs, [with_inputs])
    assert SnakeBridge.call_method!(inputs, "keys") == ["question"]
  end
end
