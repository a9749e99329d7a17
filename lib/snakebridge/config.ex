defmodule SnakeBridge.Config do
  @moduledoc """
  Integration configs: what SnakeBridge generates Elixir modules from, and what a pool
  sets up for an integration (worker `init` calls, tools exported to Python).

  A config is either a module

      defmodule MyApp.DSPyConfig do
        use SnakeBridge.Config

        @impl true
        def config do
          %SnakeBridge.Config{
            python_module: "dspy",
            elixir_module: DSPy,
            classes: [%{python_path: "dspy.Predict", methods: [%{name: "__call__", elixir_name: :call}]}],
            functions: [%{python_path: "dspy.configure"}]
          }
        end
      end

  or an `.exs` manifest under `config/snakebridge/` that evaluates to such a struct, a map
  or a keyword list (see `SnakeBridge.Config.Loader`, which also runs EEx in manifests).
  A config module is validated when it is compiled: a bad config is a compile error.

  ## Keys

  The keys of the seed's DSPy example: `python_module` (required), `integration_id`,
  `elixir_module` (the namespace of the generated modules), `version`, `description`,
  `introspection` (`enabled`, `cache_path`, `discovery_depth`, `submodules`,
  `exclude_patterns`), `classes` (`python_path`, `elixir_module`, `description`,
  `extends`, `singleton`, `constructor` with `args`/`session_aware`/`timeout`, `methods`
  with `name`/`elixir_name`/`description`/`streaming`/`args`/`returns`/`timeout`,
  `properties` with `name`/`elixir_name`/`type`/`readonly`, `result_transform`),
  `functions` (`python_path`, `elixir_name`, `description`, `args`, `returns`, `pure`,
  `cacheable`, `timeout`, `streaming`), `bidirectional_tools` (`enabled`,
  `export_to_python` with `python_name`/`function`), `grpc` (`max_message_size`),
  `caching` (`enabled`, `ttl`), `telemetry`, `serialization` (`args`, `result`: `:msgpack`
  or `:json`; `tensor_passthrough`), `session`, `python_deps`, `init`,
  `allowed_modules`, `mixins`, `extends`.

  Types in `args` (a map of parameter name to type), `returns` and a property's `type`
  refine the generated `@spec`s: `:string`, `:integer`, `:float`, `:number`, `:boolean`,
  `:binary`, `:atom`, `:map`, `:list`, `:any`, `:none`, `{:list, type}`,
  `{:map, key_type, value_type}`, `{:optional, type}`, `{:union, [types]}`, or a Python
  class path such as `"dspy.Prediction"` (the generated module's `t()` when the config
  generates that class).

  ## What the options do

    * `version` - the library version the config was written for: `"3"` or `"3.4"`
      accepts 3.4.1. Generating against a descriptor of another version is an error.
    * `cacheable: true` (functions) - calls are answered from the pool's result cache,
      kept for `caching.ttl` milliseconds (forever without one); `caching: %{enabled:
      false}` turns this off for the whole config. `pure: true` marks a function safe to
      retry (`idempotent: true`). `timeout` is the function's default `:timeout`.
    * `streaming: true` - the generated function returns a lazy `Stream` over the
      iterable the Python function or method returns (generators always do).
    * `singleton: true` (classes) - the module gets `instance/1`: the pool's one shared
      object of the class (see `SnakeBridge.Runtime.singleton/3`). The constructor must
      take no required parameters.
    * `result_transform` (classes) - a 1-arity remote capture (`&MyApp.T.fun/1`) or
      `{module, function, 1}` applied to every method result of the class (to each
      element of a stream).
    * `session: %{mode: :pooled}` - every generated call without a `:session` option
      joins the caller's current session (`SnakeBridge.Session.with_session/2`), so
      Python state stays on one worker. `constructor: %{session_aware: true}` does the
      same for one class's constructor. The default, `:ephemeral`, runs each call on any
      worker.
    * `telemetry` - `enabled: false` emits no events for the config's calls; `prefix:
      [:my_app, :dspy]` replaces their `[:snakebridge]` prefix.
    * `init`, `bidirectional_tools` - applied by a pool started with
      `integrations: [config]` (see `SnakeBridge.Pool`). In `init` arguments, a value
      `{:call, "dspy.LM", args, kwargs}` is made by the worker (the result of that call).
    * `python_deps` - installed by `mix snakebridge.setup`.
    * `serialization: %{args: :json, result: :json, tensor_passthrough: false}` - the
      codecs of the generated functions' calls (default msgpack; see
      `SnakeBridge.TypeConverter` for what JSON loses), and whether tensors cross as
      arrays (`true`, the default) or as nested lists (see `SnakeBridge.Runtime`'s
      `:serialization`).
    * `grpc: %{max_message_size: bytes}` - bounds a single message of a pool started
      with `integrations: [config]`; larger payloads travel in parts.
    * `allowed_modules: ["dspy", "litellm"]` - restricts a pool started with
      `integrations: [config]` to these modules (and the config's `python_module`): calls,
      attributes and imports outside them are refused with `:not_allowed`, by the core
      and again by the worker (see `SnakeBridge.Pool`'s `:allowed_modules`).

  ## Composition: `extends` and `mixins`

  `extends` names one base config and `mixins` a list of partial configs, each a config
  module or a manifest path (relative to the manifest that names it). They are merged in
  this order, later over earlier: the base, then each mixin in list order, then the config
  itself. So the config's own keys always win, and a mixin wins over the base. Merging
  is deep: maps merge key by key; `classes` and `functions` merge entries with the same
  `python_path`, `methods` and `properties` entries with the same `name`, exported tools
  entries with the same `python_name`; `init` calls are concatenated (the base's run
  first); lists of names (`python_deps`, `allowed_modules`, ...) are united.

  Within a config, a class's `extends` names another class of the config (by
  `python_path` or `elixir_module`): the class inherits that class's `methods` and
  `properties` entries, its own entries winning.

  ## Secrets

  `{:system, "ENV_VAR"}` may stand for any value in `init` calls and exported tools. It is
  resolved with `System.get_env/1` when a pool starts (see `resolve_secrets/2`), never
  at compile time, so the secret is in no generated code, cache file or config `inspect`.

  ## Validation

  Validation is done by SnakeBridge's Rust core, against one schema: unknown keys, wrong
  types, missing required fields and bad references (an `extends` naming no class of the
  config, two classes with one Elixir module, two methods with one Elixir name) are all
  reported at once, each with its path (`classes[3].methods[1].timeout`).
  """

  @keys [
    :python_module,
    :integration_id,
    :elixir_module,
    :version,
    :description,
    :introspection,
    :classes,
    :functions,
    :bidirectional_tools,
    :grpc,
    :caching,
    :telemetry,
    :serialization,
    :session,
    :python_deps,
    :init,
    :allowed_modules,
    :mixins,
    :extends
  ]

  defstruct @keys

  @typedoc """
  A config. Unset keys are `nil`; the nested parts (`classes`, `functions`, ...) are maps
  with the keys listed in the moduledoc.
  """
  @type t :: %__MODULE__{
          python_module: String.t() | atom() | nil,
          integration_id: String.t() | atom() | nil,
          elixir_module: module() | String.t() | nil,
          version: String.t() | nil,
          description: String.t() | nil,
          introspection: map() | nil,
          classes: [map()] | nil,
          functions: [map()] | nil,
          bidirectional_tools: map() | nil,
          grpc: map() | nil,
          caching: map() | nil,
          telemetry: map() | nil,
          serialization: map() | nil,
          session: map() | nil,
          python_deps: [String.t()] | nil,
          init: [map()] | nil,
          allowed_modules: [String.t()] | nil,
          mixins: [module() | Path.t()] | nil,
          extends: module() | Path.t() | nil
        }

  @typedoc "A problem in a config: where (`classes[3].methods[1].timeout`) and what."
  @type problem :: {path :: String.t(), message :: String.t()}

  @typedoc "Where a config comes from: a config module, a manifest path, or the config."
  @type source :: module() | Path.t() | t() | map() | keyword()

  @doc "Returns the integration's config."
  @callback config() :: t() | map() | keyword()

  defmacro __using__(_opts) do
    quote do
      @behaviour SnakeBridge.Config
      @after_compile SnakeBridge.Config
    end
  end

  @doc false
  # A config module is checked as soon as it is compiled.
  def __after_compile__(env, _bytecode) do
    case load(env.module) do
      {:ok, _config} ->
        :ok

      {:error, problems} ->
        raise CompileError,
          file: env.file,
          line: env.line,
          description: describe_problems(inspect(env.module), problems)
    end
  end

  @doc """
  Builds a config from a config module, a manifest path, a struct, a map or a keyword
  list: merges its `extends` and `mixins` (see "Composition"), validates the result and
  returns it as a struct with `mixins` and `extends` cleared (they are merged in).

  Options: `:dir`, the directory relative manifest paths in `extends`/`mixins` are
  resolved against (default: the manifest's directory, else the current directory).

  ## Examples

      iex> {:ok, config} = SnakeBridge.Config.load(python_module: "json", functions: [%{python_path: "json.dumps"}])
      iex> config.python_module
      "json"

      iex> SnakeBridge.Config.load(%{python_module: "json", functions: [%{python_path: "json.dumps", pure: 1}]})
      {:error, [{"functions[0].pure", "expected a boolean, got 1"}]}
  """
  @spec load(source(), keyword()) :: {:ok, t()} | {:error, [problem()]}
  def load(source, opts \\ []) do
    with {:ok, raw, dir} <- fetch(source, opts[:dir] || File.cwd!()),
         {:ok, merged} <- compose(raw, dir, [source_key(source)]),
         :ok <- validate(merged) do
      {:ok, struct(__MODULE__, inherit_classes(merged))}
    end
  end

  @doc """
  Like `load/2`, but returns the config or raises `ArgumentError` listing every problem
  and naming the source.
  """
  @spec load!(source(), keyword()) :: t()
  def load!(source, opts \\ []) do
    case load(source, opts) do
      {:ok, config} -> config
      {:error, problems} -> raise ArgumentError, describe_problems(source_name(source), problems)
    end
  end

  @doc """
  Checks `config` (a struct, map or keyword list) against the schema, as it is: its
  `extends` and `mixins` are not merged (use `load/2` for that). Returns `:ok` or
  `{:error, problems}` with every problem found.

  ## Examples

      iex> SnakeBridge.Config.validate(%{python_module: "json", functions: [%{python_path: "json.dumps"}]})
      :ok

      iex> SnakeBridge.Config.validate(%{functions: [%{python_path: "json.dumps", timeout: 0}]})
      {:error,
       [
         {"functions[0].timeout", "expected a positive number of milliseconds or :infinity, got 0"},
         {"python_module", "is required"}
       ]}
  """
  @spec validate(t() | map() | keyword()) :: :ok | {:error, [problem()]}
  def validate(config) when is_map(config) or is_list(config) do
    config
    |> to_map()
    |> SnakeBridge.Native.config_validate()
  end

  @doc """
  Like `validate/1`, but raises `ArgumentError` listing every problem (`source` names
  where the config came from, e.g. its file). Returns the config.
  """
  @spec validate!(t() | map() | keyword(), String.t()) :: t() | map() | keyword()
  def validate!(config, source \\ "config") do
    case validate(config) do
      :ok -> config
      {:error, problems} -> raise ArgumentError, describe_problems(source, problems)
    end
  end

  @doc """
  The config as a plain map, nested structs included, without the keys that are unset
  (`nil`): the form the core validates and plans from. A keyword list is taken as a map.
  """
  @spec to_map(t() | map() | keyword()) :: map()
  def to_map(%__MODULE__{} = config) do
    config |> Map.from_struct() |> Enum.reject(fn {_, v} -> is_nil(v) end) |> Map.new(&plain/1)
  end

  def to_map(config) when is_list(config) and config != [] do
    if Keyword.keyword?(config), do: to_map(Map.new(config)), else: config
  end

  def to_map(config) when is_map(config), do: config |> plain() |> plain_map()

  def to_map(config), do: config

  defp plain_map(%_{} = struct), do: plain(struct)
  defp plain_map(map), do: map

  # Structs (nested ones) are checked as the maps they are.
  defp plain({key, value}), do: {key, plain(value)}
  defp plain(%_{} = struct), do: struct |> Map.from_struct() |> plain()
  defp plain(map) when is_map(map), do: Map.new(map, fn {k, v} -> {k, plain(v)} end)
  # An improper list stays as it is: validation refuses it, with its path.
  defp plain(list) when is_list(list),
    do: if(List.improper?(list), do: list, else: Enum.map(list, &plain/1))

  defp plain(other), do: other

  @doc """
  Replaces every `{:system, "ENV_VAR"}` in `term` by the variable's value, at run time.
  Returns `{:ok, term}`, or `{:error, message}` naming the variable and where it is
  (`path`, e.g. `"dspy: init[0].kwargs.api_key"`) when it is not set; the message never
  contains a value.

  ## Examples

      iex> System.put_env("SB_DOC_TOKEN", "s3cret")
      iex> SnakeBridge.Config.resolve_secrets(%{token: {:system, "SB_DOC_TOKEN"}, n: 1})
      {:ok, %{token: "s3cret", n: 1}}
      iex> SnakeBridge.Config.resolve_secrets([{:system, "SB_DOC_UNSET"}], "init")
      {:error, "init[0]: the environment variable SB_DOC_UNSET is not set"}
  """
  @spec resolve_secrets(term(), String.t()) :: {:ok, term()} | {:error, String.t()}
  def resolve_secrets(term, path \\ "config") do
    {:ok, secrets(term, path)}
  catch
    {:unset_secret, message} -> {:error, message}
  end

  defp secrets({:system, var}, path) when is_binary(var) do
    System.get_env(var) ||
      throw({:unset_secret, "#{path}: the environment variable #{var} is not set"})
  end

  defp secrets(%_{} = struct, _path), do: struct

  defp secrets(map, path) when is_map(map),
    do: Map.new(map, fn {k, v} -> {k, secrets(v, "#{path}.#{key_name(k)}")} end)

  defp secrets(list, path) when is_list(list) do
    list
    |> Enum.with_index()
    |> Enum.map(fn
      {{:system, var} = secret, i} when is_binary(var) -> secrets(secret, "#{path}[#{i}]")
      {{k, v}, _i} when is_atom(k) -> {k, secrets(v, "#{path}.#{k}")}
      {v, i} -> secrets(v, "#{path}[#{i}]")
    end)
  end

  defp secrets(tuple, path) when is_tuple(tuple),
    do: tuple |> Tuple.to_list() |> secrets(path) |> List.to_tuple()

  defp secrets(other, _path), do: other

  defp key_name(key) when is_atom(key) or is_binary(key), do: key
  defp key_name(key), do: inspect(key)

  @doc false
  # What a pool does for the integration: its `init` calls as `{target, args, kwargs}`
  # (secrets resolved, nested `{:call, path, args, kwargs}` values made by Python), its
  # exported tools as `{python_name, fun}`, and the resolved secrets' values (redacted
  # from whatever comes back from the workers).
  @spec pool_setup(t()) ::
          {:ok, %{init: list(), tools: list(), secrets: [String.t()]}} | {:error, String.t()}
  def pool_setup(%__MODULE__{} = config) do
    name = to_string(config.integration_id || config.python_module)

    init =
      (config.init || [])
      |> Enum.with_index()
      |> Enum.map(fn {call, i} ->
        {target, args, kwargs} = init_call(call)
        path = "#{name}: init[#{i}]"

        with {:ok, args} <- resolve_secrets(args, path <> ".args"),
             {:ok, kwargs} <- resolve_secrets(kwargs, path <> ".kwargs") do
          {target, args, kwargs}
        end
      end)

    tools =
      case config.bidirectional_tools do
        %{enabled: false} -> []
        %{export_to_python: tools} -> Enum.map(tools, &tool/1)
        _ -> []
      end

    case Enum.find(init, &match?({:error, _}, &1)) do
      {:error, message} -> {:error, message}
      nil -> {:ok, %{init: init, tools: tools, secrets: secret_values(config.init)}}
    end
  end

  # The values of the `{:system, "ENV_VAR"}` secrets in `term`, for redaction.
  defp secret_values({:system, var}) when is_binary(var) do
    case System.get_env(var) do
      nil -> []
      value -> [value]
    end
  end

  defp secret_values(%_{}), do: []
  defp secret_values(map) when is_map(map), do: Enum.flat_map(map, &secret_values/1)
  defp secret_values(list) when is_list(list), do: Enum.flat_map(list, &secret_values/1)

  defp secret_values(tuple) when is_tuple(tuple),
    do: tuple |> Tuple.to_list() |> secret_values()

  defp secret_values(_other), do: []

  # A call whose arguments contain `{:call, path, args, kwargs}` is made by the agent,
  # which makes the nested calls first.
  defp init_call(call) do
    target = to_string(call.python_path)
    args = Map.get(call, :args, [])
    kwargs = Map.new(Map.get(call, :kwargs, []))

    if nested?({args, kwargs}),
      do: {SnakeBridge.Contract.fetch!(:call_nested), [target, nest(args), nest(kwargs)], []},
      else: {target, args, kwargs}
  end

  defp nested?({:call, path, args, kwargs})
       when (is_binary(path) or is_atom(path)) and is_list(args),
       do: is_list(kwargs) or is_map(kwargs)

  defp nested?(map) when is_map(map) and not is_struct(map),
    do: Enum.any?(map, fn {_, v} -> nested?(v) end)

  defp nested?(list) when is_list(list), do: Enum.any?(list, &nested?/1)
  defp nested?(tuple) when is_tuple(tuple), do: tuple |> Tuple.to_list() |> nested?()
  defp nested?(_), do: false

  defp nest({:call, path, args, kwargs} = call) do
    if nested?(call),
      do: %{
        SnakeBridge.Contract.fetch!(:nested_call_key) => to_string(path),
        "args" => nest(args),
        "kwargs" => nest(Map.new(kwargs))
      },
      else: call
  end

  defp nest(map) when is_map(map) and not is_struct(map),
    do: Map.new(map, fn {k, v} -> {k, nest(v)} end)

  defp nest(list) when is_list(list), do: Enum.map(list, &nest/1)
  defp nest(other), do: other

  defp tool(%{python_name: name, function: {m, f, a}}),
    do: {to_string(name), Function.capture(m, f, a)}

  defp tool(%{python_name: name, function: fun}), do: {to_string(name), fun}

  @doc false
  def describe_problems(source, problems) do
    lines = Enum.map_join(problems, "\n", fn {path, message} -> "  #{path}: #{message}" end)
    "invalid SnakeBridge config #{source}:\n#{lines}"
  end

  @doc false
  def source_name(source) when is_binary(source), do: Path.relative_to_cwd(source)
  def source_name(source) when is_atom(source), do: inspect(source)
  def source_name(_config), do: "config"

  # --- Loading and composition ---------------------------------------------------------

  # The raw config of a source, as a map, and the directory its relative paths start from.
  defp fetch(path, dir) when is_binary(path) do
    file = Path.expand(path, dir)

    with {:ok, raw} <- SnakeBridge.Config.Loader.read(file) do
      {:ok, to_map(raw), Path.dirname(file)}
    end
  end

  defp fetch(module, dir) when is_atom(module) and module not in [nil, true, false] do
    case Code.ensure_compiled(module) do
      {:module, ^module} ->
        if function_exported?(module, :config, 0),
          do: {:ok, to_map(module.config()), dir},
          else: {:error, [{"config", "#{inspect(module)} does not define config/0"}]}

      {:error, reason} ->
        {:error, [{"config", "cannot load the config module #{inspect(module)}: #{reason}"}]}
    end
  end

  defp fetch(config, dir) when is_map(config) or is_list(config) do
    case to_map(config) do
      map when is_map(map) -> {:ok, map, dir}
      other -> {:error, [{"config", "expected a map or keyword list, got #{inspect(other)}"}]}
    end
  end

  defp fetch(other, _dir),
    do:
      {:error,
       [{"config", "expected a config module, path, map or keyword list, got #{inspect(other)}"}]}

  defp source_key(path) when is_binary(path), do: Path.expand(path)
  defp source_key(other), do: other

  # base, then the mixins in order, then the config itself.
  defp compose(raw, _dir, _seen) when not is_map(raw), do: {:ok, raw}

  defp compose(raw, dir, seen) do
    parts =
      List.wrap(raw[:extends] && {"extends", raw[:extends]}) ++
        Enum.with_index(List.wrap(raw[:mixins]), fn m, i -> {"mixins[#{i}]", m} end)

    Enum.reduce_while(parts, {:ok, %{}}, fn {path, source}, {:ok, acc} ->
      key = if is_binary(source), do: Path.expand(source, dir), else: source

      with false <- key in seen,
           {:ok, part, part_dir} <- fetch(source, dir),
           {:ok, part} <- compose(part, part_dir, [key | seen]) do
        {:cont, {:ok, merge(acc, part)}}
      else
        true ->
          cycle = Enum.map_join(Enum.reverse([key | seen]), " -> ", &source_name/1)
          {:halt, {:error, [{path, "#{source_name(source)} is included in a cycle: #{cycle}"}]}}

        {:error, problems} ->
          {:halt,
           {:error,
            Enum.map(problems, fn {p, m} -> {"#{path} (#{source_name(source)}) #{p}", m} end)}}
      end
    end)
    |> case do
      {:ok, base} ->
        own = raw |> Map.delete(:extends) |> Map.delete(:mixins)
        {:ok, if(parts == [], do: own, else: merge(base, own))}

      error ->
        error
    end
  end

  @keyed %{
    classes: :python_path,
    functions: :python_path,
    methods: :name,
    properties: :name,
    export_to_python: :python_name
  }

  @doc false
  # `over` merged into `base` (see "Composition").
  def merge(base, over) when is_map(base) and is_map(over) do
    Map.merge(base, over, fn
      :init, a, b when is_list(a) and is_list(b) ->
        a ++ b

      key, a, b when is_map_key(@keyed, key) and is_list(a) and is_list(b) ->
        merge_by(a, b, @keyed[key])

      _key, a, b ->
        merge(a, b)
    end)
  end

  def merge(a, b) when is_list(a) and is_list(b) do
    if Enum.all?(a ++ b, &(is_binary(&1) or is_atom(&1))), do: Enum.uniq(a ++ b), else: b
  end

  def merge(_a, b), do: b

  defp merge_by(base, over, key) do
    id = &to_string(Map.get(&1, key))
    overs = Map.new(over, &{id.(&1), &1})

    merged =
      Enum.map(base, fn entry -> if o = overs[id.(entry)], do: merge(entry, o), else: entry end)

    known = MapSet.new(base, id)
    merged ++ Enum.reject(over, &MapSet.member?(known, id.(&1)))
  end

  # A class whose `extends` names another class of the config inherits its methods and
  # properties (its own entries win). Chains are followed; validation rejected unknown names.
  defp inherit_classes(%{classes: classes} = config) when is_list(classes) do
    by_name =
      for class <- classes,
          key <- [class[:python_path], class[:elixir_module]],
          key != nil,
          into: %{},
          do: {to_string(key), class}

    %{config | classes: Enum.map(classes, &inherit(&1, by_name, []))}
  end

  defp inherit_classes(config), do: config

  defp inherit(%{extends: parent} = class, by_name, seen) when not is_nil(parent) do
    key = to_string(parent)

    case key not in seen and by_name[key] do
      %{} = base ->
        base = inherit(base, by_name, [key | seen])

        Enum.reduce([:methods, :properties], class, fn field, acc ->
          case {Map.get(base, field), Map.get(acc, field)} do
            {nil, _} -> acc
            {inherited, nil} -> Map.put(acc, field, inherited)
            {inherited, own} -> Map.put(acc, field, merge_by(inherited, own, :name))
          end
        end)

      _ ->
        class
    end
  end

  defp inherit(class, _by_name, _seen), do: class
end
