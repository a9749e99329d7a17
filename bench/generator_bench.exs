# Generator benchmark, two tables, each beside a baseline measured in the same run:
#
#   1. Compile time of the modules generated from the DSPy config (examples/dspy): the plan
#      (the core's work + quoting, `SnakeBridge.Generator.quoted/2`) and compiling the quoted
#      modules, beside compiling an equally sized set of hand-written plain defs (same
#      number of modules and of functions, no docs or specs). The first compile, which
#      introspects DSPy with a temporary Python worker, is timed once and reported apart.
#   2. Per-call overhead of a generated function (`BenchGen.Operator.add/2`, generated at
#      run time with `generate_and_load/2`) against `SnakeBridge.call/3` on the same target,
#      interleaved in blocks of calls within each round (the order alternates by round).
#
# Run with `make bench`. The machine is shared and noisy: every figure is the median of
# several rounds, and the summaries quote ratios to the same-run baselines. Nothing here
# fails on a number.

Code.require_file("support.exs", __DIR__)
Code.require_file("../examples/dspy/dspy_config.exs", __DIR__)

defmodule GeneratorBench do
  alias SnakeBridge.Generator

  @rounds String.to_integer(System.get_env("BENCH_ROUNDS", "5"))
  @sequential String.to_integer(System.get_env("BENCH_SEQUENTIAL", "5000"))
  @concurrent String.to_integer(System.get_env("BENCH_CONCURRENT", "10000"))
  @callers 32
  # Sequential calls alternate between the two in blocks of this many.
  @block 500
  @workers 2
  # Plan samples per round (one takes well under a millisecond when the descriptor is hot).
  @plan_samples 20

  def run do
    Bench.start()
    # Compiling the same modules again each round must not warn.
    Code.put_compiler_option(:ignore_module_conflict, true)

    root =
      Path.join(
        System.tmp_dir!(),
        "snakebridge-bench-generator-#{System.unique_integer([:positive])}"
      )

    IO.puts(
      "SnakeBridge generator benchmark: #{@rounds} rounds; compile with docs " <>
        "#{if Code.get_compiler_option(:docs), do: "on", else: "off"}; " <>
        "#{@sequential} sequential calls each per round, #{@concurrent} calls from #{@callers} callers " <>
        "over #{@workers} workers"
    )

    try do
      compile_table(Path.join(root, "dspy"))
      call_table(Path.join(root, "operator"))
    after
      File.rm_rf(root)
    end
  end

  ## 1. Compile time of the generated DSPy modules

  defp compile_table(dir) do
    # First compile: no descriptor yet, so the generator introspects DSPy with a temporary
    # worker. Timed once, outside the rounds.
    {first_s, quoted} =
      timed(fn ->
        quoted = Generator.quoted(DSPyConfig, cache_dir: dir)
        Enum.each(quoted, &Code.compile_quoted/1)
        quoted
      end)

    sizes = Enum.map(quoted, &function_count(module_name(&1)))
    plain = plain_modules(Enum.map(sizes, &elem(&1, 0)))
    # Warm the compiler on the baseline too, then count what it defines.
    compile_seconds(plain)
    plain_sizes = Enum.map(plain, &function_count(module_name(&1)))

    generated_fns = sizes |> Enum.map(&elem(&1, 1)) |> Enum.sum()
    plain_fns = plain_sizes |> Enum.map(&elem(&1, 1)) |> Enum.sum()
    descriptor = Path.join(dir, "dspy.json")

    rounds =
      for round <- 1..@rounds do
        IO.puts("compile round #{round}/#{@rounds} ...")

        plan_hot =
          Bench.median(
            for _ <- 1..@plan_samples,
                do: Bench.seconds(fn -> Generator.quoted(DSPyConfig, cache_dir: dir) end)
          )

        # A directory the core's hot level has never seen: the descriptor is read from disk.
        plan_disk =
          Bench.median(
            for i <- 1..5 do
              fresh = Path.join(dir, "fresh-#{round}-#{i}")
              File.mkdir_p!(fresh)
              File.cp!(descriptor, Path.join(fresh, "dspy.json"))
              Bench.seconds(fn -> Generator.quoted(DSPyConfig, cache_dir: fresh) end)
            end
          )

        # Alternate which set compiles first.
        {generated, baseline} =
          if rem(round, 2) == 1 do
            g = compile_seconds(quoted)
            {g, compile_seconds(plain)}
          else
            b = compile_seconds(plain)
            {compile_seconds(quoted), b}
          end

        load = Bench.seconds(fn -> Generator.generate_and_load(DSPyConfig, cache_dir: dir) end)

        %{
          "plan (quoted/2), descriptor hot" => row(plan_hot, generated_fns),
          "plan (quoted/2), descriptor from disk" => row(plan_disk, generated_fns),
          "compile generated modules" => row(generated, generated_fns),
          "compile plain defs (baseline)" => row(baseline, plain_fns),
          "generate_and_load/2 (plan + compile)" => row(load, generated_fns)
        }
      end

    med = Bench.medians(rounds, ["total_ms", "per_fn_us"])

    IO.puts("""

    1. DSPy modules (DSPyConfig): #{length(quoted)} modules, #{generated_fns} functions \
    (#{sizes |> Enum.map(&elem(&1, 0)) |> Enum.sum()} defs); baseline: #{length(plain)} \
    modules, #{plain_fns} functions (#{plain_sizes |> Enum.map(&elem(&1, 0)) |> Enum.sum()} defs)
    first compile including introspection (once, not in the medians): \
    #{Bench.fmt(first_s * 1000)} ms
    medians over #{length(rounds)} rounds\
    """)

    Bench.table(
      Enum.map(
        [
          "plan (quoted/2), descriptor hot",
          "plan (quoted/2), descriptor from disk",
          "compile generated modules",
          "compile plain defs (baseline)",
          "generate_and_load/2 (plan + compile)"
        ],
        &{&1, med[&1]}
      ),
      [{"total_ms", "total ms"}, {"per_fn_us", "µs/function"}]
    )

    compile = med["compile generated modules"]
    baseline = med["compile plain defs (baseline)"]
    plan_hot = med["plan (quoted/2), descriptor hot"]["total_ms"]
    plan_disk = med["plan (quoted/2), descriptor from disk"]["total_ms"]
    first_ms = first_s * 1000

    IO.puts("""

    generated compile / plain defs compile (per function): #{Bench.ratio(compile["per_fn_us"], baseline["per_fn_us"])}x
    plan (descriptor hot) / generated compile:             #{Bench.ratio(plan_hot, compile["total_ms"])}x
    first compile / (plan from disk + compile):            \
    #{Bench.ratio(first_ms, plan_disk + compile["total_ms"])}x \
    (introspection adds about #{Bench.fmt(first_ms - plan_disk - compile["total_ms"])} ms)
    """)
  end

  defp row(seconds, functions),
    do: %{"total_ms" => seconds * 1000, "per_fn_us" => seconds * 1.0e6 / functions}

  defp timed(fun) do
    t0 = System.monotonic_time(:nanosecond)
    result = fun.()
    {(System.monotonic_time(:nanosecond) - t0) / 1.0e9, result}
  end

  defp module_name({:defmodule, _, [name | _]}), do: name

  # {defs (distinct names), functions (name/arity pairs, defaults included)} of a module.
  defp function_count(module) do
    functions = module.__info__(:functions)
    {functions |> Enum.map(&elem(&1, 0)) |> Enum.uniq() |> length(), length(functions)}
  end

  # Seconds to compile (and load) `quoted`, after purging its modules (untimed).
  defp compile_seconds(quoted) do
    for definition <- quoted do
      name = module_name(definition)
      :code.purge(name)
      :code.delete(name)
    end

    Bench.seconds(fn -> Enum.each(quoted, &Code.compile_quoted/1) end)
  end

  # One module per generated module, with as many trivial defs as it has names, each
  # `f(a, kwargs \\ [], opts \\ [])` (three arities, like most generated functions).
  defp plain_modules(defs_per_module) do
    for {defs, i} <- Enum.with_index(defs_per_module) do
      functions =
        for j <- 1..defs//1 do
          name = :"f#{j}"

          quote do
            def unquote(name)(a, kwargs \\ [], opts \\ []),
              do: SnakeBridge.call("m", unquote(Atom.to_string(name)), [a], kwargs, opts)
          end
        end

      quote do
        defmodule unquote(Module.concat(BenchGen.Plain, "M#{i}")) do
          (unquote_splicing(functions))
        end
      end
    end
  end

  ## 2. Per-call overhead of a generated function

  defp call_table(dir) do
    config = %{
      python_module: "operator",
      elixir_module: BenchGen.Operator,
      functions: [%{python_path: "operator.add"}],
      introspection: %{cache_path: dir}
    }

    # Introspects `operator` with a temporary worker (the descriptor is missing).
    [BenchGen.Operator] = Generator.generate_and_load(config)
    {:ok, pool} = SnakeBridge.Pool.start_link(size: @workers)

    # Both are external funs, called the same way.
    generated = Function.capture(BenchGen.Operator, :add, 2)
    direct = &SnakeBridge.call/3

    gen_name = "generated BenchGen.Operator.add(1, 2)"
    call_name = "SnakeBridge.call(operator, add, [1, 2])"
    names = [gen_name, call_name]

    calls = %{
      gen_name => fn -> {:ok, 3} = generated.(1, 2) end,
      call_name => fn -> {:ok, 3} = direct.("operator", "add", [1, 2]) end
    }

    for {_, call} <- calls, _ <- 1..1_000, do: call.()

    rounds =
      for round <- 1..@rounds do
        IO.puts("call round #{round}/#{@rounds} ...")
        order = if rem(round, 2) == 1, do: names, else: Enum.reverse(names)
        latencies = sequential(order, calls)

        Map.new(order, fn name ->
          sorted = Enum.sort(latencies[name])

          {name,
           %{
             "p50_us" => Bench.percentile(sorted, 0.50),
             "p99_us" => Bench.percentile(sorted, 0.99),
             "throughput_per_s" => throughput(calls[name])
           }}
        end)
      end

    GenServer.stop(pool)
    keys = ["p50_us", "p99_us", "throughput_per_s"]
    med = Bench.medians(rounds, keys)

    IO.puts("\n2. per-call overhead of a generated function; medians over #{length(rounds)} rounds")

    Bench.table(Enum.map(names, &{&1, med[&1]}), [
      {"p50_us", "p50 µs"},
      {"p99_us", "p99 µs"},
      {"throughput_per_s", "calls/s"}
    ])

    # Paired by round (same noise), then the median.
    paired = fn key, f ->
      Bench.median(Enum.map(rounds, &f.(&1[gen_name][key], &1[call_name][key])))
    end

    diff = fn key -> paired.(key, &(&1 - &2)) end
    ratio = fn key -> paired.(key, &(&1 / &2)) end

    IO.puts("""

    generated - SnakeBridge.call, p50:      #{signed(diff.("p50_us"))} µs   (#{ratio2(ratio.("p50_us"))}x)
    generated - SnakeBridge.call, p99:      #{signed(diff.("p99_us"))} µs   (#{ratio2(ratio.("p99_us"))}x)
    generated / SnakeBridge.call, calls/s:  #{ratio2(ratio.("throughput_per_s"))}x
    """)
  end

  # @sequential calls of each, in alternating blocks of @block so that drift hits both alike.
  defp sequential(order, calls) do
    blocks = for _ <- 1..max(div(@sequential, @block), 1), name <- order, do: name

    Enum.reduce(blocks, Map.new(order, &{&1, []}), fn name, acc ->
      Map.update!(acc, name, &(Bench.latencies(@block, calls[name]) ++ &1))
    end)
  end

  defp throughput(call), do: Bench.throughput(call, @concurrent, @callers)

  defp signed(x) when x >= 0, do: "+" <> :erlang.float_to_binary(x * 1.0, decimals: 2)
  defp signed(x), do: :erlang.float_to_binary(x * 1.0, decimals: 2)
  defp ratio2(x), do: :erlang.float_to_binary(x * 1.0, decimals: 3)
end

GeneratorBench.run()
