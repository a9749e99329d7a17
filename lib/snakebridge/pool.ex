defmodule SnakeBridge.Pool do
  @moduledoc """
  A supervised pool of Python worker processes.

  The application starts one pool, named `SnakeBridge.Pool`, from the `:snakebridge`
  application environment (see "Options"); more pools can be started under your own
  supervisor and selected per call with the `:pool` option of `SnakeBridge.call/5`.

  The workers are OS processes managed by SnakeBridge's Rust core: they are started in
  parallel, several calls run on each at once (least-loaded dispatch), a worker that dies
  is replaced (its in-flight callers get `:worker_crashed` at once), and every worker is
  killed when the pool stops or the VM dies. This process only owns the pool: calls do
  not pass through it.

  ## Options

    * `:name` - registered name of the pool (default `SnakeBridge.Pool`).
    * `:python` - the Python interpreter: any CPython 3.10 or newer, with the libraries
      your calls use (SnakeBridge brings its own worker code). Without it: `config
      :snakebridge, python: ...`, `$SNAKEBRIDGE_PYTHON`, the venv of `mix
      snakebridge.setup`, then `python3` (see `SnakeBridge.Python`).
    * `:strict` - whether the pool's start fails when a worker cannot start (default
      `false`). A pool that is not strict starts anyway, logs one error that names the
      interpreter, what went wrong and the command that fixes it, and keeps trying to start
      its workers with backoff (up to 5 s apart); meanwhile calls fail at once with
      `:no_workers` and the same explanation. So an application that uses SnakeBridge
      boots even when Python is missing or broken.
    * `:size` - number of worker processes (default `System.schedulers_online/0`).
    * `:threads` - Python threads per worker; `1` runs one call at a time (default `4`).
    * `:timeout` - default per-call timeout in milliseconds, or `:infinity` (default
      `30_000`).
    * `:startup_timeout` - how long a worker may take to become ready, in milliseconds
      (default `30_000`).
    * `:env` - extra environment variables for the workers only, as a map or a list of
      `{name, value}` strings (for example `%{"OMP_NUM_THREADS" => "1"}`).
    * `:python_path` - directories prepended to the workers' `PYTHONPATH`.
    * `:max_message_size` - largest single message on either carrier, in bytes (default
      64 MiB); larger payloads are sent in parts, transparently.
    * `:max_payload_size` - largest payload a call may send (its encoded arguments and
      tensor data), in bytes (default 2 GiB). Larger arguments are refused with a
      `:payload_too_large` error while they are encoded, before anything is sent.
    * `:max_result_size` - largest payload a worker may send back: a result, a stream
      chunk, the arguments of an Elixir function Python calls (default 1 GiB). The worker
      refuses to send more, and the BEAM refuses to take more; the call fails with
      `:payload_too_large`, and the worker and the other calls carry on.
    * `:max_elements` - the most values one payload may hold, either way: list, tuple and
      set items, map keys and map values, nested ones included (default 10 million).
      Every container is checked against what is left before its elements are built, so
      a Python function returning a list of 100 million integers fails at once with
      `:payload_too_large` instead of filling the BEAM's memory (each value costs the BEAM
      tens of bytes as a term). Tensor and binary data count as one value each: send
      large numeric data as tensors, which these limits bound by size alone.
    * `:carrier` - how frames travel between the BEAM and the workers: `:local` (the
      default: the contract's messages, each prefixed by its length, straight over each
      worker's Unix socket) or `:grpc` (gRPC over the same socket, HTTP/2 framing; what
      workers on other hosts will use). The default can be set with `config :snakebridge,
      carrier: :grpc`.
    * `:shared_memory` - buffers (tensor data, large binaries) of at least this many bytes
      cross between the BEAM and the workers as files under `/dev/shm` instead of inside
      gRPC messages; `true` for the default of 1 MiB, `false` to always use messages
      (default `true`). Machines without a writable `/dev/shm` use messages. Each worker
      has a directory of its own, which the other workers cannot list; the BEAM reads a
      worker's file into memory of its own and never maps it, so Python code cannot
      change or truncate a binary after sending it.
    * `:allowed_modules` - the Python modules calls may reach, as a list of dotted names
      (`"numpy"` allows `numpy.linalg.norm`; `"os.path"` allows `os.path.join` but not
      `os.system`), or `:any` (default). With a list, a call, attribute access or
      introspection outside it fails with `:not_allowed` before any Python runs: the core
      checks every request's names, and the worker checks again what they resolve to
      (modules met on the way, where a function was defined, modules handed out by an
      attribute). Private names (`_x`, `__x__`) are refused too: they are how attribute
      chains escape. An integration with `allowed_modules` adds them and its
      `python_module`, and restricts the pool even when this option is `:any`.
    * `:redact` - strings (API keys, passwords) replaced by `[REDACTED]` in everything
      that comes back from the workers: Python exception messages and tracebacks, worker
      stderr, introspection errors. The resolved `{:system, "ENV_VAR"}` secrets of the
      pool's integrations are always redacted.
    * `:max_queue` - calls that may wait for a Python thread beyond the `size × threads`
      that run at once (default `10_000`). Past it a call fails at once with
      `:overloaded` instead of queueing without bound.
    * `:hang_grace` - milliseconds a call may keep running in Python after it was given
      up on (its deadline passed or its caller died) before it counts as hung (default
      `1_000`). When a call is given up on, the worker raises
      `snakebridge_agent.dispatch.CallCancelled` (a `BaseException`) in it: a call
      looping in Python stops there and frees its thread. A call blocked in C code (a
      `time.sleep`, a native loop) cannot be interrupted and counts as hung.
    * `:on_hang` - what happens to a worker with a hung call: `:replace` (default) takes
      it out of the pool at once, starts its replacement, and kills it once its other
      calls are done, so no thread leaks and no other caller is cut short; `:keep` leaves
      it working with one thread less. `SnakeBridge.stats/1` counts `hung_calls`.
    * `:init` - calls every worker makes when it starts and after a restart, before it
      takes work, as `{module, function, args, kwargs}` (for example
      `{"dspy", "configure", [], lm: lm}`). A failing init call fails the worker's start.
    * `:tools` - Elixir functions exported to Python by name, `[{python_name, fun}]`:
      every worker registers them as `snakebridge_agent.tools.<python_name>`. Only this
      pool's workers can call them (see `SnakeBridge.Callbacks`).
    * `:integrations` - integration configs (config modules, manifest paths or configs;
      see `SnakeBridge.Config`) whose worker setup the pool applies: each one's `init`
      calls run after the pool's own, and its `bidirectional_tools` are exported like
      `:tools`. Their `{:system, "ENV_VAR"}` values are resolved when the pool starts;
      an unset variable fails the start with an `:invalid_config` error. A config's
      `grpc.max_message_size` bounds the pool's `:max_message_size` (the smallest wins).

  ## Examples

      children = [
        {SnakeBridge.Pool, name: MyApp.NumpyPool, size: 2, env: %{"OMP_NUM_THREADS" => "1"}}
      ]

      SnakeBridge.call("numpy", "arange", [3], [], pool: MyApp.NumpyPool)
  """

  use GenServer

  require Logger

  alias SnakeBridge.{Contract, Error, Native}

  @type option ::
          {:name, atom()}
          | {:python, Path.t()}
          | {:strict, boolean()}
          | {:size, pos_integer()}
          | {:threads, pos_integer()}
          | {:timeout, timeout()}
          | {:startup_timeout, pos_integer()}
          | {:env, map() | [{String.t(), String.t()}]}
          | {:python_path, [Path.t()]}
          | {:max_message_size, pos_integer()}
          | {:max_payload_size, pos_integer()}
          | {:max_result_size, pos_integer()}
          | {:max_elements, pos_integer()}
          | {:carrier, :local | :grpc}
          | {:shared_memory, boolean() | pos_integer()}
          | {:allowed_modules, :any | [String.t() | atom()]}
          | {:max_queue, non_neg_integer()}
          | {:redact, [String.t()]}
          | {:hang_grace, pos_integer()}
          | {:on_hang, :replace | :keep}
          | {:init, [{String.t() | atom(), String.t() | atom(), list(), keyword() | map()}]}
          | {:tools, [{String.t(), function()}]}
          | {:integrations, [SnakeBridge.Config.source()]}

  @doc """
  Starts a pool and links it to the caller. Returns once every worker is ready or, when
  one cannot start, `{:ok, pid}` all the same (the pool retries and logs why) or, with
  `strict: true`, `{:error, %SnakeBridge.Error{}}` saying why.
  """
  @spec start_link([option()]) :: GenServer.on_start()
  def start_link(opts \\ []) do
    opts = validate!(opts)
    GenServer.start_link(__MODULE__, opts, name: opts[:name])
  end

  @doc """
  Like `start_link/1`, but the pool is not linked to the caller: for a pool that lives
  for one task (stop it with `stop/1`).
  """
  @spec start([option()]) :: GenServer.on_start()
  def start(opts \\ []) do
    opts = validate!(opts)
    GenServer.start(__MODULE__, opts, name: opts[:name])
  end

  @doc false
  def child_spec(opts) do
    %{
      id: Keyword.get(opts, :name, __MODULE__),
      start: {__MODULE__, :start_link, [opts]},
      type: :worker,
      shutdown: 10_000
    }
  end

  @doc """
  The pool's live workers: slot, OS pid, calls in flight and Python version of each.
  """
  @spec workers(atom()) :: [
          %{slot: non_neg_integer(), pid: pos_integer(), in_flight: non_neg_integer()}
        ]
  def workers(name \\ __MODULE__) do
    case lookup(name) do
      {:ok, {resource, _timeout}} -> Native.pool_workers(resource)
      {:error, _} -> []
    end
  end

  @doc """
  The settings a running pool works with, after its integrations were applied: `:python`
  (and `:python_source`, where it came from), `:strict`, `:size`, `:threads`, `:timeout`, `:startup_timeout`, `:max_message_size`,
  `:max_payload_size`, `:max_result_size`, `:max_elements`, `:carrier`, `:max_queue`, `:hang_grace`, `:on_hang`, `:allowed_modules` (nil
  for any module) and `:shared_memory` (never its init calls or tools, which may hold
  secrets). `:shared_memory` is the smallest buffer that crosses through shared memory,
  in bytes, or `false` when none does (disabled, or the machine has no `/dev/shm`).

  """
  @spec settings(atom()) :: keyword()
  def settings(name \\ __MODULE__), do: GenServer.call(name, :settings)

  @impl true
  def handle_call(:settings, _from, state), do: {:reply, state.settings, state}

  @doc "Stops a pool started with `start_link/1`, killing its workers."
  @spec stop(atom()) :: :ok
  def stop(name \\ __MODULE__), do: GenServer.stop(name)

  @doc false
  # The pool's native handle and default timeout; `{:error, %Error{reason: :no_pool}}` when
  # no pool of that name runs.
  @spec lookup(atom()) :: {:ok, {reference(), timeout()}} | {:error, Error.t()}
  def lookup(name) do
    case :persistent_term.get({__MODULE__, name}, nil) do
      nil ->
        {:error,
         Error.new(
           :no_pool,
           "no SnakeBridge pool named #{inspect(name)} is running " <>
             "(is the :snakebridge application started?)"
         )}

      entry ->
        {:ok, entry}
    end
  end

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)

    case integration_setup(opts[:integrations]) do
      {:ok, init, tools, secrets} ->
        init = native_init(opts[:init], opts[:tools]) ++ native_init([], tools) ++ init
        start_pool(opts, init, secrets)

      {:error, error} ->
        {:stop, error}
    end
  end

  defp start_pool(opts, init, secrets) do
    tag = make_ref()

    native_options = %Native.PoolOptions{
      name: opts[:name],
      python: opts[:python],
      priv_dir: List.to_string(:code.priv_dir(:snakebridge)),
      strict: opts[:strict],
      start_hint: SnakeBridge.Python.start_hint({opts[:python], opts[:python_source]}),
      size: opts[:size],
      threads: opts[:threads],
      startup_timeout_ms: opts[:startup_timeout],
      max_message_size: opts[:max_message_size],
      max_payload_size: opts[:max_payload_size],
      max_result_size: opts[:max_result_size],
      max_elements: opts[:max_elements],
      carrier: Atom.to_string(opts[:carrier]),
      shared_memory: shared_min_size(opts[:shared_memory]),
      allowed_modules: opts[:allowed_modules],
      secrets: Enum.uniq(secrets ++ Enum.map(opts[:redact], &to_string/1)),
      max_queue: opts[:max_queue],
      hang_grace_ms: opts[:hang_grace],
      on_hang: opts[:on_hang],
      env: opts[:env],
      python_path: opts[:python_path],
      init: init
    }

    :ok = Native.pool_start(native_options, self(), tag)

    receive do
      {^tag, {:ok, resource, shared_min_size, start_error}} ->
        if start_error, do: log_start_error(opts[:name], Error.from_native(start_error, nil))
        :persistent_term.put({__MODULE__, opts[:name]}, {resource, opts[:timeout]})
        settings = Keyword.put(effective_settings(opts), :shared_memory, shared_min_size)
        {:ok, %{name: opts[:name], resource: resource, settings: settings}}

      {^tag, {:error, error}} ->
        {:stop, Error.from_native(error, nil)}
    after
      # Workers start in parallel; the core enforces startup_timeout on each of them.
      opts[:startup_timeout] + 10_000 ->
        {:stop, Error.new(:worker_start_failed, "the pool did not start in time")}
    end
  end

  defp log_start_error(name, %Error{message: message}) do
    Logger.error(
      "SnakeBridge pool #{inspect(name)} started without Python workers; calls answer " <>
        "{:error, %SnakeBridge.Error{reason: :no_workers}} until one starts " <>
        "(it keeps trying): #{message}"
    )
  end

  @impl true
  def terminate(_reason, %{name: name, resource: resource}) do
    :persistent_term.erase({__MODULE__, name})
    Native.pool_stop(resource)
    :ok
  end

  @settings [
    :python,
    :python_source,
    :strict,
    :size,
    :threads,
    :timeout,
    :startup_timeout,
    :max_message_size,
    :max_payload_size,
    :max_result_size,
    :max_elements,
    :carrier,
    :max_queue,
    :hang_grace,
    :on_hang,
    :allowed_modules
  ]

  defp effective_settings(opts), do: Keyword.take(opts, @settings)

  # The smallest buffer shared, in bytes; nil for none.
  defp shared_min_size(true), do: Contract.fetch!(:default_shared_min_size)
  defp shared_min_size(false), do: nil
  defp shared_min_size(bytes), do: bytes

  # The integrations' init calls (secrets resolved now), tools and secret values.
  defp integration_setup(configs) do
    Enum.reduce_while(configs, {:ok, [], [], []}, fn config, {:ok, init, tools, secrets} ->
      case SnakeBridge.Config.pool_setup(config) do
        {:ok, setup} ->
          {:cont, {:ok, init ++ setup.init, tools ++ setup.tools, secrets ++ setup.secrets}}

        {:error, message} ->
          {:halt, {:error, Error.new(:invalid_config, message)}}
      end
    end)
  end

  defp native_init(calls, tools) do
    init =
      for {module, function, args, kwargs} <- calls,
          do: {SnakeBridge.Runtime.target(module, function), args, kwargs}

    register = Contract.fetch!(:register_tool)
    exports = for {name, fun} <- tools, do: {register, [name, fun], []}
    init ++ exports
  end

  defp validate!(opts) do
    defaults = [
      name: __MODULE__,
      python: nil,
      strict: false,
      size: System.schedulers_online(),
      threads: Contract.fetch!(:default_threads),
      timeout: 30_000,
      startup_timeout: 30_000,
      env: [],
      python_path: [],
      max_message_size: Contract.fetch!(:default_max_message_size),
      max_payload_size: Contract.fetch!(:default_max_payload_size),
      max_result_size: Contract.fetch!(:default_max_result_size),
      max_elements: Contract.fetch!(:default_max_elements),
      carrier: Application.get_env(:snakebridge, :carrier, :local),
      shared_memory: true,
      allowed_modules: :any,
      max_queue: 10_000,
      redact: [],
      hang_grace: 1_000,
      on_hang: :replace,
      init: [],
      tools: [],
      integrations: []
    ]

    opts = Keyword.merge(defaults, opts)
    {python, source} = SnakeBridge.Python.resolve(opts)

    Enum.each(opts, fn {key, value} ->
      unless valid?(key, value) do
        raise ArgumentError, "invalid SnakeBridge.Pool option #{inspect(key)}: #{inspect(value)}"
      end
    end)

    opts
    |> Keyword.merge(python: python, python_source: source)
    |> Keyword.update!(:env, fn env ->
      Enum.map(env, fn {k, v} -> {to_string(k), to_string(v)} end)
    end)
    |> Keyword.update!(:python_path, fn paths -> Enum.map(paths, &Path.expand/1) end)
    |> Keyword.update!(:integrations, fn configs ->
      Enum.map(configs, &SnakeBridge.Config.load!/1)
    end)
    |> bound_message_size()
    |> allowed_modules()
  end

  # The pool's allowlist (nil: any module): its own list, plus each integration's
  # allowed_modules and python_module once the pool or any integration restricts it.
  defp allowed_modules(opts) do
    integrations = opts[:integrations]
    restricted? = opts[:allowed_modules] != :any or Enum.any?(integrations, & &1.allowed_modules)

    allowed =
      if restricted? do
        own = if opts[:allowed_modules] == :any, do: [], else: opts[:allowed_modules]

        from_integrations =
          Enum.flat_map(integrations, &[&1.python_module | &1.allowed_modules || []])

        (own ++ from_integrations)
        |> Enum.reject(&is_nil/1)
        |> Enum.map(&to_string/1)
        |> Enum.uniq()
      end

    Keyword.put(opts, :allowed_modules, allowed)
  end

  # The smallest of the pool's and its integrations' grpc.max_message_size.
  defp bound_message_size(opts) do
    limits =
      for %SnakeBridge.Config{grpc: %{max_message_size: limit}} <- opts[:integrations],
          is_integer(limit) and limit > 0,
          do: limit

    Keyword.update!(opts, :max_message_size, &Enum.min([&1 | limits]))
  end

  defp valid?(:name, name), do: is_atom(name)
  defp valid?(:python, python), do: python == nil or is_binary(python) or is_list(python)
  defp valid?(:strict, strict), do: is_boolean(strict)
  defp valid?(:carrier, carrier), do: carrier in [:local, :grpc]

  defp valid?(key, n)
       when key in [
              :size,
              :threads,
              :startup_timeout,
              :max_message_size,
              :max_payload_size,
              :max_result_size,
              :max_elements
            ],
       do: is_integer(n) and n > 0

  defp valid?(:allowed_modules, :any), do: true

  defp valid?(:allowed_modules, modules),
    do:
      is_list(modules) and
        Enum.all?(modules, &((is_binary(&1) or is_atom(&1)) and dotted_name?(to_string(&1))))

  defp valid?(:redact, values), do: is_list(values) and Enum.all?(values, &is_binary/1)
  defp valid?(:max_queue, n), do: is_integer(n) and n >= 0
  defp valid?(:hang_grace, n), do: is_integer(n) and n > 0
  defp valid?(:on_hang, policy), do: policy in [:replace, :keep]

  defp valid?(:shared_memory, shared),
    do: is_boolean(shared) or (is_integer(shared) and shared > 0)

  defp valid?(:timeout, t), do: t == :infinity or (is_integer(t) and t > 0)
  defp valid?(:env, env), do: (is_map(env) or is_list(env)) and Enum.all?(env, &match?({_, _}, &1))
  defp valid?(:python_path, paths), do: is_list(paths)

  defp valid?(:init, calls),
    do: is_list(calls) and Enum.all?(calls, &match?({_, _, args, _} when is_list(args), &1))

  defp valid?(:tools, tools),
    do:
      is_list(tools) and
        Enum.all?(tools, &match?({name, fun} when is_binary(name) and is_function(fun), &1))

  defp valid?(:integrations, configs), do: is_list(configs)
  defp valid?(_key, _value), do: false

  defp dotted_name?(name), do: name =~ ~r/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/
end
