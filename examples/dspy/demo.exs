# SnakeBridge's first proof: DSPy as generated Elixir modules, run offline.
#
# `DSPyConfig` (dspy_config.exs) describes the DSPy API to expose; `use SnakeBridge.Generator`
# turns it into documented, typed modules (DSPy.Predict, DSPy.ChainOfThought, DSPy.ReAct, ...)
# at compile time. The language model is DSPy's own `DummyLM`, so no network is needed.
#
# Run with `make demo`, or `mix run examples/dspy/demo.exs`.

Code.require_file("dspy_config.exs", __DIR__)

{micros, _} =
  :timer.tc(fn ->
    defmodule DSPyDemo.Generated do
      @moduledoc false
      use SnakeBridge.Generator, config: DSPyConfig
    end
  end)

modules = [DSPy, DSPy.Predict, DSPy.ChainOfThought, DSPy.ReAct, DSPy.Prediction, DSPy.Example]
functions = Enum.sum(for m <- modules, do: length(m.__info__(:functions)))

IO.puts(
  "Generated #{length(modules)}+ DSPy modules (#{functions} functions) in #{div(micros, 1000)} ms"
)

IO.puts(
  "  DSPy.Predict: " <>
    Enum.map_join(DSPy.Predict.__info__(:functions), ", ", fn {f, a} -> "#{f}/#{a}" end)
)

show = fn label, value -> IO.puts(String.pad_trailing(label, 44) <> inspect(value)) end

# One session: every call below runs on the same worker, so DummyLM's scripted answers are
# consumed in order.
SnakeBridge.Session.with_session(fn session ->
  opts = [session: session]

  weather = fn %{"city" => city} -> "sunny in #{city}" end

  answers = [
    %{"answer" => "Paris"},
    %{"reasoning" => "2 and 2 make 4", "answer" => "4"},
    %{
      "next_thought" => "Ask the weather tool",
      "next_tool_name" => "weather",
      "next_tool_args" => %{"city" => "Paris"}
    },
    %{"next_thought" => "I know it now", "next_tool_name" => "finish", "next_tool_args" => %{}},
    %{"reasoning" => "The tool said so", "answer" => "Sunny"}
  ]

  lm = DSPy.Utils.DummyLM.create!(answers, [], opts)
  {:ok, _} = DSPy.configure([lm: lm], opts)
  IO.puts("\nConfigured DSPy with DummyLM (#{length(answers)} scripted answers)\n")

  predict = DSPy.Predict.create!("question -> answer", [], opts)
  prediction = DSPy.Predict.call!(predict, [], [question: "What is the capital of France?"], opts)
  show.("Predict: capital of France?", DSPy.Prediction.get!(prediction, "answer", [], opts))

  cot = DSPy.ChainOfThought.create!("question -> answer", [], opts)
  thought = DSPy.ChainOfThought.call!(cot, [], [question: "What is 2+2?"], opts)
  show.("ChainOfThought: 2+2? reasoning", SnakeBridge.get_attr!(thought, :reasoning))
  show.("ChainOfThought: 2+2? answer", SnakeBridge.get_attr!(thought, :answer))
  show.("Prediction.keys", DSPy.Prediction.keys!(thought, [], opts))

  # A streaming: true method: an Elixir Stream, consumed lazily.
  names = cot |> DSPy.ChainOfThought.named_predictors([], opts) |> Enum.map(&elem(&1, 0))
  show.("ChainOfThought.named_predictors (Stream)", names)

  # ReAct calls back into Elixir: the tool is an Elixir function.
  tool =
    DSPy.Tool.create!(
      weather,
      [name: "weather", desc: "The weather in a city", args: %{"city" => %{"type" => "string"}}],
      opts
    )

  react = DSPy.ReAct.create!("question -> answer", [tool], [], opts)
  result = DSPy.ReAct.call!(react, [], [question: "Weather in Paris?"], opts)
  show.("ReAct: weather in Paris? answer", SnakeBridge.get_attr!(result, :answer))
  show.("ReAct: tool observation", SnakeBridge.get_attr!(result, :trajectory)["observation_0"])

  example = DSPy.Example.create!([question: "Capital of Italy?", answer: "Rome"], opts)

  inputs =
    example |> DSPy.Example.with_inputs!(["question"], [], opts) |> DSPy.Example.inputs!([], opts)

  show.("Example.with_inputs(question).inputs", DSPy.Example.to_map!(inputs, [], opts))

  show.("Example.items (Stream)", example |> DSPy.Example.items([], opts) |> Enum.to_list())
end)
