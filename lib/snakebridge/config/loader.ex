defmodule SnakeBridge.Config.Loader do
  @moduledoc """
  Loads integration configs from `.exs` manifests, by default every
  `config/snakebridge/*.exs`.

  A manifest is Elixir code that evaluates to a `%SnakeBridge.Config{}`, a map or a keyword
  list. It may be an EEx template: `<%= ... %>` is expanded first, with the assigns
  `@env` (the Mix environment, when Mix is running), `@dir` (the manifest's directory)
  plus the `:assigns` option. EEx runs when the manifest is loaded, which for generated
  modules is compile time: use `{:system, "ENV_VAR"}` for secrets, which is resolved at
  run time (see `SnakeBridge.Config`).

      # config/snakebridge/dspy.exs
      %SnakeBridge.Config{
        python_module: "dspy",
        version: "<%= System.get_env("DSPY_VERSION", "3") %>",
        mixins: ["common.exs"],
        init: [%{python_path: "dspy.configure",
                 kwargs: %{lm: {:call, "dspy.LM", ["openai/gpt-4o-mini"],
                                %{api_key: {:system, "OPENAI_API_KEY"}}}}}]
      }

  Loading merges `extends` and `mixins` and validates the result (see
  `SnakeBridge.Config.load/2`). A manifest with a signature file (`dspy.exs.sig`) must
  verify: see `SnakeBridge.Config.Signature`. Files whose name starts with `_` are partials: they are
  only included by other manifests, never loaded on their own by `load_all/2`.
  """

  alias SnakeBridge.Config

  @default_dir "config/snakebridge"

  @doc """
  Loads, composes and validates the manifest at `path`. Returns `{:ok, config}` or
  `{:error, problems}` (a file that cannot be read or evaluated is one problem at
  `"config"`, with the file and line).

  Options: `:assigns` - extra EEx assigns (a keyword list); `:manifest_keys` and
  `:require_signed_manifests` override the application config of signed manifests (see
  `SnakeBridge.Config.Signature`).
  """
  @spec load(Path.t(), keyword()) :: {:ok, Config.t()} | {:error, [Config.problem()]}
  def load(path, opts \\ []) when is_binary(path) do
    with {:ok, raw} <- read(path, opts) do
      Config.load(raw, dir: Path.dirname(Path.expand(path)))
    end
  end

  @doc "Like `load/2`, but returns the config or raises `ArgumentError` naming the file."
  @spec load!(Path.t(), keyword()) :: Config.t()
  def load!(path, opts \\ []) do
    case load(path, opts) do
      {:ok, config} ->
        config

      {:error, problems} ->
        raise ArgumentError, Config.describe_problems(Path.relative_to_cwd(path), problems)
    end
  end

  @doc """
  Loads every manifest of `dir` (default `config/snakebridge`; see `manifests/1`), in
  file name order. Returns `{:ok, [{path, config}]}`, or `{:error, [{path, problems}]}`
  with every manifest that failed. A missing directory has no manifests.
  """
  @spec load_all(Path.t(), keyword()) ::
          {:ok, [{Path.t(), Config.t()}]} | {:error, [{Path.t(), [Config.problem()]}]}
  def load_all(dir \\ @default_dir, opts \\ []) do
    results = for path <- manifests(dir), do: {path, load(path, opts)}

    case for({path, {:error, problems}} <- results, do: {path, problems}) do
      [] -> {:ok, for({path, {:ok, config}} <- results, do: {path, config})}
      failures -> {:error, failures}
    end
  end

  @doc """
  The manifests of `dir`, sorted: its `*.exs` files except partials, the files whose name
  starts with `_` (mixins and bases such as `_common.exs`, which are only included by
  others through `mixins`/`extends`).
  """
  @spec manifests(Path.t()) :: [Path.t()]
  def manifests(dir \\ @default_dir) do
    dir |> Path.join("*.exs") |> Path.wildcard() |> Enum.reject(&partial?/1) |> Enum.sort()
  end

  @doc "Whether `path` is a partial config (its file name starts with `_`)."
  @spec partial?(Path.t()) :: boolean()
  def partial?(path), do: path |> Path.basename() |> String.starts_with?("_")

  @doc """
  Evaluates the manifest at `path` (EEx first) without composing or validating it: the
  term it evaluates to, or `{:error, [{"config", message}]}`.
  """
  @spec read(Path.t(), keyword()) :: {:ok, term()} | {:error, [Config.problem()]}
  def read(path, opts \\ []) do
    file = Path.expand(path)

    with {:ok, source} <- read_file(file),
         :ok <- check_signature(file, source, opts),
         {:ok, code} <- expand_eex(source, file, opts) do
      evaluate(code, file)
    end
  end

  # A signed manifest must verify (and an unsigned one may be refused); see
  # `SnakeBridge.Config.Signature`. Every manifest read is recorded in the audit log.
  defp check_signature(file, source, opts) do
    case SnakeBridge.Config.Signature.check(file, source, opts) do
      {:ok, signer} ->
        SnakeBridge.Audit.record("manifest", %{
          path: file,
          sha256: :crypto.hash(:sha256, source) |> Base.encode16(case: :lower),
          signed_by: signer
        })

      {:error, message} ->
        {:error, [{"config", message}]}
    end
  end

  defp read_file(file) do
    case File.read(file) do
      {:ok, source} ->
        if String.valid?(source),
          do: {:ok, source},
          else: {:error, [{"config", "#{file} is not UTF-8 text"}]}

      {:error, reason} ->
        {:error, [{"config", "cannot read #{file}: #{:file.format_error(reason)}"}]}
    end
  end

  defp expand_eex(source, file, opts) do
    if String.contains?(source, "<%") do
      env = if Code.ensure_loaded?(Mix), do: Mix.env()
      assigns = [env: env, dir: Path.dirname(file)] ++ Keyword.get(opts, :assigns, [])

      try do
        {:ok, EEx.eval_string(source, [assigns: assigns], file: file)}
      rescue
        e -> {:error, [{"config", "EEx in #{file} failed: #{Exception.message(e)}"}]}
      end
    else
      {:ok, source}
    end
  end

  # Top-level expressions are evaluated one by one, so an exception names its line.
  defp evaluate(code, file) do
    exprs =
      case Code.string_to_quoted!(code, file: file) do
        {:__block__, _, exprs} -> exprs
        expr -> [expr]
      end

    exprs
    |> Enum.reduce({nil, [], Code.env_for_eval(file: file)}, fn expr, {_, binding, env} ->
      try do
        {value, binding, env} = Code.eval_quoted_with_env(expr, binding, env)
        {value, binding, env}
      rescue
        e ->
          line = if line = line_of(expr), do: ":#{line}", else: ""
          throw({:config_error, "#{Path.relative_to_cwd(file)}#{line}: #{Exception.message(e)}"})
      end
    end)
    |> then(fn {value, _, _} -> {:ok, value} end)
  rescue
    e in [SyntaxError, TokenMissingError, CompileError, MismatchedDelimiterError] ->
      {:error, [{"config", Exception.message(e)}]}
  catch
    {:config_error, message} -> {:error, [{"config", message}]}
  end

  defp line_of({_, meta, _}) when is_list(meta), do: meta[:line]
  defp line_of(_), do: nil
end
