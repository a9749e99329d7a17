defmodule SnakeBridge.Generator do
  @moduledoc """
  Generates documented, typed Elixir modules for a Python library from an integration
  config (see `SnakeBridge.Config`) and the library's cached descriptor (see
  `SnakeBridge.Introspection`); compiling needs no Python.

      defmodule MyApp.JSON do
        use SnakeBridge.Generator, config: "config/snakebridge/json.exs"
      end

  generates the modules the config names (their names are absolute: `Json`,
  `Json.JSONDecoder`, ...). The config may also be a module whose `config/0` returns it.
  The Rust core validates the config and works out the plan (names made Elixir-safe and
  unique, arities from the Python signatures, specs from the type descriptors); this
  module only turns the plan into code:

    * a module-level function `f(required..., kwargs \\\\ [], opts \\\\ [])` returning
      `{:ok, result} | {:error, %SnakeBridge.Error{}}`, and `f!` returning the result or
      raising; a generator function returns a lazy `Stream` instead;
    * per class: `@type t`, `create(required..., kwargs \\\\ [], opts \\\\ [])` returning a
      `%SnakeBridge.Ref{}`, methods taking the ref first, property getters and (unless
      read-only) `set_<property>` setters, and `instance/1` for a singleton;
    * `@moduledoc`/`@doc` from the Python docstrings with the Python signature, and
      `@spec`s from the type descriptors.

  Required Python parameters are positional arguments; the others go in `kwargs`;
  SnakeBridge's options (`:timeout`, `:session`, `:pool`, ...) in `opts`. A configured
  `timeout` becomes the function's default `:timeout`.

  The config's options that change calls (caching, sessions, telemetry, transforms) are
  described in `SnakeBridge.Config`.

  The descriptor is read from the config's `introspection.cache_path` (default
  `priv/snakebridge/schemas`). When it is missing, a temporary Python worker introspects
  the library once and writes it there (unless `introspection: %{enabled: false}`); commit
  the file so that compiling needs no Python. A bad config, or one naming what the
  library lacks, is a compile error pointing at the config.
  """

  alias SnakeBridge.Generator.{FunctionPlan, ModulePlan}

  defmacro __using__(opts) do
    source =
      case Macro.expand(Keyword.fetch!(opts, :config), __CALLER__) do
        path_or_module when is_binary(path_or_module) or is_atom(path_or_module) -> path_or_module
        literal -> literal |> Code.eval_quoted([], __CALLER__) |> elem(0)
      end

    # A bad config, or a descriptor that lacks what it names, is a compile error that
    # points at the config (its file, or the config module's source).
    {config, file} =
      try do
        load_config(source)
      rescue
        e in ArgumentError -> compile_error(e, source, __CALLER__)
      end

    modules =
      try do
        build(config, Keyword.get(opts, :cache_dir), file)
      rescue
        e in ArgumentError -> compile_error(e, source, __CALLER__)
      end

    # Recompiled when the config changes: its file is an external resource; a config
    # module is required (a compile-time dependency).
    external =
      cond do
        file -> quote(do: @external_resource(unquote(file)))
        is_atom(source) -> quote(do: require(unquote(source)))
        true -> nil
      end

    quote do
      unquote(external)
      unquote_splicing(modules)
    end
  end

  defp compile_error(error, source, caller) do
    {file, line} =
      cond do
        is_binary(source) ->
          {Path.expand(source), 1}

        is_atom(source) and source != nil ->
          {to_string(source.module_info(:compile)[:source] || caller.file), 1}

        true ->
          {caller.file, caller.line}
      end

    reraise CompileError, [file: file, line: line, description: error.message], []
  end

  @doc """
  Generates and loads the config's modules at run time (for dev and test): the same
  modules `use SnakeBridge.Generator` defines, replacing loaded versions (purge + reload).
  Returns the module names.

  Options: `:cache_dir` overrides where the descriptor is read.
  """
  @spec generate_and_load(SnakeBridge.Config.source(), keyword()) :: [module()]
  def generate_and_load(config, opts \\ []) do
    for {:defmodule, _, [name | _]} = definition <- quoted(config, opts) do
      :code.purge(name)
      :code.delete(name)
      Code.compile_quoted(definition)
      name
    end
  end

  @doc """
  The generated modules as quoted `defmodule` forms, for tools that write or inspect the
  source (`Macro.to_string/1`). Options as for `generate_and_load/2`.
  """
  @spec quoted(SnakeBridge.Config.source(), keyword()) :: [Macro.t()]
  def quoted(config, opts \\ []) do
    {config, file} = load_config(config)
    build(config, opts[:cache_dir], file)
  end

  @doc false
  # The composed, validated config and the manifest file it came from (or nil).
  def load_config(source) do
    config = SnakeBridge.Config.load!(source)
    {config, if(is_binary(source), do: Path.expand(source))}
  end

  defp build(%SnakeBridge.Config{} = config, cache_dir, file) do
    python_module = to_string(config.python_module)
    integration = to_string(config.integration_id || python_module)

    dir =
      Path.expand(
        cache_dir || get_in(config.introspection || %{}, [:cache_path]) ||
          "priv/snakebridge/schemas"
      )

    case SnakeBridge.Native.generator_plan(SnakeBridge.Config.to_map(config), dir, integration) do
      {:ok, plan} ->
        transforms =
          for class <- config.classes || [],
              transform = class[:result_transform],
              into: %{},
              do: {to_string(class.python_path), transform_ast(transform, class.python_path)}

        context = %{
          telemetry: telemetry_option(config.telemetry),
          serialization:
            if(config.serialization,
              do:
                config.serialization
                |> Map.new()
                |> Map.take([:args, :result, :tensor_passthrough])
            ),
          pooled: match?(%{mode: mode} when mode in [:pooled, "pooled"], config.session),
          session_aware:
            for(
              class <- config.classes || [],
              get_in(class, [:constructor, :session_aware]) == true,
              do: to_string(class.python_path)
            )
        }

        Enum.map(plan, &module_ast(&1, transforms, context))

      {:error, :no_descriptor} ->
        introspect!(config, python_module, integration, dir)
        build(config, cache_dir, file)

      {:error, problems} ->
        raise ArgumentError,
              SnakeBridge.Config.describe_problems(file || integration, problems)
    end
  end

  # No cached descriptor: introspect with a temporary worker (once; later compiles read
  # the file it writes), unless the config disabled introspection.
  defp introspect!(config, python_module, integration, dir) do
    introspection = config.introspection || %{}

    if Map.get(introspection, :enabled) == false do
      raise ArgumentError,
            "no cached descriptor of #{integration} in #{Path.relative_to_cwd(dir)}, and " <>
              "introspection is disabled in its config: run mix snakebridge.discover #{python_module}"
    end

    IO.puts(
      :stderr,
      "SnakeBridge: no cached descriptor of #{integration} in #{Path.relative_to_cwd(dir)}; " <>
        "introspecting #{python_module} with a temporary Python worker (once: commit the file to skip this)"
    )

    case SnakeBridge.Introspection.describe_once(python_module,
           integration: integration,
           cache_dir: dir,
           depth: Map.get(introspection, :discovery_depth, 0),
           submodules: Enum.map(Map.get(introspection, :submodules, []), &to_string/1),
           exclude_patterns: Enum.map(Map.get(introspection, :exclude_patterns, []), &to_string/1)
         ) do
      {:ok, _entry} ->
        :ok

      {:error, error} ->
        raise ArgumentError,
              "could not introspect #{python_module} for #{integration}: #{Exception.message(error)}"
    end
  end

  # A class's `result_transform` must survive being written into code: a remote capture
  # (`&MyApp.Transforms.prediction/1`) or `{module, function, 1}`.
  defp transform_ast({m, f, 1}, _class) when is_atom(m) and is_atom(f),
    do: quote(do: &(unquote(m).unquote(f) / 1))

  defp transform_ast(fun, class) when is_function(fun, 1) do
    case Function.info(fun, :type) do
      {:type, :external} ->
        info = Function.info(fun)
        transform_ast({info[:module], info[:name], 1}, class)

      _ ->
        raise ArgumentError,
              "result_transform of #{class} must be a remote capture such as &MyApp.T.fun/1 " <>
                "or {module, function, 1}: an anonymous function cannot be generated into code"
    end
  end

  defp transform_ast(other, class),
    do:
      raise(
        ArgumentError,
        "result_transform of #{class} must be a 1-arity function, got #{inspect(other)}"
      )

  # The `:telemetry` call option of a config's `telemetry` (nil: the default).
  defp telemetry_option(%{enabled: false}), do: false
  defp telemetry_option(%{prefix: [_ | _] = prefix}), do: Enum.map(prefix, &to_atom/1)
  defp telemetry_option(_), do: nil

  defp to_atom(name) when is_atom(name), do: name
  defp to_atom(name) when is_binary(name), do: String.to_atom(name)

  defp module_ast(%ModulePlan{name: name, moduledoc: doc} = plan, transforms, context) do
    context =
      Map.merge(context, %{
        integration: plan.integration,
        transform: transforms[plan.python],
        session_aware: plan.python in context.session_aware
      })

    functions = Enum.flat_map(plan.functions, &function_ast(&1, context))

    type =
      if plan.kind == :class do
        quote do
          @typedoc unquote(
                     "A live `#{plan.python}` object in a Python worker (see `SnakeBridge.Ref`)."
                   )
          @type t :: SnakeBridge.Ref.t()
        end
      end

    quote do
      defmodule unquote(name) do
        @moduledoc unquote(doc)
        unquote(type)
        unquote_splicing(functions)
      end
    end
  end

  defp function_ast(%FunctionPlan{kind: kind, name: name} = f, context) do
    bang = String.to_atom(Atom.to_string(name) <> "!")
    required = Enum.map(f.args, &Macro.var(&1, nil))
    arg_types = Enum.map(f.arg_types, &Code.string_to_quoted!/1)

    # `*args` is one more argument, a list, spliced after the required ones.
    {args, arg_types, call_args} =
      case f.varargs do
        nil ->
          {required, arg_types, quote(do: [unquote_splicing(required)])}

        rest ->
          rest = Macro.var(rest, nil)

          call_args =
            if required == [],
              do: rest,
              else: quote(do: [unquote_splicing(required) | unquote(rest)])

          {required ++ [rest], arg_types ++ [quote(do: list())], call_args}
      end

    returns = Code.string_to_quoted!(f.return_type)
    ref = Macro.var(:ref, nil)
    value = Macro.var(:value, nil)
    kwargs = Macro.var(:kwargs, nil)
    opts = Macro.var(:opts, nil)
    timed = default_opts(opts, f, kind, context)
    streaming = f.streaming

    case kind do
      :getter ->
        call = runtime(:get_attr, [ref, f.target, timed])

        spec =
          quote(
            do:
              unquote(name)(SnakeBridge.Ref.t(), keyword()) ::
                {:ok, unquote(returns)} | {:error, SnakeBridge.Error.t()}
          )

        [definition(name, bang, [ref], [quote(do: unquote(opts) \\ [])], spec, call, f.doc)]

      :setter ->
        [value_type] = arg_types

        call = runtime(:set_attr, [ref, f.target, value, timed])

        spec =
          quote(
            do:
              unquote(name)(SnakeBridge.Ref.t(), unquote(value_type), keyword()) ::
                :ok | {:error, SnakeBridge.Error.t()}
          )

        [
          plain_definition(
            name,
            [ref, value],
            [quote(do: unquote(opts) \\ [])],
            spec,
            call,
            f.doc
          )
        ]

      :method ->
        fun = if streaming, do: :stream_method, else: :call_method

        call =
          runtime(fun, [ref, f.target, call_args, kwargs, timed])
          |> transformed(context.transform, streaming)

        spec_args =
          [quote(do: SnakeBridge.Ref.t()) | arg_types] ++
            [quote(do: keyword() | map()), quote(do: keyword())]

        callable(
          name,
          bang,
          [ref | args],
          spec_args,
          returns,
          streaming,
          call,
          f.doc,
          kwargs,
          opts
        )

      :constructor ->
        {module, class} = split(f.target)

        call = runtime(:create_instance, [module, class, call_args, kwargs, timed])

        spec_args = arg_types ++ [quote(do: keyword() | map()), quote(do: keyword())]

        callable(
          name,
          bang,
          args,
          spec_args,
          returns,
          false,
          call,
          f.doc,
          kwargs,
          opts
        )

      :instance ->
        {module, class} = split(f.target)
        call = runtime(:singleton, [module, class, timed])

        spec =
          quote(
            do:
              unquote(name)(keyword()) ::
                {:ok, unquote(returns)} | {:error, SnakeBridge.Error.t()}
          )

        [definition(name, bang, [], [quote(do: unquote(opts) \\ [])], spec, call, f.doc)]

      :function ->
        {module, function} = split(f.target)

        fun = if streaming, do: :stream, else: :call
        call = runtime(fun, [module, function, call_args, kwargs, timed])

        spec_args = arg_types ++ [quote(do: keyword() | map()), quote(do: keyword())]
        callable(name, bang, args, spec_args, returns, streaming, call, f.doc, kwargs, opts)
    end
  end

  # The class's result_transform applied to a method's result (to each element of a stream).
  defp transformed(call, nil, _streaming), do: call

  defp transformed(call, transform, true),
    do: quote(do: Stream.map(unquote(call), unquote(transform)))

  defp transformed(call, transform, false) do
    quote do
      case unquote(call) do
        {:ok, result} -> {:ok, unquote(transform).(result)}
        error -> error
      end
    end
  end

  # A call of `SnakeBridge.Runtime.fun(args...)`.
  defp runtime(fun, args),
    do: quote(do: SnakeBridge.Runtime.unquote(fun)(unquote_splicing(args)))

  # `opts` over the configured defaults: the integration (telemetry, result cache), the
  # timeout, `cache` for a cacheable function, `idempotent` for a pure one (neither for a
  # streaming one), the config's
  # `telemetry`; and the caller's current session for a pooled config or a session-aware
  # constructor.
  defp default_opts(opts, f, kind, context) do
    # (A stream is neither cached nor retried: those options are the calls'.)
    call? = not f.streaming

    defaults =
      [
        integration: context.integration,
        timeout: timeout_option(f.timeout),
        cache: if(call?, do: cache_option(f.cache)),
        idempotent: if(call?, do: f.idempotent || nil),
        telemetry: context.telemetry,
        serialization: if(kind in [:function, :method, :constructor], do: context.serialization)
      ]
      |> Enum.reject(fn {_key, value} -> is_nil(value) end)

    merged = quote(do: Keyword.merge(unquote(Macro.escape(defaults)), unquote(opts)))
    join = context.pooled or (kind == :constructor and context.session_aware)

    if join and kind != :instance,
      do: quote(do: SnakeBridge.Session.join_current(unquote(merged))),
      else: merged
  end

  defp timeout_option({:ms, ms}), do: ms
  defp timeout_option(other), do: other

  defp cache_option(:forever), do: true
  defp cache_option({:ttl_ms, ms}), do: ms
  defp cache_option(nil), do: nil

  defp split(dotted) do
    [name | module] = dotted |> String.split(".") |> Enum.reverse()
    {module |> Enum.reverse() |> Enum.join("."), name}
  end

  # f(args..., kwargs \\ [], opts \\ []) and, unless it streams, f!(...).
  defp callable(name, bang, args, spec_args, returns, streaming, call, doc, kwargs, opts) do
    defaults = [quote(do: unquote(kwargs) \\ []), quote(do: unquote(opts) \\ [])]

    if streaming do
      spec = quote(do: unquote(name)(unquote_splicing(spec_args)) :: Enumerable.t())
      [plain_definition(name, args, defaults, spec, call, doc)]
    else
      spec =
        quote(
          do:
            unquote(name)(unquote_splicing(spec_args)) ::
              {:ok, unquote(returns)} | {:error, SnakeBridge.Error.t()}
        )

      [definition(name, bang, args, defaults, spec, call, doc)]
    end
  end

  defp plain_definition(name, args, trailing, spec, call, doc) do
    quote do
      @doc unquote(doc)
      @spec unquote(spec)
      def unquote(name)(unquote_splicing(args ++ trailing)), do: unquote(call)
    end
  end

  defp definition(name, bang, args, trailing, spec, call, doc) do
    plain = Enum.map(trailing, &strip_default/1)
    arity = length(args) + length(trailing)

    quote do
      unquote(plain_definition(name, args, trailing, spec, call, doc))

      @doc unquote(
             "Like `#{name}/#{arity}`, but returns the result or raises (`SnakeBridge.PythonError` for a Python exception; see `SnakeBridge.Runtime.unwrap!/2`)."
           )
      def unquote(bang)(unquote_splicing(args ++ trailing)) do
        SnakeBridge.Runtime.unwrap!(
          unquote(name)(unquote_splicing(args ++ plain)),
          unquote(List.last(plain))
        )
      end
    end
  end

  defp strip_default({:\\, _, [var, _default]}), do: var
  defp strip_default(var), do: var
end
