defmodule SnakeBridge.Application do
  @moduledoc """
  Starts SnakeBridge's default pool (`SnakeBridge.Pool`) from the application environment:

      config :snakebridge,
        start_pool: true,                # false: start pools yourself
        pool: [size: 2, threads: 4, timeout: 30_000, env: %{"OMP_NUM_THREADS" => "1"}]

  See `SnakeBridge.Pool` for every pool option. The pool is not strict: when Python cannot
  start, the application boots all the same, logs why, and calls answer `:no_workers` with
  the explanation until a worker starts.

  Other application settings:

    * `:python` - the interpreter of every pool (see `SnakeBridge.Python` for the order).
    * `:venv` - where `mix snakebridge.setup` puts the app's venv (default
      `_build/snakebridge/venv`).
    * `:python_deps` - requirements `mix snakebridge.setup` installs besides the configs'.
    * `:release_url` - where SnakeBridge's compiler downloads its precompiled artifacts
      (read when SnakeBridge compiles; `SNAKEBRIDGE_RELEASE_URL` overrides it).

  In development, `config :snakebridge, watch: true` (or a keyword list of options) also
  starts `SnakeBridge.Watcher`, which reloads generated modules when their config changes.
  """

  use Application

  @impl true
  def start(_type, _args) do
    # ERTS ignores SIGCHLD by default, which makes waiting for worker processes fail with
    # ECHILD inside the NIF; the default disposition is needed before any worker starts.
    :os.set_signal(:sigchld, :default)

    pools =
      if Application.get_env(:snakebridge, :start_pool, true) do
        [{SnakeBridge.Pool, Application.get_env(:snakebridge, :pool, [])}]
      else
        []
      end

    watcher =
      case Application.get_env(:snakebridge, :watch) do
        opts when is_list(opts) -> [{SnakeBridge.Watcher, opts}]
        enabled when enabled in [nil, false] -> []
        _enabled -> [SnakeBridge.Watcher]
      end

    children =
      [
        {Task.Supervisor, name: SnakeBridge.CallbackTasks},
        SnakeBridge.Callbacks,
        SnakeBridge.Session.Manager
      ] ++ pools ++ watcher

    Supervisor.start_link(children, strategy: :one_for_one, name: SnakeBridge.Supervisor)
  end
end
