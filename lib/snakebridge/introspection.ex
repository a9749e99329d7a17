defmodule SnakeBridge.Introspection do
  @moduledoc """
  Describes a Python library: every public class (constructor, methods, properties, bases,
  docstring) and function (parameters with kinds, defaults and types, return type,
  generator/async flags, docstring), as introspected by a worker with `inspect` and
  `typing`, and cached so that compiling never needs Python.

  A descriptor is a `%SnakeBridge.Descriptor{}`, stored as JSON under the cache directory
  (`priv/snakebridge/schemas/<integration>.json` by default; stable key order, written
  atomically). The `%SnakeBridge.Descriptor.Entry{}` around it records `config_hash`,
  `request_key` (the config and the request's module, submodules, depth and exclusions),
  `library_version`, `python_version`, `cache_key` (a hash of the config and both
  versions) and `descriptor_hash`.

  ## Options

    * `:pool` - the pool whose worker introspects (default `SnakeBridge.Pool`).
    * `:integration` - the cache's name for the descriptor (default: the module path).
    * `:depth` - how deep to walk submodules (default 0: the module only).
    * `:submodules` - submodules to include explicitly.
    * `:exclude_patterns` - fnmatch patterns of dotted names to leave out.
    * `:config` - any term the descriptor depends on (an integration's config); it is
      hashed, and a cached descriptor made for another config is stale.
    * `:cache_dir` - where descriptor files live (default `priv/snakebridge/schemas`).
    * `:force` - introspect even when the cached descriptor still holds.
    * `:timeout` - milliseconds introspection may take (default 120 000).
  """

  alias SnakeBridge.{Descriptor, Error, Native, Pool}

  @default_dir "priv/snakebridge/schemas"

  @doc """
  The descriptor of `module_path`, stored in the cache.

  With a pool running, a worker answers. When the cache holds a descriptor made for the
  same request (config, module, submodules, depth, exclusions), the worker only checks
  that the library's version and its Python's are still the descriptor's, and that
  descriptor is the answer; otherwise (or with `force: true`) it introspects, and the new
  descriptor is stored. The descriptor cache is the only cache:
  `SnakeBridge.Cache.invalidate!/2` is all it takes to introspect again. Without a pool,
  the cached descriptor is returned when it was made for the same config. Returns
  `{:ok, entry}` or `{:error, %SnakeBridge.Error{}}`.
  """
  @spec describe(String.t(), keyword()) :: {:ok, Descriptor.Entry.t()} | {:error, Error.t()}
  def describe(module_path, opts \\ []) when is_binary(module_path) do
    integration = to_string(Keyword.get(opts, :integration, module_path))

    case Pool.lookup(Keyword.get(opts, :pool, Pool)) do
      {:ok, {resource, _}} ->
        introspect(resource, module_path, integration, opts)

      {:error, no_pool} ->
        case load(integration, opts) do
          :miss ->
            message = "no cached descriptor of #{integration}, and " <> no_pool.message
            {:error, %{no_pool | message: message}}

          found_or_corrupt ->
            found_or_corrupt
        end
    end
  end

  @doc """
  Like `describe/2`, but with a temporary one-worker pool of its own, started for this
  call and stopped after it: for compile time, when no pool runs and the descriptor is
  not cached yet. The worker uses the Python and `python_path` of the application's
  `:pool` config. Options as for `describe/2` (`:pool` is ignored).
  """
  @spec describe_once(String.t(), keyword()) :: {:ok, Descriptor.Entry.t()} | {:error, Error.t()}
  def describe_once(module_path, opts \\ []) when is_binary(module_path) do
    # As the application does: worker processes cannot be waited for otherwise.
    :os.set_signal(:sigchld, :default)
    name = :"snakebridge_introspection_#{System.unique_integer([:positive])}"
    pool = Application.get_env(:snakebridge, :pool, [])

    pool_opts =
      [name: name, size: 1, threads: 1, strict: true]
      |> Keyword.merge(Keyword.take(pool, [:python, :python_path, :env, :startup_timeout]))

    case Pool.start(pool_opts) do
      {:ok, pid} ->
        try do
          describe(module_path, Keyword.put(opts, :pool, name))
        after
          GenServer.stop(pid)
        end

      {:error, %Error{} = error} ->
        {:error, error}

      {:error, other} ->
        {:error, Error.new(:worker_start_failed, "cannot start a worker: #{inspect(other)}")}
    end
  end

  @doc """
  The cached descriptor of `integration`, without Python: `{:ok, entry}`, `:miss` (none,
  or made for another `:config`), or `{:error, %SnakeBridge.Error{}}` for a corrupt file
  (the message names the file and the field). Options: `:cache_dir`, `:config`.
  """
  @spec load(String.t() | atom(), keyword()) ::
          {:ok, Descriptor.Entry.t()} | :miss | {:error, Error.t()}
  def load(integration, opts \\ []) do
    file = Path.join(cache_dir(opts), "#{integration}.json")

    # A loaded descriptor is kept in :persistent_term (reads copy nothing), valid while its
    # file is the same (inode, size, modification time: every write is a rename, so a new
    # inode); otherwise the core reads, validates and converts the file again.
    entry =
      with {:ok, stat} <- File.stat(file, time: :posix),
           {^stat, entry} <- :persistent_term.get({__MODULE__, file}, nil) do
        {:ok, entry}
      else
        _ -> load_file(file, to_string(integration), opts)
      end

    case entry do
      {:ok, entry} -> if config_matches?(entry, opts), do: {:ok, entry}, else: :miss
      miss_or_error -> miss_or_error
    end
  end

  defp load_file(file, integration, opts) do
    case Native.descriptor_load(cache_dir(opts), integration, nil) do
      {:ok, entry} ->
        with {:ok, stat} <- File.stat(file, time: :posix) do
          :persistent_term.put({__MODULE__, file}, {stat, entry})
        end

        SnakeBridge.Audit.record_descriptor(entry, "cache")

        {:ok, entry}

      {:error, message} ->
        {:error, Error.new(:encoding, message)}

      :miss ->
        :miss
    end
  end

  defp config_matches?(entry, opts) do
    not Keyword.has_key?(opts, :config) or
      entry.config_hash ==
        :crypto.hash(:sha256, config_bytes(opts)) |> Base.encode16(case: :lower)
  end

  @doc false
  # Drops the memo of a descriptor file (after it was invalidated or rewritten).
  def forget(file) do
    :persistent_term.erase({__MODULE__, file})
    :ok
  end

  @doc """
  What changed between two descriptors (entries or bare descriptors): the dotted paths of
  functions, classes, constructors, methods and properties that were `added`, `removed`
  or `changed` (with the old and the new signature).
  """
  @spec diff(Descriptor.Entry.t() | Descriptor.t(), Descriptor.Entry.t() | Descriptor.t()) ::
          %{
            added: [String.t()],
            removed: [String.t()],
            changed: [{String.t(), String.t(), String.t()}]
          }
  def diff(old, new) do
    {old, new} = {signatures(old), signatures(new)}
    old_keys = MapSet.new(Map.keys(old))
    new_keys = MapSet.new(Map.keys(new))

    common = old_keys |> MapSet.intersection(new_keys) |> Enum.sort()
    changed = for key <- common, old[key] != new[key], do: {key, old[key], new[key]}

    %{
      added: new_keys |> MapSet.difference(old_keys) |> Enum.sort(),
      removed: old_keys |> MapSet.difference(new_keys) |> Enum.sort(),
      changed: changed
    }
  end

  # Every described name and its signature, flattened: `json.dumps`, `json.JSONDecoder`,
  # `json.JSONDecoder.__init__`, `json.JSONDecoder.decode`, `pkg.Class.prop`.
  defp signatures(%Descriptor.Entry{descriptor: descriptor}), do: signatures(descriptor)

  defp signatures(%Descriptor{} = descriptor) do
    functions =
      for {path, function} <- descriptor.functions,
          into: %{},
          do: {path, function.signature}

    classes =
      for {path, class} <- descriptor.classes,
          entry <- class_signatures(path, class),
          into: %{},
          do: entry

    Map.merge(functions, classes)
  end

  defp class_signatures(path, %Descriptor.Class{} = class) do
    bases = "class(" <> Enum.join(class.bases, ", ") <> ")"
    constructor = class.constructor && class.constructor.signature
    methods = for {name, m} <- class.methods, do: {"#{path}.#{name}", m.signature}

    properties =
      for p <- class.properties,
          do: {"#{path}.#{p.name}", if(p.readonly, do: "property (read-only)", else: "property")}

    [{path, bases}, {"#{path}.__init__", constructor} | methods ++ properties]
  end

  @doc false
  def cache_dir(opts), do: Keyword.get(opts, :cache_dir, @default_dir) |> Path.expand()

  defp config_bytes(opts),
    do: :erlang.term_to_binary(Keyword.get(opts, :config), [:deterministic])

  defp introspect(resource, module_path, integration, opts) do
    tag = make_ref()
    timeout = Keyword.get(opts, :timeout, 120_000)

    spec = %Native.Describe{
      dir: cache_dir(opts),
      integration: integration,
      module_path: module_path,
      submodules: Enum.map(Keyword.get(opts, :submodules, []), &to_string/1),
      depth: Keyword.get(opts, :depth, 0),
      exclude_patterns: Keyword.get(opts, :exclude_patterns, []),
      config: config_bytes(opts),
      force: Keyword.get(opts, :force, false),
      timeout_ms: timeout
    }

    :ok = Native.describe(resource, spec, self(), tag)

    receive do
      {^tag, {:ok, entry}} ->
        forget(Path.join(cache_dir(opts), "#{integration}.json"))
        SnakeBridge.Audit.record_descriptor(entry, "introspected")
        {:ok, entry}

      {^tag, {:error, error}} ->
        {:error, Error.from_native(error, module_path)}
    end
  end
end
