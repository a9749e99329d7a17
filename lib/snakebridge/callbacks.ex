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

  ## Examples

      SnakeBridge.call!("builtins", "sorted", [["bb", "a", "ccc"]], key: &String.length/1)
      #=> ["a", "bb", "ccc"]
  """

  use GenServer

  alias SnakeBridge.Native

  @doc false
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "How many Elixir functions Python currently holds callables for."
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
