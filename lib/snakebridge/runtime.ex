defmodule SnakeBridge.Runtime do
  @moduledoc """
  Executes calls on a pool: the machinery behind `SnakeBridge.call/5` and the generated
  modules.

  The native call returns at once; the reply arrives as a message, so no scheduler is
  ever blocked. The Rust core enforces each call's deadline and answers every call
  exactly once (result, Python error, timeout or crash); a backstop here cancels the call
  if that answer is late, and a call whose caller dies is cancelled when its handle is
  garbage-collected.
  """

  alias SnakeBridge.{Error, Native, Pool}

  # Extra time past the core's own deadline before the Elixir side gives up itself.
  @backstop_ms 2_000

  @type module_name :: String.t() | atom()
  @type function_name :: String.t() | atom()

  @doc """
  Calls `module.function(*args, **kwargs)` in Python. See `SnakeBridge.call/5`.
  """
  @spec call(module_name(), function_name(), list(), keyword() | map(), keyword()) ::
          {:ok, term()} | {:error, Error.t()}
  def call(module, function, args \\ [], kwargs \\ [], opts \\ [])
      when is_list(args) and (is_list(kwargs) or is_map(kwargs)) and is_list(opts) do
    target = target(module, function)

    with {:ok, {resource, default_timeout}} <- Pool.lookup(Keyword.get(opts, :pool, Pool)) do
      timeout = Keyword.get(opts, :timeout, default_timeout)
      tag = make_ref()

      case Native.pool_call(resource, target, args, kwargs, timeout_ms(timeout), self(), tag) do
        {:ok, handle} ->
          await(tag, handle, timeout, target)

        {:error, {:unsupported, path, message}} ->
          raise ArgumentError, "cannot send #{path} to Python (calling #{target}): #{message}"
      end
    end
  end

  @doc """
  Like `call/5`, but returns the value or raises: `SnakeBridge.PythonError` for a Python
  exception, `SnakeBridge.Error` otherwise.
  """
  @spec call!(module_name(), function_name(), list(), keyword() | map(), keyword()) :: term()
  def call!(module, function, args \\ [], kwargs \\ [], opts \\ []) do
    case call(module, function, args, kwargs, opts) do
      {:ok, value} -> value
      {:error, %Error{reason: :python_exception, python: %_{} = exception}} -> raise exception
      {:error, error} -> raise error
    end
  end

  @doc false
  @spec target(module_name(), function_name()) :: String.t()
  def target(module, function), do: "#{name(module, :module)}.#{name(function, :function)}"

  defp name(value, _what) when is_binary(value) and value != "", do: value

  defp name(value, _what) when is_atom(value) and value not in [nil, true, false],
    do: Atom.to_string(value)

  defp name(value, what),
    do: raise(ArgumentError, "expected a Python #{what} name, got: #{inspect(value)}")

  defp timeout_ms(:infinity), do: 0
  defp timeout_ms(ms) when is_integer(ms) and ms > 0, do: ms

  defp timeout_ms(other),
    do:
      raise(
        ArgumentError,
        "expected :timeout to be a positive integer or :infinity, got: #{inspect(other)}"
      )

  defp await(tag, handle, timeout, target) do
    receive do
      {^tag, {:ok, value}} -> {:ok, value}
      {^tag, {:error, error}} -> {:error, Error.from_native(error, target)}
    after
      backstop(timeout) ->
        if timeout == :infinity do
          # Waiting on: the `after` clause keeps `handle` alive (dropping it cancels).
          await(tag, handle, timeout, target)
        else
          give_up(tag, handle, timeout, target)
        end
    end
  end

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

    {:error, Error.new(:timeout, "no reply within #{timeout} ms", target)}
  end
end
