defmodule SnakeBridge.Contract do
  @moduledoc false
  # The rules and constants Elixir shares with the core and the worker, read from their one
  # owner (the core's `contract` module, through the NIF) and kept in :persistent_term.

  alias SnakeBridge.Native

  @doc "The core's contract map (see `SnakeBridge.Native.contract/0`)."
  @spec get() :: map()
  def get do
    case :persistent_term.get(__MODULE__, nil) do
      nil ->
        contract = Native.contract()
        :persistent_term.put(__MODULE__, contract)
        contract

      contract ->
        contract
    end
  end

  @doc "One value of the contract."
  @spec fetch!(atom()) :: term()
  def fetch!(key), do: Map.fetch!(get(), key)

  @doc "The Elixir-safe snake_case name SnakeBridge gives a Python name."
  @spec elixir_name(String.t()) :: String.t()
  def elixir_name(python_name), do: Native.naming_elixir_name(python_name)

  @doc "A dotted Python path as Elixir module segments: `a.b_c` -> `A.BC`."
  @spec camelize(String.t()) :: String.t()
  def camelize(dotted), do: Native.naming_camelize(dotted)
end
