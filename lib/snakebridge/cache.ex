defmodule SnakeBridge.Cache do
  @moduledoc """
  SnakeBridge's descriptor cache, both levels: the hot one in the Rust core and the JSON
  files under `priv/snakebridge/schemas/` (see `SnakeBridge.Introspection`).
  """

  @doc """
  Forgets `integration`'s descriptor in memory and on disk, so that the next
  `SnakeBridge.Introspection.describe/2` introspects again. Option `:cache_dir`.
  Returns `true` when a file was removed; raises `SnakeBridge.Error` if it cannot be.
  """
  @spec invalidate!(atom() | String.t(), keyword()) :: boolean()
  def invalidate!(integration, opts \\ []) do
    dir = SnakeBridge.Introspection.cache_dir(opts)
    SnakeBridge.Introspection.forget(Path.join(dir, "#{integration}.json"))

    case SnakeBridge.Native.descriptor_invalidate(dir, to_string(integration)) do
      {:ok, removed?} -> removed?
      {:error, message} -> raise SnakeBridge.Error.new(:internal, message)
    end
  end
end
