Code.require_file("../../examples/dspy/dspy_config.exs", __DIR__)

defmodule SnakeBridge.DSPyTest do
  @moduledoc """
  The first proof: the modules `examples/dspy/dspy_config.exs` generates run real DSPy
  offline, with `dspy.utils.DummyLM` as the language model.
  """
  use ExUnit.Case, async: false

  @moduletag timeout: 180_000

  setup_all do
    dir = Path.join(System.tmp_dir!(), "snakebridge-dspy-#{System.unique_integer([:positive])}")
    on_exit(fn -> File.rm_rf(dir) end)

    # No descriptor is cached in `dir`: the generator introspects DSPy with a temporary
    # worker. The modules are compiled to .beam files so their docs and specs can be read.
    quoted =
      ExUnit.CaptureIO.with_io(:stderr, fn ->
        SnakeBridge.Generator.quoted(DSPyConfig, cache_dir: dir)
      end)
      |> then(fn {quoted, stderr} ->
        assert stderr =~ "introspecting dspy with a temporary Python worker"
        quoted
      end)

    {modules, warnings} =
      ExUnit.CaptureIO.with_io(:stderr, fn ->
        for {:defmodule, _, [name | _]} = definition <- quoted do
          :code.purge(name)
          :code.delete(name)
          [{^name, binary}] = Code.compile_quoted(definition)
          File.write!(Path.join(dir, "#{name}.beam"), binary)
          name
        end
      end)

    # The generated code compiles without a warning (as --warnings-as-errors needs).
    assert warnings == ""

    %{modules: modules, beam: &Path.join(dir, "#{&1}.beam")}
  end

  # The generated modules do not exist when this file compiles: call them through apply/3.
  defp run(module, function, args), do: apply(module, function, args)

  defp spec_source(beam, name, arity) do
    {:ok, specs} = Code.Typespec.fetch_specs(File.read!(beam))
    {_, [spec | _]} = List.keyfind(specs, {name, arity}, 0)
    Code.Typespec.spec_to_quoted(name, spec) |> Macro.to_string() |> String.replace(~r/\s+/, " ")
  end

  test "DSPyConfig generates a module per class and one for the functions", %{modules: modules} do
    for module <-
          [DSPy, DSPy.Predict, DSPy.ChainOfThought, DSPy.ReAct, DSPy.Prediction] ++
            [DSPy.Example, DSPy.LM, DSPy.Tool, DSPy.Utils.DummyLM] do
      assert module in modules
    end

    # Python signatures decide the arities: Predict(signature, ...), ReAct(signature, tools, ...).
    assert function_exported?(DSPy.Predict, :create, 1)
    assert function_exported?(DSPy.Predict, :create, 3)
    assert function_exported?(DSPy.ReAct, :create, 2)
    assert function_exported?(DSPy.Predict, :call, 4)
    assert function_exported?(DSPy, :configure!, 2)
    # ChainOfThought extends Predict in the config: it inherits `call` and the stream.
    assert function_exported?(DSPy.ChainOfThought, :call, 2)
    assert function_exported?(DSPy.ChainOfThought, :named_predictors, 3)
    refute function_exported?(DSPy.ChainOfThought, :named_predictors!, 3)
  end

  test "docs carry the Python docstring and signature; specs the configured types", %{beam: beam} do
    {:docs_v1, _, :elixir, _, %{"en" => moduledoc}, _, docs} = Code.fetch_docs(beam.(DSPy.Predict))
    assert moduledoc != ""

    {_, _, _, %{"en" => call_doc}, _} =
      Enum.find(docs, &match?({{:function, :call, 4}, _, _, _, _}, &1))

    assert call_doc =~ "Python: `dspy.Predict.__call__("

    # Google-style sections read as Markdown: headings and lists, not indented code.
    {:docs_v1, _, :elixir, _, %{"en" => cot_doc}, _, _} =
      Code.fetch_docs(beam.(DSPy.ChainOfThought))

    assert cot_doc =~ "### Args\n\n* `signature` - "
    assert cot_doc =~ "```python\n>>> import dspy"
    refute cot_doc =~ "\n    signature:"
    assert Enum.any?(docs, &match?({{:type, :t, 0}, _, _, %{"en" => _}, _}, &1))

    assert spec_source(beam.(DSPy.Predict), :call, 4) =~
             "{:ok, DSPy.Prediction.t()} | {:error, SnakeBridge.Error.t()}"

    assert spec_source(beam.(DSPy.Predict), :create, 3) =~
             "create(String.t(), keyword() | map(), keyword()) :: {:ok, t()}"

    # The module's own t() reads back as local.
    assert spec_source(beam.(DSPy.ReAct), :create, 4) =~ "create(String.t(), [DSPy.Tool.t()],"
    assert spec_source(beam.(DSPy.Prediction), :keys, 3) =~ "{:ok, [String.t()]}"
    assert spec_source(beam.(DSPy.Predict), :named_predictors, 3) =~ ":: Enumerable.t()"
  end

  test "Predict, ChainOfThought and ReAct answer through DummyLM; Predictions are readable" do
    SnakeBridge.Session.with_session(fn session ->
      opts = [session: session]

      answers = [
        %{"answer" => "Paris"},
        %{"reasoning" => "2 and 2 make 4", "answer" => "4"},
        %{
          "next_thought" => "Ask the tool",
          "next_tool_name" => "weather",
          "next_tool_args" => %{"city" => "Paris"}
        },
        %{"next_thought" => "Done", "next_tool_name" => "finish", "next_tool_args" => %{}},
        %{"reasoning" => "The tool said so", "answer" => "Sunny"}
      ]

      {:ok, lm} = run(DSPy.Utils.DummyLM, :create, [answers, [], opts])
      {:ok, _} = run(DSPy, :configure, [[lm: lm], opts])

      {:ok, predict} = run(DSPy.Predict, :create, ["question -> answer", [], opts])

      {:ok, prediction} =
        run(DSPy.Predict, :call, [predict, [], [question: "Capital of France?"], opts])

      assert %SnakeBridge.Ref{type: "dspy.primitives.prediction.Prediction"} = prediction
      assert run(DSPy.Prediction, :get!, [prediction, "answer", [], opts]) == "Paris"

      cot = run(DSPy.ChainOfThought, :create!, ["question -> answer", [], opts])
      thought = run(DSPy.ChainOfThought, :call!, [cot, [], [question: "2+2?"], opts])
      assert SnakeBridge.get_attr!(thought, :answer) == "4"
      assert SnakeBridge.get_attr!(thought, :reasoning) == "2 and 2 make 4"
      assert run(DSPy.Prediction, :keys!, [thought, [], opts]) == ["reasoning", "answer"]

      # The tool is an Elixir function that DSPy calls from Python.
      test_pid = self()

      weather = fn %{"city" => city} ->
        send(test_pid, {:tool_called, city})
        "sunny in #{city}"
      end

      tool_kwargs = [name: "weather", desc: "Weather", args: %{"city" => %{"type" => "string"}}]
      tool = run(DSPy.Tool, :create!, [weather, tool_kwargs, opts])
      react = run(DSPy.ReAct, :create!, ["question -> answer", [tool], [], opts])
      result = run(DSPy.ReAct, :call!, [react, [], [question: "Weather in Paris?"], opts])
      assert_received {:tool_called, "Paris"}
      assert SnakeBridge.get_attr!(result, :answer) == "Sunny"
      assert SnakeBridge.get_attr!(result, :trajectory)["observation_0"] == "sunny in Paris"
    end)
  end

  test "a streaming: true method yields a lazy Elixir Stream" do
    cot = run(DSPy.ChainOfThought, :create!, ["question -> answer"])
    stream = run(DSPy.ChainOfThought, :named_predictors, [cot])
    assert is_function(stream, 2) or is_struct(stream, Stream)

    assert [{"predict", %SnakeBridge.Ref{type: "dspy.predict.predict.Predict"}}] =
             Enum.to_list(stream)

    example = run(DSPy.Example, :create!, [[question: "q?", answer: "a"]])
    assert run(DSPy.Example, :items, [example]) |> Enum.take(1) == [{"question", "q?"}]
  end

  test "Examples carry their fields and inputs" do
    example = run(DSPy.Example, :create!, [[question: "q?", answer: "a"]])
    inputs = example |> then(&run(DSPy.Example, :with_inputs!, [&1, ["question"]]))
    inputs = run(DSPy.Example, :inputs!, [inputs])
    assert run(DSPy.Example, :to_map!, [inputs]) == %{"question" => "q?"}

    labels =
      run(DSPy.Example, :labels!, [run(DSPy.Example, :with_inputs!, [example, ["question"]])])

    assert run(DSPy.Example, :to_map!, [labels]) == %{"answer" => "a"}
  end
end
