defmodule SnakeBridge.Session do
  @moduledoc """
  A group of calls pinned to one Python worker, whose objects all end with the session.

  By default every call is its own ephemeral session: it runs on the least-loaded worker
  and the objects it returns live as long as their `%SnakeBridge.Ref{}`s. A session pins
  calls to one worker (for Python state that must stay together, such as a model and the
  objects built from it), and when it is released, or its owner process exits, the
  worker drops every object created in it. `SnakeBridge.Session.Manager` monitors owners
  and keeps the count of sessions per owner.

  ## Examples

      SnakeBridge.Session.with_session(fn session ->
        {:ok, counter} = SnakeBridge.call("collections", "Counter", [], [], session: session, as: :ref)
        SnakeBridge.call_method!(counter, "update", ["abc"])
        SnakeBridge.call_method!(counter, "most_common", [1])
      end)

  ## Telemetry

  `[:snakebridge, :session, :checkout]` (measurement `duration`), `[:snakebridge, :session,
  :return]` and `[:snakebridge, :session, :timeout]`, with metadata `pool`, `session_id`
  and `worker_pid` (see `SnakeBridge.Telemetry`).
  """

  alias SnakeBridge.{Error, Native, Pool, Telemetry}

  @current {__MODULE__, :current}

  # `id` is the core's id of the session: what its worker tags the session's objects with.
  @enforce_keys [:id, :pool, :resource, :worker_pid]
  defstruct [:id, :pool, :resource, :worker_pid]

  @type t :: %__MODULE__{
          id: String.t(),
          pool: atom(),
          resource: reference(),
          worker_pid: pos_integer()
        }

  @doc """
  Starts a session owned by the calling process.

  Options: `:pool` (default `SnakeBridge.Pool`), `:timeout` in milliseconds to wait for a
  live worker (default 5 000). Returns `{:ok, session}` or `{:error, %SnakeBridge.Error{}}`.
  """
  @spec checkout(keyword()) :: {:ok, t()} | {:error, Error.t()}
  def checkout(opts \\ []) do
    pool = Keyword.get(opts, :pool, Pool)
    timeout = Keyword.get(opts, :timeout, 5_000)
    started = System.monotonic_time()

    with {:ok, {resource, _}} <- Pool.lookup(pool) do
      tag = make_ref()
      :ok = Native.session_checkout(resource, timeout, self(), tag)

      receive do
        {^tag, {:ok, session_resource, worker_pid, id}} ->
          session = %__MODULE__{
            id: id,
            pool: pool,
            resource: session_resource,
            worker_pid: worker_pid
          }

          :ok = SnakeBridge.Session.Manager.register(session, self())
          duration = System.monotonic_time() - started
          Telemetry.emit([:session, :checkout], %{duration: duration}, metadata(session))
          {:ok, session}

        {^tag, {:error, error}} ->
          error = Error.from_native(error, nil)
          Telemetry.emit([:session, :timeout], %{}, %{pool: pool, reason: error.reason})
          {:error, error}
      end
    end
  end

  @doc """
  Ends a session: its worker drops every object created in it, and `%SnakeBridge.Ref{}`s
  to them give `:stale_ref` afterwards. Idempotent.
  """
  @spec release(t()) :: :ok
  def release(%__MODULE__{} = session) do
    if Native.session_alive(session.resource) do
      Telemetry.emit([:session, :return], %{}, metadata(session))
    end

    Native.session_release(session.resource)
    SnakeBridge.Session.Manager.unregister(session)
  end

  @doc """
  Runs `fun` with a new session and releases the session afterwards, even when `fun`
  raises. Options as for `checkout/1`. Raises `SnakeBridge.Error` if no session can be had.

  While `fun` runs, the session is the process's current session (`current/0`): the
  functions generated for a config with `session: %{mode: :pooled}`, and the constructors
  marked `session_aware: true`, join it when they are given no `:session` option.
  """
  @spec with_session(keyword(), (t() -> result)) :: result when result: term()
  def with_session(opts \\ [], fun) when is_function(fun, 1) do
    case checkout(opts) do
      {:ok, session} ->
        previous = Process.put(@current, session)

        try do
          fun.(session)
        after
          if previous, do: Process.put(@current, previous), else: Process.delete(@current)
          release(session)
        end

      {:error, error} ->
        raise error
    end
  end

  @doc """
  The session of the innermost `with_session/2` running in the calling process, or nil.
  """
  @spec current() :: t() | nil
  def current, do: Process.get(@current)

  @doc false
  # `opts` with the current session, unless they name one (generated calls that join it).
  @spec join_current(keyword()) :: keyword()
  def join_current(opts) do
    case not Keyword.has_key?(opts, :session) and current() do
      %__MODULE__{} = session -> Keyword.put(opts, :session, session)
      _ -> opts
    end
  end

  @doc "Whether the session can still be used (not released, its worker alive)."
  @spec alive?(t()) :: boolean()
  def alive?(%__MODULE__{resource: resource}), do: Native.session_alive(resource)

  defp metadata(session),
    do: %{pool: session.pool, session_id: session.id, worker_pid: session.worker_pid}

  defimpl Inspect do
    def inspect(%SnakeBridge.Session{pool: pool, worker_pid: pid}, _opts),
      do: "#SnakeBridge.Session<#{inspect(pool)} worker #{pid}>"
  end
end
