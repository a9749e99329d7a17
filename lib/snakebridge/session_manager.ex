defmodule SnakeBridge.Session.Manager do
  @moduledoc """
  Tracks live sessions and their owners: a session is released when its owner process
  exits, and `counts/0` tells how many sessions each owner holds.
  """

  use GenServer

  alias SnakeBridge.Native

  @doc false
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc false
  @spec register(SnakeBridge.Session.t(), pid()) :: :ok
  def register(session, owner), do: GenServer.call(__MODULE__, {:register, session, owner})

  @doc false
  @spec unregister(SnakeBridge.Session.t()) :: :ok
  def unregister(session), do: GenServer.call(__MODULE__, {:unregister, session.id})

  @doc "Live sessions per owner process."
  @spec counts() :: %{pid() => pos_integer()}
  def counts, do: GenServer.call(__MODULE__, :counts)

  @impl true
  def init(_opts), do: {:ok, %{sessions: %{}, owners: %{}}}

  @impl true
  def handle_call({:register, session, owner}, _from, state) do
    state =
      case state.owners do
        %{^owner => {monitor, ids}} ->
          put_in(state.owners[owner], {monitor, MapSet.put(ids, session.id)})

        _ ->
          put_in(state.owners[owner], {Process.monitor(owner), MapSet.new([session.id])})
      end

    {:reply, :ok, put_in(state.sessions[session.id], {owner, session})}
  end

  def handle_call({:unregister, id}, _from, state), do: {:reply, :ok, forget(state, id)}

  def handle_call(:counts, _from, state) do
    {:reply, Map.new(state.owners, fn {owner, {_, ids}} -> {owner, MapSet.size(ids)} end), state}
  end

  @impl true
  def handle_info({:DOWN, _monitor, :process, owner, _reason}, state) do
    case Map.pop(state.owners, owner) do
      {{_monitor, ids}, owners} ->
        state = %{state | owners: owners}

        sessions =
          Enum.reduce(ids, state.sessions, fn id, sessions ->
            {{_owner, session}, sessions} = Map.pop(sessions, id)
            Native.session_release(session.resource)

            SnakeBridge.Telemetry.emit([:session, :return], %{}, %{
              pool: session.pool,
              session_id: session.id,
              worker_pid: session.worker_pid
            })

            sessions
          end)

        {:noreply, %{state | sessions: sessions}}

      {nil, _} ->
        {:noreply, state}
    end
  end

  defp forget(state, id) do
    case Map.pop(state.sessions, id) do
      {nil, _} ->
        state

      {{owner, _session}, sessions} ->
        owners =
          case state.owners[owner] do
            {monitor, ids} ->
              ids = MapSet.delete(ids, id)

              if MapSet.size(ids) == 0 do
                Process.demonitor(monitor, [:flush])
                Map.delete(state.owners, owner)
              else
                Map.put(state.owners, owner, {monitor, ids})
              end

            nil ->
              state.owners
          end

        %{state | sessions: sessions, owners: owners}
    end
  end
end
