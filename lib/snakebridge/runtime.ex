defmodule SnakeBridge.Runtime do
  @moduledoc """
  Executes calls on a pool: the machinery behind `SnakeBridge`'s functions and the
  generated modules.

  The native call returns at once; the reply arrives as a message, so no scheduler is
  ever blocked. The Rust core enforces each call's deadline and answers every call
  exactly once (result, Python error, timeout or crash); a backstop here cancels the call
  if that answer is late, and a call whose caller dies is cancelled when its handle is
  garbage-collected.

  ## Options

  Every function takes `opts`, a keyword list; an option a function does not take (a typo,
  or `:as` on a stream) raises `ArgumentError` naming it:

    * `:timeout` - milliseconds to wait, or `:infinity` (default: the pool's `:timeout`).
    * `:pool` - the pool to use (default `SnakeBridge.Pool`); calls on a
      `%SnakeBridge.Ref{}` always go to the pool and worker holding the object.
    * `:as` - `:ref` returns the result as a `%SnakeBridge.Ref{}` even when it is plain
      data (e.g. to keep a `dict` subclass as a live object); default `:value`.
    * `:session` - a `%SnakeBridge.Session{}`: the call runs on the session's worker and
      the objects it creates end with the session (see `SnakeBridge.Session`).
    * `:cache` - `true`/`:infinity` or a TTL in milliseconds: answer from the pool's
      result cache when the same target was called with the same arguments (for pure
      functions). Calls involving objects (refs, sessions) always run. Default `false`.
    * `:tensors` - `:nx` returns the result's tensors as `Nx.Tensor`s (Nx must be loaded);
      default `:tensor`, `%SnakeBridge.Tensor{}`s. `Nx.Tensor`s are accepted as arguments
      either way.
    * `:serialization` - the codecs of the arguments and of the result, `%{args: codec,
      result: codec}` (or a keyword list), each `:msgpack` (the default: lossless,
      tensors out of band) or `:json` (see `SnakeBridge.TypeConverter` for what JSON
      loses). `tensor_passthrough: false` in it makes tensors cross as nested lists:
      tensor arguments reach Python as lists, numpy arrays in the result come back as
      lists (which JSON can carry); default `true`, arrays both ways.
    * `:telemetry` - `false` emits no telemetry events for the call; a list of atoms
      replaces the `[:snakebridge]` prefix of its event names (default `true`).
    * `:integration` - the name telemetry and the result cache file the call under
      (default: the pool's name).
    * `:idempotent` - `true` lets the call be retried, with exponential backoff from
      `:retry_backoff` ms (default 100), when its worker crashed or no worker was alive;
      `:retries` sets how often (default 2; only allowed with `idempotent: true`).
  """

  alias SnakeBridge.{Error, Native, Pool, Ref, Session, Telemetry}
  alias SnakeBridge.Native.{Call, Encoding}

  # Extra time past the core's own deadline before the Elixir side gives up itself.
  @backstop_ms 2_000

  # The options each kind of call takes (see "Options"); any other is an ArgumentError.
  @call_options [
    :timeout,
    :pool,
    :as,
    :session,
    :cache,
    :tensors,
    :serialization,
    :telemetry,
    :integration,
    :idempotent,
    :retries,
    :retry_backoff,
    :errors
  ]
  @stream_options [
    :timeout,
    :pool,
    :session,
    :tensors,
    :serialization,
    :telemetry,
    :integration,
    :window
  ]
  @broadcast_options [:timeout, :pool, :serialization, :tensors, :integration, :telemetry]

  @type module_name :: String.t() | atom()
  @type function_name :: String.t() | atom()
  @type result :: {:ok, term()} | {:error, Error.t()}

  @doc """
  Calls `module.function(*args, **kwargs)` in Python. See `SnakeBridge.call/5`.
  """
  @spec call(module_name(), function_name(), list(), keyword() | map(), keyword()) :: result()
  def call(module, function, args \\ [], kwargs \\ [], opts \\ [])
      when is_list(args) and (is_list(kwargs) or is_map(kwargs)) and is_list(opts) do
    target = target(module, function)
    invoke(pool(opts), :call, target, target, args, kwargs, opts)
  end

  @doc """
  Like `call/5`, but returns the value or raises: `SnakeBridge.PythonError` for a Python
  exception, `SnakeBridge.Error` otherwise. With `errors: :elixir`, a well-known Python
  exception raises its Elixir equivalent instead (see `SnakeBridge.PythonError.to_elixir/1`).
  """
  @spec call!(module_name(), function_name(), list(), keyword() | map(), keyword()) :: term()
  def call!(module, function, args \\ [], kwargs \\ [], opts \\ []),
    do: unwrap!(call(module, function, args, kwargs, opts), opts)

  @doc """
  Calls the class (or any factory) `module.class(*args, **kwargs)` and returns the new
  object as a `%SnakeBridge.Ref{}`, whatever its type.
  """
  @spec create_instance(module_name(), function_name(), list(), keyword() | map(), keyword()) ::
          {:ok, Ref.t()} | {:error, Error.t()}
  def create_instance(module, class, args \\ [], kwargs \\ [], opts \\ []),
    do: call(module, class, args, kwargs, Keyword.put(opts, :as, :ref))

  @doc """
  The pool's one shared instance of `module.class` (a config's `singleton: true`): created
  with no arguments on first use and kept; created again when its worker has died. It
  never belongs to a session (`:session` is ignored), so no session's end releases it.
  Two processes asking at once for the first time may both create one; one is kept and
  the other is released by garbage collection.
  """
  @spec singleton(module_name(), String.t(), keyword()) :: {:ok, Ref.t()} | {:error, Error.t()}
  def singleton(module, class, opts \\ []) do
    opts = Keyword.delete(opts, :session)
    key = {__MODULE__, :singleton, Keyword.get(opts, :pool, Pool), target(module, class)}

    case :persistent_term.get(key, nil) do
      %Ref{} = ref ->
        if Ref.alive?(ref), do: {:ok, ref}, else: new_singleton(key, module, class, opts)

      nil ->
        new_singleton(key, module, class, opts)
    end
  end

  defp new_singleton(key, module, class, opts) do
    with {:ok, ref} <- create_instance(module, class, [], [], opts) do
      :persistent_term.put(key, ref)
      {:ok, ref}
    end
  end

  @doc """
  Calls method `name` of the object behind `ref`: `obj.name(*args, **kwargs)`.
  """
  @spec call_method(Ref.t(), function_name(), list(), keyword() | map(), keyword()) :: result()
  def call_method(%Ref{} = ref, name, args \\ [], kwargs \\ [], opts \\ [])
      when is_list(args) and (is_list(kwargs) or is_map(kwargs)) and is_list(opts) do
    name = name(name, :method)
    invoke(ref.pool, :call_method, name, "#{ref.type}.#{name}", [ref | args], kwargs, opts)
  end

  @doc "Like `call_method/5`, but returns the value or raises."
  @spec call_method!(Ref.t(), function_name(), list(), keyword() | map(), keyword()) :: term()
  def call_method!(ref, name, args \\ [], kwargs \\ [], opts \\ []),
    do: unwrap!(call_method(ref, name, args, kwargs, opts), opts)

  @doc "Reads attribute `name` of the object behind `ref`."
  @spec get_attr(Ref.t(), function_name(), keyword()) :: result()
  def get_attr(%Ref{} = ref, name, opts \\ []) do
    name = name(name, :attribute)
    invoke(ref.pool, :get_attr, name, "#{ref.type}.#{name}", [ref], [], opts)
  end

  @doc "Like `get_attr/3`, but returns the value or raises."
  @spec get_attr!(Ref.t(), function_name(), keyword()) :: term()
  def get_attr!(ref, name, opts \\ []), do: unwrap!(get_attr(ref, name, opts), opts)

  @doc "Sets attribute `name` of the object behind `ref` to `value`."
  @spec set_attr(Ref.t(), function_name(), term(), keyword()) :: :ok | {:error, Error.t()}
  def set_attr(%Ref{} = ref, name, value, opts \\ []) do
    name = name(name, :attribute)

    case invoke(ref.pool, :set_attr, name, "#{ref.type}.#{name}", [ref, value], [], opts) do
      {:ok, _} -> :ok
      error -> error
    end
  end

  @doc """
  Calls `module.function(*args, **kwargs)` and streams the elements of what it returns (a
  generator, iterator, async generator or any iterable) as a lazy `Stream`.

  Nothing runs until the stream is enumerated; each enumeration makes the call anew. The
  worker produces at most `:window` elements (default 16) ahead of the consumer, so the
  caller's mailbox stays bounded. Halting early (`Enum.take/2`) closes the Python
  generator (its `finally` blocks run). A Python exception mid-stream raises
  `SnakeBridge.PythonError` where the element is consumed; other failures raise
  `SnakeBridge.Error`. `:timeout` bounds the wait for each element.
  """
  @spec stream(module_name(), function_name(), list(), keyword() | map(), keyword()) ::
          Enumerable.t()
  def stream(module, function, args \\ [], kwargs \\ [], opts \\ [])
      when is_list(args) and (is_list(kwargs) or is_map(kwargs)) and is_list(opts) do
    target = target(module, function)
    lazy_stream(pool(opts), :call, target, target, args, kwargs, opts)
  end

  @doc "Like `stream/5`, for a method of the object behind `ref`."
  @spec stream_method(Ref.t(), function_name(), list(), keyword() | map(), keyword()) ::
          Enumerable.t()
  def stream_method(%Ref{} = ref, name, args \\ [], kwargs \\ [], opts \\ [])
      when is_list(args) and (is_list(kwargs) or is_map(kwargs)) and is_list(opts) do
    name = name(name, :method)
    label = "#{ref.type}.#{name}"
    lazy_stream(ref.pool, :call_method, name, label, [ref | args], kwargs, opts)
  end

  defp lazy_stream(pool, op, target, label, args, kwargs, opts) do
    check_options!(opts, @stream_options, label)
    window = Keyword.get(opts, :window, 16)

    unless is_integer(window) and window > 0 do
      raise ArgumentError, "expected :window to be a positive integer, got: #{inspect(window)}"
    end

    Stream.resource(
      fn -> start_stream(pool, op, target, label, args, kwargs, opts, window) end,
      &next_chunk/1,
      &stop_stream/1
    )
  end

  defp start_stream(pool, op, target, label, args, kwargs, opts, window) do
    {resource, default_timeout} =
      case Pool.lookup(pool) do
        {:ok, entry} -> entry
        {:error, error} -> raise error
      end

    timeout = Keyword.get(opts, :timeout, default_timeout)
    tag = make_ref()

    call = %{
      native_call(pool, op, target, args, kwargs, timeout, opts)
      | session: session_resource(opts)
    }

    case Native.pool_stream(resource, call, window, self(), tag) do
      {:ok, handle} ->
        # Credit is returned in batches of half the window to keep messages few.
        %{
          tag: tag,
          handle: handle,
          timeout: timeout,
          label: label,
          telemetry: Telemetry.prefix(opts),
          batch: max(div(window, 2), 1),
          consumed: 0,
          done: false
        }

      {:error, {:unsupported, path, message}} ->
        raise ArgumentError, "cannot send #{path} to Python (calling #{label}): #{message}"

      {:error, {reason, message}} when reason in [:stale_ref, :payload_too_large] ->
        raise Error.new(reason, message, label)
    end
  end

  defp next_chunk(%{done: true} = state), do: {:halt, state}

  defp next_chunk(%{tag: tag} = state) do
    receive do
      {^tag, {:chunk, value}} ->
        consumed = state.consumed + 1

        consumed =
          if consumed == state.batch do
            Native.stream_credit(state.handle, state.batch)
            0
          else
            consumed
          end

        Telemetry.emit([:stream, :chunk], %{count: 1}, %{target: state.label}, state.telemetry)
        {[value], %{state | consumed: consumed}}

      {^tag, :done} ->
        {:halt, %{state | done: true}}

      {^tag, {:error, error}} ->
        state = %{state | done: true}
        unwrap!({:error, Error.from_native(error, state.label)})
    after
      backstop(state.timeout) ->
        if state.timeout == :infinity do
          next_chunk(state)
        else
          stop_stream(state)
          raise Error.new(:timeout, "no chunk within #{state.timeout} ms", state.label)
        end
    end
  end

  defp stop_stream(%{done: true}), do: :ok

  defp stop_stream(%{tag: tag, handle: handle}) do
    Native.stream_cancel(handle)
    drain(tag)
  end

  # Drops the chunks already delivered, up to the stream's final message.
  defp drain(tag) do
    receive do
      {^tag, {:chunk, _}} -> drain(tag)
      {^tag, _final} -> :ok
    after
      @backstop_ms -> :ok
    end
  end

  @doc """
  Calls `module.function(*args, **kwargs)` on every live worker of the pool at once, for
  global state such as a library's configuration. Returns `{:ok, %{worker_pid => result}}`
  when every worker succeeded, else `{:error, %SnakeBridge.Error{}}` of the first failure
  (its `worker_pid` says where). Workers started later (replacements) do not see the
  call: use the pool's `:init` option for state every worker must have. Options:
  `:pool`, `:timeout` and `:serialization`, as for `call/5`.
  """
  @spec broadcast(module_name(), function_name(), list(), keyword() | map(), keyword()) ::
          {:ok, %{pos_integer() => term()}} | {:error, Error.t()}
  def broadcast(module, function, args \\ [], kwargs \\ [], opts \\ [])
      when is_list(args) and (is_list(kwargs) or is_map(kwargs)) and is_list(opts) do
    target = target(module, function)
    check_options!(opts, @broadcast_options, target)
    pool = Keyword.get(opts, :pool, Pool)

    with {:ok, {resource, default_timeout}} <- Pool.lookup(pool) do
      timeout = Keyword.get(opts, :timeout, default_timeout)
      tag = make_ref()

      call = native_call(pool, :call, target, args, kwargs, timeout, opts)

      case Native.pool_broadcast(resource, call, self(), tag) do
        :ok ->
          receive do
            {^tag, {:ok, results}} -> collect_broadcast(results, target)
            {^tag, {:error, error}} -> {:error, Error.from_native(error, target)}
          end

        {:error, {:unsupported, path, message}} ->
          raise ArgumentError, "cannot send #{path} to Python (calling #{target}): #{message}"

        {:error, {:payload_too_large, message}} ->
          {:error, Error.new(:payload_too_large, message, target)}
      end
    end
  end

  defp collect_broadcast(results, target) do
    Enum.reduce_while(results, {:ok, %{}}, fn
      {pid, {:ok, value}}, {:ok, acc} -> {:cont, {:ok, Map.put(acc, pid, value)}}
      {_pid, {:error, error}}, _ -> {:halt, {:error, Error.from_native(error, target)}}
    end)
  end

  @doc """
  The pool's counters, kept by the Rust core: `calls`, `errors`, `latency` (a histogram
  of `{upper_bound_us | :infinity, count}`), `cache_hits`, `cache_misses`,
  `cache_hit_ratio`, `sessions` (checked out), `session_calls`, `session_reuse` (calls per
  session), `hung_calls` (calls still running in Python past their deadline and the
  pool's `:hang_grace`) and `workers` (each worker's pid and calls in flight).
  """
  @spec stats(atom()) :: map() | {:error, Error.t()}
  def stats(pool \\ Pool) do
    with {:ok, {resource, _}} <- Pool.lookup(pool) do
      stats = Native.pool_stats(resource)
      lookups = stats.cache_hits + stats.cache_misses

      Map.merge(stats, %{
        cache_hit_ratio: if(lookups > 0, do: stats.cache_hits / lookups, else: 0.0),
        session_reuse: if(stats.sessions > 0, do: stats.session_calls / stats.sessions, else: 0.0),
        workers: Native.pool_workers(resource)
      })
    end
  end

  @doc """
  Drops the pool's cached answers (see the `:cache` option), all of them or those of one
  `integration`. Returns how many were dropped.
  """
  @spec clear_cache(atom(), atom() | String.t() | nil) :: non_neg_integer()
  def clear_cache(pool \\ Pool, integration \\ nil) do
    case Pool.lookup(pool) do
      {:ok, {resource, _}} ->
        Native.pool_clear_cache(resource, integration && to_string(integration))

      {:error, _} ->
        0
    end
  end

  @doc """
  Releases the object behind `ref` in its worker now, instead of when the reference is
  garbage-collected. Using `ref` afterwards gives a `:stale_ref` error. Idempotent.
  """
  @spec release(Ref.t()) :: :ok
  def release(%Ref{resource: resource}), do: Native.ref_release(resource)

  @doc false
  @spec target(module_name(), function_name()) :: String.t()
  def target(module, function), do: "#{name(module, :module)}.#{name(function, :function)}"

  defp name(value, _what) when is_binary(value) and value != "", do: value

  defp name(value, _what) when is_atom(value) and value not in [nil, true, false],
    do: Atom.to_string(value)

  defp name(value, what),
    do: raise(ArgumentError, "expected a Python #{what} name, got: #{inspect(value)}")

  @doc """
  The value of `{:ok, value}`; otherwise raises: the `SnakeBridge.PythonError` of a Python
  exception (or its Elixir counterpart with `errors: :elixir` in `opts`, see
  `SnakeBridge.PythonError.to_elixir/1`), else the `SnakeBridge.Error`. The bang variants
  (`call!/5`, generated `f!` functions) are this over their tuple-returning twins.
  """
  @spec unwrap!(result(), keyword()) :: term()
  def unwrap!(result, opts \\ [])
  def unwrap!({:ok, value}, _opts), do: value

  def unwrap!({:error, %Error{reason: :python_exception, python: %_{} = exception}}, opts) do
    case Keyword.get(opts, :errors, :python) do
      :python -> raise exception
      :elixir -> raise SnakeBridge.PythonError.to_elixir(exception)
    end
  end

  def unwrap!({:error, error}, _opts), do: raise(error)

  # The pool a call goes to: its session's, else `:pool`, else the default pool.
  defp pool(opts) do
    case Keyword.get(opts, :session) do
      %Session{pool: pool} -> pool
      nil -> Keyword.get(opts, :pool, Pool)
    end
  end

  defp session_resource(opts) do
    case Keyword.get(opts, :session) do
      nil ->
        nil

      %Session{resource: resource} ->
        resource

      other ->
        raise ArgumentError,
              "expected :session to be a %SnakeBridge.Session{}, got: #{inspect(other)}"
    end
  end

  # Reasons after which an idempotent call is tried again.
  @retryable [:worker_crashed, :no_workers, :transport]

  # `label` names the call in errors (the dotted target, or `type.method` on refs).
  defp invoke(pool, op, target, label, args, kwargs, opts) do
    check_options!(opts, @call_options, label)
    {retries, backoff} = retry_policy(opts)

    case {invoke_with_retries(pool, op, target, label, args, kwargs, opts, retries, backoff),
          Keyword.get(opts, :tensors, :tensor)} do
      {result, :tensor} ->
        result

      {{:ok, value}, :nx} ->
        {:ok, to_nx(value)}

      {result, :nx} ->
        result

      {_, other} ->
        raise ArgumentError, "expected :tensors to be :tensor or :nx, got: #{inspect(other)}"
    end
  end

  # Every %SnakeBridge.Tensor{} in a result as an Nx tensor (the `tensors: :nx` option).
  defp to_nx(%SnakeBridge.Tensor{} = tensor), do: SnakeBridge.Tensor.to_nx(tensor)
  defp to_nx(list) when is_list(list), do: Enum.map(list, &to_nx/1)
  defp to_nx(tuple) when is_tuple(tuple), do: tuple |> Tuple.to_list() |> to_nx() |> List.to_tuple()
  defp to_nx(%_{} = struct), do: struct
  defp to_nx(map) when is_map(map), do: Map.new(map, fn {k, v} -> {k, to_nx(v)} end)
  defp to_nx(other), do: other

  defp invoke_with_retries(pool, op, target, label, args, kwargs, opts, retries, backoff) do
    case invoke_once(pool, op, target, label, args, kwargs, opts) do
      {:error, %Error{reason: reason}} when retries > 0 and reason in @retryable ->
        Process.sleep(backoff)
        invoke_with_retries(pool, op, target, label, args, kwargs, opts, retries - 1, backoff * 2)

      result ->
        result
    end
  end

  # An option misspelt or meant for another kind of call is refused, not ignored.
  defp check_options!(opts, allowed, label) do
    case Enum.reject(opts, fn option -> is_tuple(option) and elem(option, 0) in allowed end) do
      [] ->
        :ok

      [{key, _} | _] when is_atom(key) ->
        raise ArgumentError,
              "unknown option #{inspect(key)} (calling #{label}); the options are " <>
                Enum.map_join(allowed, ", ", &inspect/1)

      [other | _] ->
        raise ArgumentError,
              "expected the options (calling #{label}) to be a keyword list, got: #{inspect(other)}"
    end
  end

  defp retry_policy(opts) do
    backoff = Keyword.get(opts, :retry_backoff, 100)

    case {Keyword.get(opts, :idempotent, false), Keyword.get(opts, :retries)} do
      {false, nil} ->
        {0, backoff}

      {true, nil} ->
        {2, backoff}

      {true, n} when is_integer(n) and n >= 0 ->
        {n, backoff}

      {false, _} ->
        raise ArgumentError, ":retries is only allowed for calls marked idempotent: true"

      {_, other} ->
        raise ArgumentError,
              "expected :retries to be a non-negative integer, got: #{inspect(other)}"
    end
  end

  defp invoke_once(pool, op, target, label, args, kwargs, opts) do
    with {:ok, {resource, default_timeout}} <- Pool.lookup(pool) do
      timeout = Keyword.get(opts, :timeout, default_timeout)

      call = %{
        native_call(pool, op, target, args, kwargs, timeout, opts)
        | as_ref: as_ref?(Keyword.get(opts, :as, :value)),
          session: session_resource(opts),
          cache: cache_policy(opts, pool)
      }

      meta = call_metadata(pool, label, opts)
      prefix = Telemetry.prefix(opts)
      started = System.monotonic_time()
      Telemetry.emit([:call, :start], %{system_time: System.system_time()}, meta, prefix)
      tag = make_ref()

      native =
        try do
          Native.pool_call(resource, call, self(), tag)
        rescue
          exception ->
            duration = System.monotonic_time() - started
            meta = Map.put(meta, :kind, :error)
            Telemetry.emit([:call, :exception], %{duration: duration}, meta, prefix)
            reraise exception, __STACKTRACE__
        end

      case native do
        {:ok, handle, args_bytes} ->
          {result, facts} = await(tag, handle, timeout, label)
          report_stop(result, facts, args_bytes, started, meta, prefix)
          result

        {:error, {:unsupported, path, message}} ->
          duration = System.monotonic_time() - started
          Telemetry.emit([:call, :exception], %{duration: duration}, meta, prefix)
          raise ArgumentError, "cannot send #{path} to Python (calling #{label}): #{message}"

        {:error, {reason, message}} when reason in [:stale_ref, :payload_too_large] ->
          result = {:error, Error.new(reason, message, label)}
          report_stop(result, {0, 0, false}, 0, started, meta, prefix)
          result
      end
    end
  end

  # What every kind of call tells the NIF; calls and streams add their own options.
  defp native_call(pool, op, target, args, kwargs, timeout, opts) do
    %Call{
      pool_name: pool,
      op: op,
      target: target,
      args: args,
      kwargs: kwargs,
      timeout_ms: timeout_ms(timeout),
      encoding: encoding(opts)
    }
  end

  # The argument and result codecs, and whether tensors cross as lists.
  defp encoding(opts) do
    case Keyword.get(opts, :serialization) do
      nil ->
        %Encoding{}

      serialization when is_map(serialization) or is_list(serialization) ->
        serialization = Map.new(serialization)

        passthrough =
          case Map.get(serialization, :tensor_passthrough, true) do
            passthrough when is_boolean(passthrough) ->
              passthrough

            other ->
              raise ArgumentError,
                    "expected :tensor_passthrough in :serialization to be a boolean, got: #{inspect(other)}"
          end

        %Encoding{
          args: SnakeBridge.TypeConverter.codec!(Map.get(serialization, :args, :msgpack)),
          result: SnakeBridge.TypeConverter.codec!(Map.get(serialization, :result, :msgpack)),
          tensors_as_lists: not passthrough
        }

      other ->
        raise ArgumentError,
              "expected :serialization to be a map with :args and :result codecs, got: #{inspect(other)}"
    end
  end

  defp cache_policy(opts, pool) do
    integration = to_string(Keyword.get(opts, :integration, pool))

    case Keyword.get(opts, :cache, false) do
      false ->
        nil

      true ->
        {integration, 0}

      :infinity ->
        {integration, 0}

      ttl when is_integer(ttl) and ttl > 0 ->
        {integration, ttl}

      other ->
        raise ArgumentError,
              "expected :cache to be a boolean, :infinity or a TTL in ms, got: #{inspect(other)}"
    end
  end

  defp call_metadata(pool, label, opts) do
    # `module.function`, or `Type.method` on objects: split at the last dot.
    {module, method} =
      case :binary.matches(label, ".") do
        [] ->
          {"", label}

        matches ->
          {at, _} = List.last(matches)
          {binary_part(label, 0, at), binary_part(label, at + 1, byte_size(label) - at - 1)}
      end

    %{
      integration: Keyword.get(opts, :integration, pool),
      module: module,
      method: method,
      streaming: false,
      session_id: session_id(opts),
      cache_hit: false
    }
  end

  defp session_id(opts) do
    case Keyword.get(opts, :session) do
      %Session{id: id} -> id
      _ -> nil
    end
  end

  defp report_stop(result, {result_bytes, queue_us, cache_hit}, args_bytes, started, meta, prefix) do
    measurements = %{
      duration: System.monotonic_time() - started,
      payload_bytes: args_bytes + result_bytes,
      queue_time: System.convert_time_unit(queue_us, :microsecond, :native)
    }

    outcome =
      case result do
        {:ok, _} -> :ok
        {:error, %Error{reason: reason}} -> reason
      end

    Telemetry.emit(
      [:call, :stop],
      measurements,
      %{meta | cache_hit: cache_hit} |> Map.put(:result, outcome),
      prefix
    )
  end

  defp as_ref?(:ref), do: true
  defp as_ref?(:value), do: false

  defp as_ref?(other),
    do: raise(ArgumentError, "expected :as to be :value or :ref, got: #{inspect(other)}")

  defp timeout_ms(:infinity), do: nil
  defp timeout_ms(ms) when is_integer(ms) and ms > 0, do: ms

  defp timeout_ms(other),
    do:
      raise(
        ArgumentError,
        "expected :timeout to be a positive integer or :infinity, got: #{inspect(other)}"
      )

  # The result, and {result bytes, queue microseconds, cache hit}. The deadline is kept
  # here, by `receive`: when it passes, the core answers the call with a timeout error at
  # once (a call started without a task waiting for it has no other clock).
  defp await(tag, handle, timeout, target) do
    case receive_reply(tag, target, deadline_ms(timeout)) do
      {:ok, answer} ->
        answer

      :waiting when timeout == :infinity ->
        # Waiting on keeps `handle` alive (dropping it cancels).
        await(tag, handle, timeout, target)

      :waiting ->
        Native.call_expire(handle)

        case receive_reply(tag, target, @backstop_ms) do
          {:ok, answer} -> answer
          :waiting -> give_up(tag, handle, timeout, target)
        end
    end
  end

  defp receive_reply(tag, target, within_ms) do
    receive do
      {^tag, {:ok, value, facts}} ->
        {:ok, {{:ok, value}, facts}}

      {^tag, {:error, error}} ->
        {:ok, {{:error, Error.from_native(error, target)}, {0, 0, false}}}
    after
      within_ms -> :waiting
    end
  end

  defp deadline_ms(:infinity), do: 60_000
  defp deadline_ms(ms), do: ms

  defp backstop(:infinity), do: 60_000
  defp backstop(ms), do: ms + @backstop_ms

  defp give_up(tag, handle, timeout, target) do
    Native.call_cancel(handle)

    # The core answers a cancelled call at once; take that answer out of the mailbox.
    receive do
      {^tag, _} -> :ok
    after
      @backstop_ms -> :ok
    end

    {{:error, Error.new(:timeout, "no reply within #{timeout} ms", target)}, {0, 0, false}}
  end
end
