defmodule SnakeBridge.Test.JSONModuleBridge do
  @moduledoc false
  # `use SnakeBridge.Generator` with a config module: SnakeBridge.Test.JSONConfig.
  use SnakeBridge.Generator, config: SnakeBridge.Test.JSONConfig
end
