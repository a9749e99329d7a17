defmodule SnakeBridge.Telemetry do
  @moduledoc """
  SnakeBridge's telemetry events, emitted through `:telemetry` when the host application
  has it loaded (SnakeBridge itself does not depend on it).

  ## Events

    * `[:snakebridge, :call, :start]` - measurements `system_time`; metadata as below.
    * `[:snakebridge, :call, :stop]` - measurements `duration` (native time units),
      `payload_bytes` (arguments plus result as encoded); metadata plus `result`
      (`:ok` or the error reason).
    * `[:snakebridge, :call, :exception]` - a call that raised (`ArgumentError` for an
      unsupported argument, or a bang variant); measurements `duration`.

    Call metadata: `integration` (the pool's name, or the `:integration` option),
    `module`, `method` (the two halves of the target), `streaming`, `session_id`,
    `cache_hit`.

    * `[:snakebridge, :stream, :chunk]` - one element of a stream was consumed.
    * `[:snakebridge, :session, :checkout | :return | :timeout]` - see `SnakeBridge.Session`.
    * `[:snakebridge, :watcher, :reload]` - a config reloaded in dev; see `SnakeBridge.Watcher`.
  """

  @doc false
  # `prefix` replaces `[:snakebridge]` (a call's `:telemetry` option); nil emits nothing.
  @spec emit([atom()], map(), map(), [atom()] | nil) :: :ok
  def emit(event, measurements, metadata, prefix \\ [:snakebridge]) do
    if prefix != nil and enabled?() do
      # Called through apply/3: :telemetry is optional and absent at compile time.
      apply(:telemetry, :execute, [prefix ++ event, measurements, metadata])
    end

    :ok
  end

  @doc false
  # The event prefix a call's `:telemetry` option asks for: `false` none, a list of atoms
  # that prefix, anything else (unset, `true`) the default.
  @spec prefix(keyword()) :: [atom()] | nil
  def prefix(opts) do
    case Keyword.get(opts, :telemetry, true) do
      false -> nil
      [_ | _] = prefix -> prefix
      _ -> [:snakebridge]
    end
  end

  @doc "Whether events are emitted (`:telemetry` is loaded)."
  @spec enabled?() :: boolean()
  def enabled? do
    case :persistent_term.get({__MODULE__, :enabled}, nil) do
      nil ->
        enabled = Code.ensure_loaded?(:telemetry)
        :persistent_term.put({__MODULE__, :enabled}, enabled)
        enabled

      enabled ->
        enabled
    end
  end
end
