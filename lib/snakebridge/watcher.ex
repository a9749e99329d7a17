defmodule SnakeBridge.Watcher do
  @moduledoc """
  Regenerates and reloads the modules of a config manifest (`config/snakebridge/*.exs`)
  as soon as it is saved, for development.

  The watching is done by SnakeBridge's Rust core (inotify, FSEvents, ... through the
  `notify` crate): the bursts of events an editor's save makes are coalesced, and each
  changed `.exs` file is handled once, about 100 ms after the last write:

    * a config that exists is generated again (its modules purged and recompiled, see
      `SnakeBridge.Generator.generate_and_load/2`); modules it generated before and no
      longer does are removed;
    * if generation raises (an invalid config, a missing descriptor, a syntax error), the
      error is logged and the modules loaded before stay as they were;
    * a deleted config has the modules it generated (through this watcher) purged;
    * a changed partial (a file whose name starts with `_`, such as a mixin
      `_common.exs`) has every manifest of its directory generated again.

  Reloads are logged (`Logger.info/1`, errors with `Logger.error/1`) and reported as the
  `[:snakebridge, :watcher, :reload]` telemetry event (measurement `duration` in native
  time units; metadata `%{path: path, modules: modules}` or `%{path: path, error: message}`),
  and as messages to subscribers (see `subscribe/1`).

  Only the directories themselves are watched, not their subdirectories, and each must
  exist when the watcher starts. Modules generated at compile time (by
  `use SnakeBridge.Generator`) are replaced when their config changes, but the watcher
  only removes, on deletion, modules it generated itself.

  ## Options

    * `:dirs` - the directories of config manifests to watch (default
      `["config/snakebridge"]`, relative to the current directory).
    * `:name` - the name to register the server under (default `SnakeBridge.Watcher`;
      `nil` for none).
    * `:generate` - a function of a config file's path that generates and loads its
      modules and returns their names (default
      `&SnakeBridge.Generator.generate_and_load/1`).

  ## Examples

  Started by SnakeBridge's application when `:watch` is set, typically in
  `config/dev.exs`:

      config :snakebridge, watch: true

      # or with options:
      config :snakebridge, watch: [dirs: ["config/snakebridge", "config/python"]]

  or under your own supervisor:

      children = [{SnakeBridge.Watcher, dirs: ["config/snakebridge"]}]
  """

  use GenServer

  require Logger

  alias SnakeBridge.Native

  @typedoc "What a subscriber learns of one config: its modules now, or why it failed."
  @type outcome :: {:ok, [module()]} | {:error, String.t()}

  @doc """
  Starts the watcher (see the options above). Fails with `{:error, message}` when a
  directory does not exist.
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []) do
    {name, opts} = Keyword.pop(opts, :name, __MODULE__)
    GenServer.start_link(__MODULE__, opts, if(name, do: [name: name], else: []))
  end

  @doc """
  Subscribes the calling process: after each config the watcher handled it receives
  `{:snakebridge_reloaded, path, {:ok, modules} | {:error, message}}` (`{:ok, []}` for a
  deleted config). The subscription ends when the process exits.
  """
  @spec subscribe(GenServer.server()) :: :ok
  def subscribe(server \\ __MODULE__), do: GenServer.call(server, {:subscribe, self()})

  @impl true
  def init(opts) do
    dirs = opts |> Keyword.get(:dirs, ["config/snakebridge"]) |> Enum.map(&Path.expand/1)
    generate = Keyword.get(opts, :generate, &SnakeBridge.Generator.generate_and_load/1)

    case Native.watch_start(dirs, self()) do
      {:ok, watcher} ->
        {:ok, %{watcher: watcher, generate: generate, modules: %{}, subscribers: %{}}}

      {:error, message} ->
        {:stop, message}
    end
  end

  @impl true
  def handle_call({:subscribe, pid}, _from, state) do
    subscribers = Map.put_new_lazy(state.subscribers, pid, fn -> Process.monitor(pid) end)
    {:reply, :ok, %{state | subscribers: subscribers}}
  end

  @impl true
  def handle_info({:snakebridge_config_changed, watcher, paths}, %{watcher: watcher} = state) do
    {:noreply, Enum.reduce(paths, state, &handle_change/2)}
  end

  def handle_info({:DOWN, _monitor, :process, pid, _reason}, state) do
    {:noreply, %{state | subscribers: Map.delete(state.subscribers, pid)}}
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state), do: Native.watch_stop(state.watcher)

  defp handle_change(path, state) do
    started = System.monotonic_time()

    cond do
      SnakeBridge.Config.Loader.partial?(path) -> reload_dependents(path, state)
      File.regular?(path) -> reload(path, state, started)
      Map.has_key?(state.modules, path) -> remove(path, state, started)
      # A file that came and went, or a config this watcher never loaded.
      true -> state
    end
  end

  # A partial (`_common.exs`, a mixin or base) is no config of its own: every manifest
  # of its directory is generated again, as any of them may include it.
  defp reload_dependents(partial, state) do
    partial
    |> Path.dirname()
    |> SnakeBridge.Config.Loader.manifests()
    |> Enum.reduce(state, &reload(&1, &2, System.monotonic_time()))
  end

  defp reload(path, state, started) do
    case generate(state.generate, path) do
      {:ok, modules} ->
        stale = Map.get(state.modules, path, []) -- modules
        Enum.each(stale, &unload/1)

        Logger.info(
          "SnakeBridge.Watcher: #{path} reloaded #{inspect(modules)}" <>
            if(stale == [], do: "", else: ", removed #{inspect(stale)}")
        )

        report(state, path, {:ok, modules}, started)
        put_in(state.modules[path], modules)

      {:error, message} ->
        Logger.error(
          "SnakeBridge.Watcher: #{path} could not be reloaded; " <>
            "its modules stay as they were:\n#{message}"
        )

        report(state, path, {:error, message}, started)
        state
    end
  end

  defp remove(path, state, started) do
    {modules, loaded} = Map.pop(state.modules, path)
    Enum.each(modules, &unload/1)
    Logger.info("SnakeBridge.Watcher: #{path} was deleted, removed #{inspect(modules)}")
    report(state, path, {:ok, []}, started)
    %{state | modules: loaded}
  end

  defp generate(generate, path) do
    case generate.(path) do
      modules when is_list(modules) -> {:ok, modules}
      other -> {:error, "the :generate function returned #{inspect(other)}, not a list"}
    end
  rescue
    error -> {:error, Exception.message(error)}
  catch
    kind, reason -> {:error, Exception.format_banner(kind, reason)}
  end

  defp unload(module) do
    :code.purge(module)
    :code.delete(module)
    :code.purge(module)
  end

  defp report(state, path, outcome, started) do
    metadata =
      case outcome do
        {:ok, modules} -> %{path: path, modules: modules}
        {:error, message} -> %{path: path, error: message}
      end

    duration = System.monotonic_time() - started
    SnakeBridge.Telemetry.emit([:watcher, :reload], %{duration: duration}, metadata)
    Enum.each(Map.keys(state.subscribers), &send(&1, {:snakebridge_reloaded, path, outcome}))
  end
end
