defmodule SnakeBridge.Error do
  @moduledoc """
  Why a call did not return a value.

  Returned as `{:error, %SnakeBridge.Error{}}` by `SnakeBridge.call/5` and raised by the
  bang variants (except Python exceptions, which raise `SnakeBridge.PythonError`).

  ## Reasons

    * `:python_exception` - the Python code raised; `python` holds the
      `%SnakeBridge.PythonError{}` with type, message and traceback.
    * `:target_not_found` - the module or attribute does not exist.
    * `:stale_ref` - a `%SnakeBridge.Ref{}` whose object was released or whose worker
      died.
    * `:timeout` - no reply before the call's `:timeout`; the call was cancelled.
    * `:worker_crashed` - the worker running the call died; `exit_status` (exit code, or
      minus the signal number) and `stderr_tail` say how. The pool replaces the worker.
    * `:worker_start_failed` - a worker of a `strict: true` pool could not start; the
      message names the interpreter, what went wrong and the command that fixes it.
    * `:invalid_config` - an integration's config cannot be used (for example a
      `{:system, "ENV_VAR"}` whose variable is not set when the pool starts).
    * `:no_workers` - no live worker: none could start (the call fails at once, and the
      message explains why, as the pool's start error would), or all were restarting
      until the deadline.
    * `:not_allowed` - the target, attribute or object lies outside the pool's
      `:allowed_modules` (or is a private name in a restricted pool); nothing ran.
    * `:overloaded` - the pool already had as many calls running or queued as it takes
      (`size × threads` plus its `:max_queue`); the call failed at once, without waiting.
    * `:pool_closed` / `:no_pool` - the pool was stopped / was never started.
    * `:encoding` - a value could not be converted.
    * `:payload_too_large` - a payload is over one of the pool's budgets: arguments over
      `:max_payload_size`, a result, stream chunk or callback's arguments over
      `:max_result_size`, or either holding more values than `:max_elements`. The message
      names the limit and the option that sets it.
    * `:cancelled`, `:bad_request`, `:transport`, `:internal` - the rest.
  """

  defexception [
    :reason,
    :message,
    :target,
    :python,
    :worker_pid,
    :exit_status,
    :stderr_tail
  ]

  @type reason ::
          :python_exception
          | :target_not_found
          | :encoding
          | :payload_too_large
          | :bad_request
          | :cancelled
          | :stale_ref
          | :timeout
          | :worker_crashed
          | :worker_start_failed
          | :invalid_config
          | :no_workers
          | :overloaded
          | :not_allowed
          | :pool_closed
          | :no_pool
          | :transport
          | :internal

  @type t :: %__MODULE__{
          reason: reason(),
          message: String.t(),
          target: String.t() | nil,
          python: SnakeBridge.PythonError.t() | nil,
          worker_pid: non_neg_integer() | nil,
          exit_status: integer() | nil,
          stderr_tail: String.t() | nil
        }

  @impl true
  def message(%__MODULE__{reason: reason, message: message, target: target}) do
    where = if target, do: " (calling #{target})", else: ""
    "#{reason}#{where}: #{message}"
  end

  @doc false
  # The one place where the NIF's error maps become structs.
  @spec from_native(map(), String.t() | nil) :: t()
  def from_native(%{reason: reason} = map, target) do
    python =
      case map.python do
        nil -> nil
        exc -> SnakeBridge.PythonError.from_native(exc, target)
      end

    %__MODULE__{
      reason: reason,
      message: map.message,
      target: target,
      python: python,
      worker_pid: map.worker_pid,
      exit_status: map.exit_status,
      stderr_tail: map.stderr_tail
    }
  end

  @doc false
  @spec new(reason(), String.t(), String.t() | nil) :: t()
  def new(reason, message, target \\ nil),
    do: %__MODULE__{reason: reason, message: message, target: target}
end
