defmodule :telemetry do
  @moduledoc false
  # A stand-in for the :telemetry package, which cannot be installed here (no Hex): the
  # same execute/3 and attach/4 surface, so SnakeBridge's events can be observed in tests.

  def attach(id, event, fun, config) do
    :persistent_term.put({__MODULE__, id}, {event, fun, config})
    ids = :persistent_term.get({__MODULE__, :ids}, [])
    :persistent_term.put({__MODULE__, :ids}, [id | ids])
    :ok
  end

  def detach(id) do
    :persistent_term.erase({__MODULE__, id})

    :persistent_term.put(
      {__MODULE__, :ids},
      List.delete(:persistent_term.get({__MODULE__, :ids}, []), id)
    )

    :ok
  end

  def execute(event, measurements, metadata) do
    for id <- :persistent_term.get({__MODULE__, :ids}, []),
        {^event, fun, config} <- [:persistent_term.get({__MODULE__, id}, nil)] do
      fun.(event, measurements, metadata, config)
    end

    :ok
  end
end
