defmodule SnakeBridge.Config do
  @moduledoc """
  Integration configs: what SnakeBridge generates Elixir modules from.

  A config is a map (written by hand or by `mix snakebridge.discover`, usually as
  `config/snakebridge/<module>.exs`) with the keys of the seed's DSPy example:
  `python_module` (required), `integration_id`, `elixir_module` (the namespace of the
  generated modules), `version`, `description`,
  `introspection` (`enabled`, `cache_path`, `discovery_depth`, `submodules`,
  `exclude_patterns`), `classes` (`python_path`, `elixir_module`, `description`,
  `extends`, `singleton`, `constructor` with `args`/`session_aware`/`timeout`, `methods`
  with `name`/`elixir_name`/`description`/`streaming`/`args`/`returns`/`timeout`,
  `properties` with `name`/`elixir_name`/`type`/`readonly`, `result_transform`),
  `functions` (`python_path`, `elixir_name`, `description`, `args`, `pure`, `cacheable`,
  `timeout`, `streaming`), `bidirectional_tools` (`enabled`, `export_to_python` with
  `python_name`/`function`), `grpc` (`max_message_size`), `caching`, `telemetry`,
  `serialization` (`args`, `result`: `:msgpack` or `:json`; `tensor_passthrough`),
  `session`, `python_deps`, `init`, `allowed_modules`, `mixins`, `extends`.

  Validation is done by SnakeBridge's Rust core, against one schema: unknown keys, wrong
  types, missing required fields and bad references (an `extends` naming no class of the
  config, two classes with one Elixir module, two methods with one Elixir name) are all
  reported at once, each with its path (`classes[3].methods[1].timeout`).
  """

  @typedoc "A problem in a config: where (`classes[3].methods[1].timeout`) and what."
  @type problem :: {path :: String.t(), message :: String.t()}

  @doc """
  Checks `config` against the schema. Returns `:ok` or `{:error, problems}` with every
  problem found.

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
  @spec validate(map()) :: :ok | {:error, [problem()]}
  def validate(config) when is_map(config) do
    config
    |> plain()
    |> SnakeBridge.Native.config_validate()
  end

  @doc """
  Like `validate/1`, but raises `ArgumentError` listing every problem (`source` names
  where the config came from, e.g. its file).
  """
  @spec validate!(map(), String.t()) :: map()
  def validate!(config, source \\ "config") do
    case validate(config) do
      :ok ->
        config

      {:error, problems} ->
        lines = Enum.map_join(problems, "\n", fn {path, message} -> "  #{path}: #{message}" end)
        raise ArgumentError, "invalid SnakeBridge config #{source}:\n#{lines}"
    end
  end

  # Structs (a config module's struct, nested ones) are checked as the maps they are.
  defp plain(%_{} = struct), do: struct |> Map.from_struct() |> plain()
  defp plain(map) when is_map(map), do: Map.new(map, fn {k, v} -> {k, plain(v)} end)
  defp plain(list) when is_list(list), do: Enum.map(list, &plain/1)
  defp plain(other), do: other
end
