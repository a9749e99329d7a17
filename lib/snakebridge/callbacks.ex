defmodule SnakeBridge.Callbacks do
  @moduledoc """
  Runs the Elixir functions that Python calls.

  An anonymous function, or an Elixir `{Module, :function, arity}` tuple, among a call's
  arguments reaches Python as a callable (`snakebridge_agent.ElixirFunction`). Calling it
  in Python runs the function here, in the BEAM, in a task under
  `SnakeBridge.CallbackTasks` (never inside the NIF), and returns its result to Python.
  The Python thread waits meanwhile, so the function may call into Python again
  (re-entrant calls). Positional Python arguments become the function's arguments; Python
  keyword arguments, if any, arrive as one more argument (a map).

  When the function raises, exits or throws, Python gets a
  `snakebridge_agent.ElixirError` carrying the Elixir exception's message, with
  `elixir_type` and `elixir_stacktrace` attributes.

  For Erlang functions use a capture (`&:lists.sum/1`): only tuples whose module is an
  Elixir module are taken as function references; other 3-tuples are data.

  ## Lifetime and scope

  A function crosses as a fresh, unguessable id (128 random bits), and only the worker it
  was sent to may call it: a worker that calls or releases an id it was not given gets an
  `ElixirError` (`elixir_type` `"SnakeBridge"`) saying the function is unknown on this
  worker, and nothing else changes. Python may keep the callable, but it runs only for as
  long as:

    * the call it came with, for a call outside a session (a stream until its end);
    * the session, for a call in a `SnakeBridge.Session`;
    * the worker, for the pool's `:init` calls and `:tools` (every worker of that pool
      gets them, including workers started later);
    * Python keeps it, for a function returned by another callback.

  Python dropping its callable ends it sooner (except for `:init` and `:tools`), and a
  worker that dies takes its functions with it. Calling a function whose time has ended
  raises the same `ElixirError`.

  ## Examples

      SnakeBridge.call!("builtins", "sorted", [["bb", "a", "ccc"]], key: &String.length/1)
      #=> ["a", "bb", "ccc"]
  """

  use GenServer

  alias SnakeBridge.Native

  @doc false
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc """
  How many Elixir functions are kept for Python now, in every pool: those of calls and
  sessions that have not ended, of live workers, and the pools' `:init` and `:tools`
  functions.
  """
  @spec count() :: non_neg_integer()
  def count, do: Native.callbacks_count()

  @impl true
  def init(_opts) do
    :ok = Native.callbacks_init(self())
    {:ok, %{}}
  end

  @impl true
  def handle_info({:snakebridge_callback, reply, function, args}, state) do
    case Task.Supervisor.start_child(SnakeBridge.CallbackTasks, fn -> run(reply, function, args) end) do
      {:ok, _pid} -> :ok
      # The reply is answered with an error when it is garbage-collected unanswered.
      {:error, _reason} -> :ok
    end

    {:noreply, state}
  end

  defp run(reply, function, args) do
    result =
      try do
        {:ok, apply_function(function, args)}
      rescue
        exception ->
          {:error,
           {inspect(exception.__struct__), Exception.message(exception),
            Exception.format_stacktrace(__STACKTRACE__)}}
      catch
        kind, reason ->
          {:error,
           {Atom.to_string(kind), Exception.format_banner(kind, reason, __STACKTRACE__),
            Exception.format_stacktrace(__STACKTRACE__)}}
      end

    case Native.callback_reply(reply, result) do
      {:error, {:unsupported, path, message}} ->
        Native.callback_reply(
          reply,
          {:error,
           {"ArgumentError", "the Elixir function's #{path} cannot be sent to Python: #{message}",
            ""}}
        )

      _ ->
        :ok
    end
  end

  defp apply_function(fun, args) when is_function(fun), do: apply(fun, args)
  defp apply_function({module, function, _arity}, args), do: apply(module, function, args)
end
