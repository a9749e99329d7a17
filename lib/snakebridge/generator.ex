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
    * per class: `create(required..., kwargs \\\\ [], opts \\\\ [])` returning a
      `%SnakeBridge.Ref{}`, methods taking the ref first, property getters and (unless
      read-only) `set_<property>` setters;
    * `@moduledoc`/`@doc` from the Python docstrings with the Python signature, and
      `@spec`s from the type descriptors.

  Required Python parameters are positional arguments; the others go in `kwargs`;
  SnakeBridge's options (`:timeout`, `:session`, `:pool`, ...) in `opts`. A configured
  `timeout` becomes the function's default `:timeout`.

  The descriptor is read from the config's `introspection.cache_path` (default
  `priv/snakebridge/schemas`); when it is missing, run `mix snakebridge.discover`.
  """

  defmacro __using__(opts) do
    source =
      case Macro.expand(Keyword.fetch!(opts, :config), __CALLER__) do
        path_or_module when is_binary(path_or_module) or is_atom(path_or_module) -> path_or_module
        literal -> literal |> Code.eval_quoted([], __CALLER__) |> elem(0)
      end

    {config, file} = load_config(source)
    modules = build(config, Keyword.get(opts, :cache_dir), file)

    external = if file, do: quote(do: @external_resource(unquote(file))), else: nil

    quote do
      unquote(external)
      unquote_splicing(modules)
    end
  end

  @doc """
  Generates and loads the config's modules at run time (for dev and test): the same
  modules `use SnakeBridge.Generator` defines. Returns the module names.

  Options: `:cache_dir` overrides where the descriptor is read.
  """
  @spec generate_and_load(map() | module() | Path.t(), keyword()) :: [module()]
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
  @spec quoted(map() | module() | Path.t(), keyword()) :: [Macro.t()]
  def quoted(config, opts \\ []) do
    {config, file} = load_config(config)
    build(config, opts[:cache_dir], file)
  end

  @doc false
  def load_config(path) when is_binary(path) do
    {config, _} = Code.eval_file(path)
    {config, Path.expand(path)}
  end

  def load_config(module) when is_atom(module) do
    Code.ensure_compiled!(module)
    {module.config(), nil}
  end

  def load_config(config) when is_map(config), do: {config, nil}

  defp build(config, cache_dir, file) do
    config = Map.new(config)
    SnakeBridge.Config.validate!(config, file || "config")
    python_module = to_string(config.python_module)
    integration = to_string(Map.get(config, :integration_id, python_module))

    dir =
      Path.expand(
        cache_dir || get_in(config, [:introspection, :cache_path]) || "priv/snakebridge/schemas"
      )

    case SnakeBridge.Native.generator_plan(config, dir, integration) do
      {:ok, plan} ->
        Enum.map(plan, &module_ast/1)

      {:error, :no_descriptor} ->
        raise ArgumentError,
              "no cached descriptor of #{integration} in #{dir}: run mix snakebridge.discover #{python_module}"

      {:error, problems} ->
        lines = Enum.map_join(problems, "\n", fn {path, message} -> "  #{path}: #{message}" end)
        raise ArgumentError, "invalid SnakeBridge config #{file || integration}:\n#{lines}"
    end
  end

  defp module_ast(%{"module" => module, "moduledoc" => doc} = plan) do
    name = String.to_atom(module)
    functions = Enum.flat_map(plan["functions"], &function_ast/1)

    quote do
      defmodule unquote(name) do
        @moduledoc unquote(doc)
        unquote_splicing(functions)
      end
    end
  end

  defp function_ast(%{"kind" => kind} = f) do
    name = String.to_atom(f["name"])
    bang = String.to_atom(f["name"] <> "!")
    required = Enum.map(f["args"], &Macro.var(String.to_atom(&1), nil))
    arg_types = Enum.map(f["arg_types"], &Code.string_to_quoted!/1)

    # `*args` is one more argument, a list, spliced after the required ones.
    {args, arg_types, call_args} =
      case f["varargs"] do
        nil ->
          {required, arg_types, quote(do: [unquote_splicing(required)])}

        rest ->
          rest = Macro.var(String.to_atom(rest), nil)

          call_args =
            if required == [],
              do: rest,
              else: quote(do: [unquote_splicing(required) | unquote(rest)])

          {required ++ [rest], arg_types ++ [quote(do: list())], call_args}
      end

    returns = Code.string_to_quoted!(f["return_type"])
    ref = Macro.var(:ref, nil)
    value = Macro.var(:value, nil)
    kwargs = Macro.var(:kwargs, nil)
    opts = Macro.var(:opts, nil)
    timed = timed_opts(opts, f["timeout"])
    streaming = f["streaming"]

    case kind do
      "getter" ->
        call = runtime(:get_attr, [ref, f["target"], opts])

        spec =
          quote(
            do:
              unquote(name)(SnakeBridge.Ref.t(), keyword()) ::
                {:ok, unquote(returns)} | {:error, SnakeBridge.Error.t()}
          )

        [definition(name, bang, [ref], [quote(do: unquote(opts) \\ [])], spec, call, f["doc"])]

      "setter" ->
        [value_type] = arg_types

        call = runtime(:set_attr, [ref, f["target"], value, opts])

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
            f["doc"]
          )
        ]

      "method" ->
        fun = if streaming, do: :stream_method, else: :call_method
        call = runtime(fun, [ref, f["target"], call_args, kwargs, timed])

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
          f["doc"],
          kwargs,
          opts
        )

      "constructor" ->
        {module, class} = split(f["target"])

        call = runtime(:create_instance, [module, class, call_args, kwargs, timed])

        spec_args = arg_types ++ [quote(do: keyword() | map()), quote(do: keyword())]

        callable(
          name,
          bang,
          args,
          spec_args,
          quote(do: SnakeBridge.Ref.t()),
          false,
          call,
          f["doc"],
          kwargs,
          opts
        )

      "function" ->
        {module, function} = split(f["target"])

        fun = if streaming, do: :stream, else: :call
        call = runtime(fun, [module, function, call_args, kwargs, timed])

        spec_args = arg_types ++ [quote(do: keyword() | map()), quote(do: keyword())]
        callable(name, bang, args, spec_args, returns, streaming, call, f["doc"], kwargs, opts)
    end
  end

  # A call of `SnakeBridge.Runtime.fun(args...)`.
  defp runtime(fun, args),
    do: quote(do: SnakeBridge.Runtime.unquote(fun)(unquote_splicing(args)))

  # `opts` with the configured timeout as default.
  defp timed_opts(opts, nil), do: opts
  defp timed_opts(opts, ms), do: quote(do: Keyword.put_new(unquote(opts), :timeout, unquote(ms)))

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
             "Like `#{name}/#{arity}`, but returns the result or raises (`SnakeBridge.PythonError` for a Python exception)."
           )
      def unquote(bang)(unquote_splicing(args ++ trailing)) do
        case unquote(name)(unquote_splicing(args ++ plain)) do
          {:ok, result} ->
            result

          {:error, %SnakeBridge.Error{reason: :python_exception, python: %_{} = exception}} ->
            raise exception

          {:error, error} ->
            raise error
        end
      end
    end
  end

  defp strip_default({:\\, _, [var, _default]}), do: var
  defp strip_default(var), do: var
end
